"""Options shared by several subcommands; their defaults come from the library."""
from __future__ import annotations

import json

import click

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries (for scripts).")
#: the CPU plan of a stage that feeds a torch network (:func:`deepfeat.threads.plan_threads`)
workers_option = click.option("--workers", type=click.IntRange(min=0), default=None,
                              help="Front-end processes (decode, mel images); 0: in this process. Default: 0 below "
                                   "4 cores, else cores/4; with CUDA, cores - 1.")
threads_option = click.option("--threads", type=click.IntRange(min=0), default=None,
                              help="torch CPU threads. Default (or 0): the cores the workers leave. Features do not "
                                   "depend on --workers; on --threads by float32 rounding for some networks.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
fold_option = click.option("--fold", type=int, default=5, show_default=True,
                           help="Held-out test fold; the other folds form the development set.")


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


svm_option = click.option("--svm", "kind", type=LazyChoice(_svm_kinds), default=LibraryDefault(lambda: _svm_kinds()[0]),
                          show_default=True,
                          help="svc: libsvm on a precomputed linear kernel (fast up to a few thousand rows); "
                               "linearsvc: liblinear (for many rows).")
c_grid_option = click.option("--c-grid", default=LibraryDefault(_c_grid_text), show_default=True,
                             help="Comma-separated values of the SVM complexity C to choose from.")
select_metric_option = click.option("--select-metric", type=LazyChoice(_score_names),
                                    default=LibraryDefault(lambda: _score_names()[0]), show_default=True,
                                    help="What the cross-validation over the development folds maximises.")


def show_run(metrics: dict | list, as_json: bool, quiet: bool) -> None:
    """Print a run's metrics: JSON, or the summary table and the run folder (nothing with ``quiet``)."""
    from deepfeat.evaluation import jsonable, summary_table

    if as_json:
        click.echo(json.dumps(jsonable(metrics), indent=2))
        return
    if quiet:
        return
    for m in metrics if isinstance(metrics, list) else [metrics]:
        click.echo(summary_table(m))
        click.echo(f"wrote {m['run_dir']}")
