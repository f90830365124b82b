"""``deepfeat fuse SCORES... --fold 5 [-m stacking|mean|vote|all] [-o RUN_DIR]`` and
``deepfeat fuse --group NAME RESULTS_DIR`` → :func:`deepfeat.fusion.run_fusion`."""
from __future__ import annotations

import json

import click

from deepfeat.fusion import GROUPS, METHODS

from .options import fold_option, json_option, quiet_option


@click.command("fuse")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@fold_option
@click.option("-g", "--group", type=click.Choice(list(GROUPS)), default=None,
              help="Fuse the systems of this group found under the results folder given as the only PATH: "
                   + "; ".join(f"{name}: {description}" for name, (description, _) in GROUPS.items()) + ".")
@click.option("-m", "--method", "methods", type=click.Choice([*METHODS, "all"]), multiple=True, default=("stacking",),
              show_default=True,
              help="stacking: linear SVM on the concatenated scores, C tuned on the development folds; mean: mean "
                   "of per-system standardised scores; vote: majority vote. Repeat it, or pass all.")
@click.option("-o", "--output", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (one method only; default: RESULTS_DIR/<system> with --group, else "
                   "results/<dataset>/<system>).")
@click.option("--name", default=None, help="System name of the fusion (default: fusion-<group>-<method> or "
                                           "fusion-<method>-<systems>).")
@click.option("--c-grid", default="1e-5,1e-4,1e-3,1e-2,1e-1,1,10", show_default=True,
              help="stacking: comma-separated values of the SVM complexity C to choose from.")
@click.option("--svm", "kind", type=click.Choice(["svc", "linearsvc"]), default="svc", show_default=True,
              help="stacking: the SVM implementation (as in `deepfeat svm`).")
@click.option("--normalise", type=click.Choice(["standard", "softmax"]), default="standard", show_default=True,
              help="mean: z-score each system's scores (standard) or z-score then softmax (average probabilities).")
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
        if len(paths) != 1:
            raise ConfigError(f"--group takes one results folder (e.g. results/esc10), got {len(paths)} paths")
        results_dir = paths[0]
        paths = select_group(results_dir, group, test_fold=fold)
    params_of = {"stacking": {"Cs": parse_c_grid(c_grid), "kind": kind}, "mean": {"normalise": normalise}, "vote": {}}
    runs = []
    for method in methods:
        metrics = run_fusion(paths, method=method, fold=fold, run_dir=run_dir, group=group, results_dir=results_dir,
                             system=name, params=params_of[method])
        runs.append(metrics)
        if not as_json and not quiet:
            click.echo(summary_table(metrics))
            click.echo(f"wrote {metrics['run_dir']}")
    if as_json:
        click.echo(json.dumps(jsonable(runs[0] if len(runs) == 1 else runs), indent=2))
