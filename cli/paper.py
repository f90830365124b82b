"""``deepfeat paper DATA [--fold 5]`` → :func:`deepfeat.experiment.run_experiment`: the whole
experiment on one dataset (extract, svm, crnn, finetune, fuse, report), skipping finished stages."""
from __future__ import annotations

import click

from .dataset_options import dataset_options, read_options
from .options import LazyChoice, LibraryDefault, fold_option, select_metric_option


def _default(name: str) -> LibraryDefault:
    """The default of ``Experiment.<name>``, read when needed (the experiment module imports numpy)."""
    def read():
        from deepfeat.config import field_default
        from deepfeat.experiment import Experiment

        return field_default(Experiment, name)

    return LibraryDefault(read)


def _paper_features() -> tuple[str, ...]:
    from deepfeat.experiment import PAPER_FEATURES

    return tuple(f"{s.network}:{s.weights}" if s.weights else s.network for s in PAPER_FEATURES)


def _methods():
    from deepfeat.fusion import METHODS

    return list(METHODS)


@click.command("paper")
@click.argument("data", type=click.Path(exists=True))
@fold_option
@click.option("-n", "--features", "feature_sets", multiple=True, metavar="NETWORK[:WEIGHTS]",
              default=LibraryDefault(_paper_features), show_default=True,
              help="Feature set to extract and classify; repeat it.")
@click.option("--crnn-epochs", type=int, default=_default("crnn_epochs"), show_default=True,
              help="CRNN training epochs; 0: no CRNN.")
@click.option("--crnn-augment", default=_default("crnn_augment"), show_default=True,
              help="CRNN augmentations (as `deepfeat crnn --augment`).")
@click.option("--finetune", "finetune", multiple=True, metavar="NETWORK[:WEIGHTS]",
              default=_default("finetune"), show_default=True,
              help="Image CNN to fine-tune (`deepfeat finetune`); repeat it.")
@click.option("--finetune-epochs", type=int, default=_default("finetune_epochs"), show_default=True,
              help="Fine-tuning epochs; 0: no fine-tuning.")
@click.option("--finetune-ensemble", type=click.IntRange(min=1), default=_default("finetune_ensemble"),
              show_default=True, help="Members of each fine-tuned deep ensemble (`deepfeat finetune --ensemble`).")
@click.option("--finetune-augment", default=_default("finetune_augment"), show_default=True,
              help="Fine-tuning augmentations (as `deepfeat finetune --augment`).")
@click.option("-m", "--method", "methods", type=LazyChoice(_methods), multiple=True,
              default=_default("methods"), show_default=True,
              help="Fusion methods (see `deepfeat fuse --help`); repeat it.")
@click.option("--features-dir", type=click.Path(file_okay=False), default=_default("features_dir"),
              show_default=True, help="Where the feature stores go.")
@click.option("--results", "results_root", type=click.Path(file_okay=False),
              default=_default("results_root"), show_default=True,
              help="Results root: runs go to RESULTS/<dataset>/<system>/.")
@click.option("--device", default=None, help="cpu, cuda, ... for extract and crnn (default: CUDA when available).")
@click.option("--dry-run", is_flag=True, help="Print the commands and what is already done; run nothing.")
@select_metric_option
@dataset_options
@click.option("--overwrite", is_flag=True,
              help="svm, crnn and fuse replace runs of other inputs or settings in their folders (refused otherwise).")
def paper(data, fold, feature_sets, crnn_epochs, crnn_augment, finetune, finetune_epochs, finetune_ensemble,
          finetune_augment, methods, features_dir, results_root, device, dry_run,
          select_metric, overwrite, **dataset_kwargs):
    """Run the paper's experiment on DATA end to end: extract every feature set, an SVM on each,
    the CRNN, the fine-tuned CNNs, every fusion group with every method, and the results table
    (RESULTS/<dataset>/README.md). Rerunning skips finished stages.
    """
    from pathlib import Path

    from deepfeat.experiment import PAPER_FEATURES, Experiment, FeatureSpec, run_experiment

    options = read_options(dataset_kwargs)
    exp = Experiment(Path(data), fold=fold, channels=options["channels"], dataset_name=options["name"],
                     n_folds=options["n_folds"], select_metric=select_metric,
                     features=tuple(FeatureSpec.parse(f) for f in feature_sets) or PAPER_FEATURES,
                     crnn_epochs=crnn_epochs or None, crnn_augment=crnn_augment, finetune=tuple(finetune),
                     finetune_epochs=finetune_epochs or None, finetune_ensemble=finetune_ensemble,
                     finetune_augment=finetune_augment, methods=methods,
                     features_dir=Path(features_dir), results_root=Path(results_root), device=device,
                     overwrite=overwrite)
    results_dir = run_experiment(exp, echo=click.echo, dry_run=dry_run)
    if not dry_run:
        click.echo(f"results table: {results_dir / 'README.md'}")
