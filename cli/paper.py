"""``deepfeat paper DATA [--fold 5]`` → :func:`deepfeat.experiment.run_experiment`: the whole
experiment on one dataset (extract, svm, crnn, fuse, report), skipping finished stages."""
from __future__ import annotations

import click

from deepfeat.config import field_default
from deepfeat.experiment import PAPER_FEATURES, Experiment

from .dataset_options import dataset_options, read_options
from .options import LazyChoice, fold_option, select_metric_option


def _methods():
    from deepfeat.fusion import METHODS

    return list(METHODS)


@click.command("paper")
@click.argument("data", type=click.Path(exists=True))
@fold_option
@click.option("-n", "--features", "feature_sets", multiple=True, metavar="NETWORK[:WEIGHTS]",
              help="Feature set to extract and classify; repeat it (default: "
                   + ", ".join(f"{s.network}:{s.weights}" if s.weights else s.network for s in PAPER_FEATURES) + ").")
@click.option("--crnn-epochs", type=int, default=field_default(Experiment, "crnn_epochs"), show_default=True,
              help="CRNN training epochs; 0: no CRNN.")
@click.option("--crnn-augment", default=field_default(Experiment, "crnn_augment"), show_default=True,
              help="CRNN augmentations (as `deepfeat crnn --augment`).")
@click.option("-m", "--method", "methods", type=LazyChoice(_methods), multiple=True,
              default=field_default(Experiment, "methods"), show_default=True,
              help="Fusion methods (see `deepfeat fuse --help`); repeat it.")
@click.option("--features-dir", type=click.Path(file_okay=False), default=field_default(Experiment, "features_dir"),
              show_default=True, help="Where the feature stores go.")
@click.option("--results", "results_root", type=click.Path(file_okay=False),
              default=field_default(Experiment, "results_root"), show_default=True,
              help="Results root: runs go to RESULTS/<dataset>/<system>/.")
@click.option("--device", default=None, help="cpu, cuda, ... for extract and crnn (default: CUDA when available).")
@click.option("--dry-run", is_flag=True, help="Print the commands and what is already done; run nothing.")
@select_metric_option
@dataset_options
@click.option("--overwrite", is_flag=True,
              help="svm, crnn and fuse replace runs of other inputs or settings in their folders (refused otherwise).")
def paper(data, fold, feature_sets, crnn_epochs, crnn_augment, methods, features_dir, results_root, device, dry_run,
          select_metric, overwrite, **dataset_kwargs):
    """Run the paper's experiment on DATA end to end: extract every feature set, an SVM on each,
    the CRNN, every fusion group with every method, and the results table
    (RESULTS/<dataset>/README.md). Rerunning skips finished stages.
    """
    from pathlib import Path

    from deepfeat.experiment import FeatureSpec, run_experiment

    options = read_options(dataset_kwargs)
    exp = Experiment(Path(data), fold=fold, channels=options["channels"], dataset_name=options["name"],
                     n_folds=options["n_folds"], select_metric=select_metric,
                     features=tuple(FeatureSpec.parse(f) for f in feature_sets) or PAPER_FEATURES,
                     crnn_epochs=crnn_epochs or None, crnn_augment=crnn_augment, methods=methods,
                     features_dir=Path(features_dir), results_root=Path(results_root), device=device,
                     overwrite=overwrite)
    results_dir = run_experiment(exp, echo=click.echo, dry_run=dry_run)
    if not dry_run:
        click.echo(f"results table: {results_dir / 'README.md'}")
