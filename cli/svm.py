"""``deepfeat svm STORE.h5 --fold 5 [--cv] [-o RUN_DIR]`` → :func:`deepfeat.classify.run_svm`."""
from __future__ import annotations

import json

import click

from .options import fold_option, json_option, quiet_option


@click.command("svm")
@click.argument("store", type=click.Path(dir_okay=False))
@fold_option
@click.option("--cv", is_flag=True, help="Use every fold in turn as test fold and report mean ± std (ignores --fold).")
@click.option("-o", "--output", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: results/<dataset>/<system>/).")
@click.option("--svm", "kind", type=click.Choice(["svc", "linearsvc"]), default="svc", show_default=True,
              help="svc: SVC(kernel='linear') (libsvm, fast up to a few thousand rows); "
                   "linearsvc: LinearSVC (liblinear, for many rows).")
@click.option("--c-grid", default="1e-5,1e-4,1e-3,1e-2,1e-1,1,10", show_default=True,
              help="Comma-separated values of the SVM complexity C to choose from.")
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
              help="balanced: weight classes inversely to their frequency.")
@click.option("--per-window", is_flag=True, help="Windowed stores: score each window instead of pooling per clip.")
@click.option("-j", "--jobs", type=int, default=None, help="Parallel SVM fits (default: CPU count, at most 4).")
@json_option
@quiet_option
def svm(store, fold, cv, run_dir, kind, c_grid, class_weight, per_window, jobs, as_json, quiet):
    """Linear SVM on the feature STORE: C tuned by cross-validation over the development folds,
    refitted on all of them and scored on the test fold.

    Writes metrics.json, report.txt/.json, confusion_matrix.png, model.joblib and scores.h5
    (per-clip decision scores: out-of-fold on development folds, refitted model on the test fold).
    """
    from deepfeat.classify import parse_c_grid, run_svm
    from deepfeat.evaluation import jsonable, summary_table

    metrics = run_svm(store, fold=fold, cv=cv, run_dir=run_dir, kind=kind, c_grid=parse_c_grid(c_grid),
                      class_weight=None if class_weight == "none" else class_weight, per_window=per_window,
                      n_jobs=jobs)
    if as_json:
        click.echo(json.dumps(jsonable(metrics), indent=2))
    elif not quiet:
        click.echo(summary_table(metrics))
        click.echo(f"wrote {metrics['run_dir']}")
