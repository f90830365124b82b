"""Options shared by several subcommands; their defaults come from the library."""
from __future__ import annotations

import functools
import json

import click

quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="No progress bars or tables (for scripts); a run prints its one result line.")
#: the CPU plan of a stage that feeds a torch network (:func:`deepfeat.threads.plan_threads`)
workers_option = click.option("--workers", type=click.IntRange(min=0), default=None,
                              help="Front-end processes (decode, mel images); 0: in this process. Default: 0 below "
                                   "4 cores, else cores/4; with CUDA, cores - 1.")
threads_option = click.option("--threads", type=click.IntRange(min=0), default=None,
                              help="torch CPU threads. Default (or 0): the cores the workers leave. Features do not "
                                   "depend on --workers; on --threads by float32 rounding for some networks.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")


class FoldType(click.ParamType):
    """A test fold: a fold number, or ``evaluation`` (the dataset's evaluation partition)."""

    name = "FOLD"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or str(value).strip().lower() == "evaluation":
            return value if isinstance(value, int) else "evaluation"
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a fold number nor 'evaluation'", param, ctx)


fold_option = click.option("--fold", type=FoldType(), default=5, show_default=True,
                           help="Held-out test fold, or `evaluation` (a DCASE evaluation set read with its "
                                "development set); the other folds form the development set.")
overwrite_run_option = click.option(
    "--overwrite", is_flag=True,
    help="Replace a run of other inputs or settings in the run folder (refused otherwise; rerunning the same run "
         "is allowed).")


class LazyChoice(click.Choice):
    """A ``click.Choice`` whose choices come from a library registry, read on first use — so
    loading a subcommand (as ``deepfeat --help`` does) imports no heavy module."""

    def __init__(self, load, case_sensitive: bool = True):
        self._load = load
        self._choices = None
        self.case_sensitive = case_sensitive

    @property
    def choices(self):
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices

    @choices.setter
    def choices(self, value):
        self._choices = tuple(value)


class LibraryDefault:
    """An option default read from the library when it is needed (parsing, or the subcommand's
    own ``--help``), not when the command line is loaded: ``deepfeat --help`` imports nothing heavy."""

    def __init__(self, read):
        self.read = read

    def __call__(self):
        return self.read()

    def __str__(self) -> str:
        value = self.read()
        return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _svm_kinds():
    from deepfeat.svm import SVM_KINDS

    return SVM_KINDS


def _c_grid_text() -> str:
    from deepfeat.svm import DEFAULT_C_GRID

    return ",".join(f"{c:g}" for c in DEFAULT_C_GRID)


def _score_names():
    from deepfeat.evaluation import SCORE_NAMES

    return SCORE_NAMES


SVM_HELP = ("svc: libsvm on a precomputed linear kernel (fast up to a few thousand rows); "
            "linearsvc: liblinear (for many rows).")


def svm_kind_option(kinds=_svm_kinds, help: str = SVM_HELP):
    """``--svm KIND`` with the choices ``kinds()`` (read lazily), the first as default."""
    return click.option("--svm", "kind", type=LazyChoice(kinds), default=LibraryDefault(lambda: kinds()[0]),
                        show_default=True, help=help)


svm_option = svm_kind_option()
c_grid_option = click.option("--c-grid", default=LibraryDefault(_c_grid_text), show_default=True,
                             help="Comma-separated values of the SVM complexity C to choose from.")
select_metric_option = click.option("--select-metric", type=LazyChoice(_score_names), default=None,
                                    help="What the cross-validation over the development folds maximises "
                                         "(default: the dataset's primary metric: macro_f1 for DCASE 2018, "
                                         "accuracy elsewhere).")


def show_run(metrics: dict | list, as_json: bool, quiet: bool) -> None:
    """Print a run's metrics: JSON, or the summary table and the run folder (``quiet``: one
    result line per run)."""
    from deepfeat.evaluation import jsonable, result_line, summary_table

    if as_json:
        click.echo(json.dumps(jsonable(metrics), indent=2))
        return
    for m in metrics if isinstance(metrics, list) else [metrics]:
        if quiet:
            click.echo(result_line(m))
            continue
        click.echo(summary_table(m))
        click.echo(f"wrote {m['run_dir']}")


def training_options(default_of):
    """The training engine's options (``--epochs``, ``--lr``, ``--patience`` …) with the defaults
    of the stage's :class:`~deepfeat.training.config.TrainConfig` (``default_of()``, read lazily).
    The command gets them as ``training_options`` (a dict for :func:`training_config`)."""
    from deepfeat.training.config import OPTIMIZERS, PRECISIONS, SCHEDULES

    def default(name):
        return LibraryDefault(lambda: getattr(default_of(), name))

    options = [
        click.option("--epochs", type=int, default=default("epochs"), show_default=True),
        click.option("--batch-size", type=int, default=default("batch_size"), show_default=True),
        click.option("--lr", "learning_rate", type=float, default=default("learning_rate"), show_default=True,
                     help="Peak learning rate."),
        click.option("--weight-decay", type=float, default=default("weight_decay"), show_default=True),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=default("optimizer"), show_default=True),
        click.option("--schedule", type=click.Choice(SCHEDULES), default=default("schedule"), show_default=True,
                     help="constant, cosine (after --warmup-epochs of linear warm-up) or plateau (halve the rate "
                          "when the validation metric stalls)."),
        click.option("--warmup-epochs", type=int, default=default("warmup_epochs"), show_default=True),
        click.option("--patience", type=int, default=default("patience"), show_default=True,
                     help="Early stopping: epochs without a better validation metric (needs --validation-fraction)."),
        click.option("--grad-clip", type=float, default=default("grad_clip"), show_default=True,
                     help="Maximum gradient norm."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=default("precision"), show_default=True,
                     help="auto: bf16 (or fp16) autocast on CUDA, float32 on CPU."),
        click.option("--seed", type=int, default=default("seed"), show_default=True,
                     help="Seed of initialisation, batch order and augmentation draws."),
    ]
    names = ("epochs", "batch_size", "learning_rate", "weight_decay", "optimizer", "schedule", "warmup_epochs",
             "patience", "grad_clip", "precision", "seed")

    def decorate(f):
        @functools.wraps(f)  # keeps the click options already attached to f
        def wrapper(*args, **kwargs):
            kwargs["training_options"] = {name: kwargs.pop(name) for name in names}
            return f(*args, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def training_config(default, options: dict, monitor: str | None = None):
    """The stage's default TrainConfig with the command line's ``options`` (and ``monitor``)."""
    import dataclasses

    return dataclasses.replace(default, **options, **({"monitor": monitor} if monitor else {}))
