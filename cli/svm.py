"""``deepfeat svm STORE.h5 --fold 5 [--cv] [-o RUN_DIR]`` → :func:`deepfeat.classify.run_svm`."""
from __future__ import annotations

import click

from .options import (
    SVM_HELP, c_grid_option, fold_option, json_option, overwrite_run_option, quiet_option, select_metric_option,
    show_run, svm_kind_option,
)


def _stage_kinds():
    from deepfeat.classify import STAGE_KINDS

    return STAGE_KINDS


@click.command("svm")
@click.argument("store", type=click.Path(dir_okay=False))
@fold_option
@click.option("--cv", is_flag=True, help="Use every fold in turn as test fold and report mean ± std (ignores --fold).")
@click.option("-o", "--output", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: results/<dataset>/<system>/).")
@svm_kind_option(_stage_kinds, SVM_HELP + " sgd: SGD over blocks of rows read from the store (stores larger than "
                                           "memory).")
@c_grid_option
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
              help="balanced: weight classes inversely to their frequency.")
@select_metric_option
@click.option("--per-window", is_flag=True, help="Windowed stores: score each window instead of pooling per clip.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Parallel SVM fits (default: CPU count, at most 4).")
@overwrite_run_option
@json_option
@quiet_option
def svm(store, fold, cv, run_dir, kind, c_grid, class_weight, select_metric, per_window, jobs, overwrite, as_json,
        quiet):
    """Linear SVM on the feature STORE: C tuned by cross-validation over the development folds,
    refitted on all of them and scored on the test fold.

    Writes metrics.json, report.txt/.json, confusion_matrix.png, model.joblib and scores.h5
    (per-clip decision scores: out-of-fold on development folds, refitted model on the test fold).
    """
    from deepfeat.classify import run_svm
    from deepfeat.svm import parse_c_grid

    metrics = run_svm(store, fold=fold, cv=cv, run_dir=run_dir, kind=kind, c_grid=parse_c_grid(c_grid),
                      class_weight=None if class_weight == "none" else class_weight, per_window=per_window,
                      select_metric=select_metric, n_jobs=jobs, overwrite=overwrite)
    show_run(metrics, as_json, quiet)
