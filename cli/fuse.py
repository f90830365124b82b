"""``deepfeat fuse SCORES... --fold 5 [-m METHOD] [-o RUN_DIR]`` and
``deepfeat fuse --group NAME RESULTS_DIR|SCORES...`` → :func:`deepfeat.fusion.run_fusion`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from deepfeat.fusion import GROUPS, METHODS

from .options import fold_option, json_option, quiet_option


@click.command("fuse")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@fold_option
@click.option("-g", "--group", type=click.Choice(list(GROUPS)), default=None,
              help="Fuse the members of this group among PATHS (results folders, searched, and scores files): "
                   + "; ".join(f"{name}: {description}" for name, (description, _) in GROUPS.items()) + ".")
@click.option("-m", "--method", "methods", type=click.Choice([*METHODS, "all"]), multiple=True, default=("stacking",),
              show_default=True,
              help="stacking: linear SVM on the concatenated per-system class probabilities, C tuned on the "
                   "development folds; weighted: one weight per system, fitted by logistic regression; mean: mean "
                   "of per-system standardised scores; vote: majority vote. Repeat it, or pass all.")
@click.option("-o", "--output", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (one method only; default: RESULTS_DIR/<system> with --group RESULTS_DIR, "
                   "else results/<dataset>/<system>).")
@click.option("--name", default=None, help="System name of the fusion (default: fusion-<group>-<method> or "
                                           "fusion-<method>-<systems>).")
@click.option("--c-grid", default="1e-5,1e-4,1e-3,1e-2,1e-1,1,10", show_default=True,
              help="stacking: comma-separated values of the SVM complexity C to choose from.")
@click.option("--svm", "kind", type=click.Choice(["svc", "linearsvc"]), default="svc", show_default=True,
              help="stacking: the SVM implementation (as in `deepfeat svm`).")
@click.option("--normalise", type=click.Choice(["none", "standard", "softmax"]), default=None,
              help="stacking and mean: each system's scores as they are (none), z-scored (standard) or z-scored "
                   "then softmax (class probabilities). Default: softmax for stacking, standard for mean.")
@json_option
@quiet_option
def fuse(paths, fold, group, methods, run_dir, name, c_grid, kind, normalise, as_json, quiet):
    """Late fusion of the scores.h5 files written by `deepfeat svm`, `deepfeat crnn` (or `fuse`).

    The fusion is fitted on the development folds' out-of-fold scores only and scores the test
    fold. Writes the same run directory as `deepfeat svm`: metrics.json, report.txt/.json,
    confusion_matrix.png, model.joblib and scores.h5 (so fusions can be fused again).
    """
    from deepfeat.classify import parse_c_grid
    from deepfeat.errors import ConfigError
    from deepfeat.evaluation import jsonable, summary_table
    from deepfeat.fusion import run_fusion, select_group

    methods = tuple(METHODS) if "all" in methods else tuple(dict.fromkeys(methods))
    if run_dir is not None and len(methods) > 1:
        raise ConfigError(f"-o names one run directory but {len(methods)} methods were asked for; pass one --method")
    if name is not None and len(methods) > 1:
        raise ConfigError(f"--name names one system but {len(methods)} methods were asked for; pass one --method")
    results_dir = None
    if group is not None:
        folders = [p for p in paths if Path(p).is_dir()]
        results_dir = folders[0] if len(folders) == 1 and len(paths) == 1 else None
        paths = select_group(paths, group, test_fold=fold)
    elif any(Path(p).is_dir() for p in paths):
        raise ConfigError(f"{next(p for p in paths if Path(p).is_dir())}: a folder; pass scores.h5 files, or a "
                          "results folder with --group")
    normalised = {"normalise": normalise} if normalise else {}
    params_of = {"stacking": {"Cs": parse_c_grid(c_grid), "kind": kind, **normalised}, "mean": normalised}
    runs = []
    for method in methods:
        metrics = run_fusion(paths, method=method, fold=fold, run_dir=run_dir, group=group, results_dir=results_dir,
                             system=name, params=params_of.get(method, {}))
        runs.append(metrics)
        if not as_json and not quiet:
            click.echo(summary_table(metrics))
            click.echo(f"wrote {metrics['run_dir']}")
    if as_json:
        click.echo(json.dumps(jsonable(runs[0] if len(runs) == 1 else runs), indent=2))
