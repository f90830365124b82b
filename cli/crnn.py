"""``deepfeat crnn DATA --fold 5 [-o RUN_DIR] [--augment all]`` → :func:`deepfeat.crnn.run_crnn`."""
from __future__ import annotations

import click

from deepfeat.config import AUGMENTATION_NAMES

from .dataset_options import dataset_options, read_options
from .options import (
    LazyChoice, LibraryDefault, fold_option, json_option, quiet_option, select_metric_option, show_run,
    training_config, training_options,
)


def _training():
    from deepfeat.crnn.config import CRNN_TRAINING

    return CRNN_TRAINING


def _mel(name: str) -> LibraryDefault:
    """The default of ``CRNN_MEL.<name>``, read when needed."""
    def read():
        from deepfeat.crnn.config import CRNN_MEL

        return getattr(CRNN_MEL, name)

    return LibraryDefault(read)


def _variants():
    from deepfeat.crnn.config import ARCHITECTURES

    return list(ARCHITECTURES)


class Duration(click.ParamType):
    """Seconds (> 0) or ``auto``."""

    name = "SECONDS|auto"

    def convert(self, value, param, ctx):
        if value == "auto":
            return value
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r}: seconds or auto", param, ctx)
        if not seconds > 0:
            self.fail(f"{value!r}: must be positive", param, ctx)
        return seconds


@click.command("crnn")
@click.argument("data", type=click.Path(exists=True))
@fold_option
@click.option("-o", "--output", "run_dir", default=None, type=click.Path(file_okay=False),
              help="Run folder (default: results/<dataset>/<system>).")
@click.option("--variant", type=LazyChoice(_variants), default="esc", show_default=True,
              help="esc: 4 blocks of 3x3 convolutions (paper §3.2.2); dcase: 5x5, 4x4, 3x3 blocks (§3.2.1).")
@click.option("--augment", default="none", show_default=True, metavar="LIST",
              help=f"Comma-separated, from {', '.join(AUGMENTATION_NAMES)}; or all / none. stretch: 0.8x, 1.2x; "
                   "pitch: ±2 semitones; noise: 5, 15 dB SNR; specaugment: 2+2 masks, width ≤ 20; patch: patch "
                   "replacement; mixup: α 0.2.")
@training_options(_training)
@click.option("--validation-fraction", type=float, default=0.0, show_default=True,
              help="Inner validation split of the training clips (early stopping, best epoch); 0: none.")
@click.option("--duration", type=Duration(), default="auto", show_default=True,
              help="Pad or crop every clip to this, seconds; auto: the 95th percentile of the clips' lengths "
                   "(rounded up to 0.1 s), so short clips are not padded to seconds of silence.")
@click.option("--clip-db", type=float, default=_mel("clip_db"), show_default=True, help="Mel floor below the maximum, dB.")
@click.option("--window", type=float, default=_mel("window"), show_default=True, help="Mel window length, seconds.")
@click.option("--hop", type=float, default=_mel("hop"), show_default=True, help="Mel hop, seconds.")
@click.option("--n-mels", type=int, default=_mel("n_mels"), show_default=True)
@click.option("--sample-rate", "-sr", type=int, default=_mel("sample_rate"), show_default=True,
              help="Resample to this rate, Hz.")
@click.option("--mel-cache", default=None, type=click.Path(dir_okay=False),
              help="HDF5 mel cache (default: features/<dataset>-crnn-mels-<hash>.h5, one per mel setting).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes computing mels, before training (default: one per available core).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="CPU threads for torch; 0: one per core. The small convolutions gain little from threads.")
@click.option("--overwrite", is_flag=True, help="Start the trainings again, replacing a run of other data or settings "
                                               "in the run folder (and a mismatched mel cache).")
@select_metric_option
@dataset_options
@json_option
@quiet_option
def crnn(data, fold, run_dir, variant, augment, training_options, validation_fraction, duration, clip_db, window, hop,
         n_mels, sample_rate, mel_cache, workers, device, threads, overwrite, select_metric, as_json, quiet,
         **dataset_kwargs):
    """Train the CRNN on log-mel spectrograms of DATA: out-of-fold scores for each development fold,
    then a model on all development folds scores the test fold.

    DATA is a labelled dataset with folds (ESC-50/ESC-10, UrbanSound8K, DCASE, GTZAN, a label CSV
    with a fold column). An interrupted run resumes from its per-epoch checkpoints when rerun
    unchanged. With --validation-fraction, --select-metric is what picks the best epoch (and early
    stopping with --patience); it is recorded in metrics.json either way.
    """
    import dataclasses

    from deepfeat.augment import AugmentConfig
    from deepfeat.crnn import CRNN_MEL, CRNN_TRAINING, CRNNClassifier, run_crnn, system_name
    from deepfeat.datasets import load_manifest
    from deepfeat.evaluation import default_run_dir

    classifier = CRNNClassifier(architecture=variant, training=training_config(CRNN_TRAINING, training_options),
                                augment=AugmentConfig.from_names(augment.split(",")),
                                validation_fraction=validation_fraction)
    mel = dataclasses.replace(CRNN_MEL, sample_rate=sample_rate, n_mels=n_mels, window=window, hop=hop,
                              clip_db=clip_db)
    manifest = load_manifest(data, **read_options(dataset_kwargs))
    system = system_name(classifier)
    run_dir = run_dir or default_run_dir(manifest.name, system)
    metrics = run_crnn(manifest, run_dir, test_fold=fold, classifier=classifier, mel=mel, duration=duration,
                       mel_cache=mel_cache, workers=workers, device=device, threads=threads, progress=not quiet,
                       overwrite=overwrite, system=system, select_metric=select_metric)
    show_run({**metrics, "run_dir": str(run_dir)}, as_json, quiet)
