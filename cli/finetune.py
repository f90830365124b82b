"""``deepfeat finetune DATA --fold 5 -n NETWORK [-w imagenet|none|PATH] [--train-blocks K] [--ensemble M]``
→ :func:`deepfeat.finetune.run_finetune`."""
from __future__ import annotations

import click

from deepfeat.config import AUGMENTATION_NAMES
from deepfeat.finetune.config import (
    DEFAULT_AUGMENT, DEFAULT_MIXUP, DEFAULT_NETWORK, DEFAULT_TRAIN_BLOCKS, FINETUNE_TRAINING, MASKED_COPIES,
    VALIDATION_FRACTION,
)

from .options import fold_option, json_option, quiet_option, show_run, training_config, training_options
from .plot_options import plot_config_from, plot_options


def _blocks(value: str) -> int | None:
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: a number of stages or all") from None


@click.command("finetune")
@click.argument("data", type=click.Path(exists=True))
@fold_option
@click.option("-n", "--network", default=DEFAULT_NETWORK, show_default=True,
              help="An image CNN (`deepfeat extract --list`, kind image).")
@click.option("-w", "--weights", default="imagenet", show_default=True,
              help="imagenet | none (random init, fixed seed) | a checkpoint path (e.g. from `deepfeat pretrain`).")
@click.option("--train-blocks", default=str(DEFAULT_TRAIN_BLOCKS), show_default=True, metavar="K|all",
              help="Train the last K stages and a new head; the frozen rest runs once per clip (cached). "
                   "all: full fine-tuning (for GPUs).")
@click.option("--ensemble", type=int, default=1, show_default=True,
              help="Deep ensemble of M members differing only in their seed; probabilities are averaged.")
@click.option("--augment", default=DEFAULT_AUGMENT, show_default=True, metavar="LIST",
              help=f"Comma-separated, from {', '.join(AUGMENTATION_NAMES)}; or all / none. Waveform ones and "
                   f"specaugment ({MASKED_COPIES} masked copies) add cached versions of each clip; mixup mixes "
                   "training pairs.")
@click.option("--mixup", "mixup_alpha", type=float, default=None,
              help=f"MixUp's Beta(a, a) (default {DEFAULT_MIXUP} when --augment has mixup, else off).")
@click.option("--size", type=(int, int), default=None, metavar="H W",
              help="Image size in pixels (default: the network's input size), e.g. 128 250.")
@training_options(lambda: FINETUNE_TRAINING)
@click.option("--validation-fraction", type=float, default=VALIDATION_FRACTION, show_default=True,
              help="Inner validation split of the training clips (best epoch, early stopping); 0: none.")
@click.option("-o", "--output", "run_dir", default=None, type=click.Path(file_okay=False),
              help="Run folder (default: results/<dataset>/<system>).")
@click.option("--cache", default=None, type=click.Path(dir_okay=False),
              help="Store of the frozen trunk's activations (default: features/<dataset>-finetune-<network>-<hash>.h5).")
@click.option("--calibrate-bn/--no-calibrate-bn", "calibrate", default=None,
              help="Re-estimate the frozen trunk's batch-norm statistics on development clips before caching its "
                   "activations (default: only with -w none, whose statistics describe no data).")
@click.option("--workers", type=int, default=None, help="Front-end worker processes (default: CPU count, at most 4).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's).")
@click.option("--overwrite", is_flag=True, help="Start the trainings again, replacing a run of other data or settings "
                                               "in the run folder.")
@plot_options
@json_option
@quiet_option
def finetune(data, fold, network, weights, train_blocks, ensemble, augment, mixup_alpha, size, training_options,
             validation_fraction, run_dir, cache, calibrate, workers, device, threads, overwrite, as_json, quiet,
             **plot_kwargs):
    """Fine-tune an image CNN on the mel-spectrogram images of DATA under the fold protocol:
    out-of-fold probabilities for each development fold, then the model trained on all
    development folds scores the test fold. Writes what `deepfeat svm` writes (metrics.json,
    scores.h5 for `deepfeat fuse`, confusion matrix) and the model (state dicts).
    """
    from deepfeat.augment import AugmentConfig
    from deepfeat.datasets import load_manifest
    from deepfeat.evaluation import default_run_dir
    from deepfeat.finetune import FineTunedCNN, run_finetune, system_name

    augment_config = AugmentConfig.from_names(augment.split(","))
    alpha = mixup_alpha if mixup_alpha is not None else (DEFAULT_MIXUP if augment_config.mixup_alpha > 0 else 0.0)
    classifier = FineTunedCNN(network=network, weights=weights, train_blocks=_blocks(train_blocks),
                              training=training_config(FINETUNE_TRAINING, training_options), mixup_alpha=alpha,
                              validation_fraction=validation_fraction)
    plot = plot_config_from(plot_kwargs)
    manifest = load_manifest(data)
    system = system_name(classifier, ensemble, plot)
    run_dir = run_dir or default_run_dir(manifest.name, system)
    metrics = run_finetune(manifest, run_dir, test_fold=fold, classifier=classifier, plot=plot,
                           augment=augment_config, size=size, ensemble=ensemble, cache=cache, calibrate=calibrate,
                           workers=workers,
                           device=device, threads=threads, progress=not quiet, overwrite=overwrite, system=system)
    show_run({**metrics, "run_dir": str(run_dir)}, as_json, quiet)
