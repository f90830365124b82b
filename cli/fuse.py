"""``deepfeat fuse SCORES... --fold 5 [-m METHOD] [-o RUN_DIR]`` and
``deepfeat fuse --group NAME RESULTS_DIR|SCORES...`` → :func:`deepfeat.fusion.run_fusion`."""
from __future__ import annotations

import click

from .options import (
    LazyChoice, c_grid_option, fold_option, json_option, overwrite_run_option, quiet_option, select_metric_option,
    show_run, svm_option,
)


def _methods():
    from deepfeat.fusion import METHODS

    return [*METHODS, "all"]


def _groups():
    from deepfeat.fusion.groups import GROUPS

    return list(GROUPS)


@click.command("fuse")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@fold_option
@click.option("-g", "--group", type=LazyChoice(_groups), default=None,
              help="Fuse the members of this group among PATHS (results folders, searched, and scores files); "
                   "`deepfeat report` and README list the groups.")
@click.option("-m", "--method", "methods", type=LazyChoice(_methods), multiple=True, default=("stacking",),
              show_default=True,
              help="stacking: linear SVM on the concatenated per-system class probabilities, C tuned on the "
                   "development folds; weighted: one weight per system, fitted by logistic regression; mean: mean "
                   "of per-system standardised scores; vote: majority vote. Repeat it, or pass all.")
@click.option("-o", "--output", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (one method only; default: RESULTS_DIR/<system> with --group RESULTS_DIR, "
                   "else results/<dataset>/<system>).")
@click.option("--name", default=None, help="System name of the fusion (default: fusion-<group>-<method> or "
                                           "fusion-<method>-<systems>).")
@c_grid_option
@svm_option
@select_metric_option
@click.option("--normalise", type=click.Choice(["none", "standard", "softmax"]), default=None,
              help="stacking and mean: each system's scores as they are (none), z-scored (standard) or z-scored "
                   "then softmax (class probabilities). Default: softmax for stacking, standard for mean.")
@overwrite_run_option
@json_option
@quiet_option
def fuse(paths, fold, group, methods, run_dir, name, c_grid, kind, select_metric, normalise, overwrite, as_json,
         quiet):
    """Late fusion of the scores.h5 files written by `deepfeat svm`, `crnn`, `finetune` (or `fuse`).

    The fusion is fitted on the development folds' out-of-fold scores only and scores the test
    fold. Writes the same run directory as `deepfeat svm`: metrics.json, report.txt/.json,
    confusion_matrix.png, model.joblib and scores.h5 (so fusions can be fused again).
    """
    from deepfeat.errors import ConfigError
    from deepfeat.fusion import METHODS, resolve_inputs, run_fusion
    from deepfeat.svm import parse_c_grid

    methods = tuple(METHODS) if "all" in methods else tuple(dict.fromkeys(methods))
    for option, value in (("-o", run_dir), ("--name", name)):
        if value is not None and len(methods) > 1:
            raise ConfigError(f"{option} names one run but {len(methods)} methods were asked for; pass one --method")
    inputs, results_dir = resolve_inputs(paths, group, fold)
    normalised = {"normalise": normalise} if normalise else {}
    params_of = {"stacking": {"Cs": parse_c_grid(c_grid), "kind": kind, "select_metric": select_metric,
                              **normalised},
                 "mean": normalised}
    runs = [run_fusion(inputs, method=method, fold=fold, run_dir=run_dir, group=group, results_dir=results_dir,
                       system=name, params=params_of.get(method, {}), overwrite=overwrite) for method in methods]
    show_run(runs[0] if len(runs) == 1 else runs, as_json, quiet)
