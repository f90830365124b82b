"""``deepfeat crnn DATA --fold 5 [-o RUN_DIR] [--augment all]`` → :func:`deepfeat.crnn.run_crnn`."""
from __future__ import annotations

import click

from .options import LazyChoice, LibraryDefault, fold_option, json_option, quiet_option, show_run


def _training(name: str) -> LibraryDefault:
    """The default of ``TrainingConfig.<name>``, read when needed (the CRNN modules import numpy)."""
    def read():
        from deepfeat.config import field_default
        from deepfeat.crnn.config import TrainingConfig

        return field_default(TrainingConfig, name)

    return LibraryDefault(read)


def _mel(name: str) -> LibraryDefault:
    def read():
        from deepfeat.crnn.config import CRNN_MEL

        return getattr(CRNN_MEL, name)

    return LibraryDefault(read)


def _variants():
    from deepfeat.crnn.config import ARCHITECTURES

    return list(ARCHITECTURES)


def _duration():
    from deepfeat.crnn.config import DEFAULT_DURATION

    return DEFAULT_DURATION


@click.command("crnn")
@click.argument("data", type=click.Path(exists=True))
@fold_option
@click.option("-o", "--output", "run_dir", default=None, type=click.Path(file_okay=False),
              help="Run folder (default: results/<dataset>/<system>).")
@click.option("--variant", type=LazyChoice(_variants), default="esc", show_default=True,
              help="esc: 4 blocks of 3x3 convolutions (paper §3.2.2); dcase: 5x5, 4x4, 3x3 blocks (§3.2.1).")
@click.option("--augment", default="none", show_default=True, metavar="LIST",
              help="Comma-separated, or all / none. stretch: 0.8x, 1.2x; pitch: ±2 semitones; noise: 5, 15 dB "
                   "SNR; specaugment: 2+2 masks, width ≤ 20; patch: patch replacement; mixup: α 0.2.")
@click.option("--epochs", type=int, default=_training("epochs"), show_default=True)
@click.option("--batch-size", type=int, default=_training("batch_size"), show_default=True)
@click.option("--lr", "learning_rate", type=float, default=_training("learning_rate"), show_default=True,
              help="Adam learning rate.")
@click.option("--seed", type=int, default=_training("seed"), show_default=True,
              help="Seed of initialisation, shuffling, augmentation.")
@click.option("--duration", type=float, default=LibraryDefault(_duration), show_default=True,
              help="Pad or crop every clip to this, seconds.")
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
@click.option("--threads", type=int, default=1, show_default=True,
              help="CPU threads for torch; 0: one per core. The small convolutions gain little from threads.")
@click.option("--overwrite", is_flag=True, help="Start the trainings again (and replace a mismatched mel cache).")
@json_option
@quiet_option
def crnn(data, fold, run_dir, variant, augment, epochs, batch_size, learning_rate, seed, duration, clip_db, window,
         hop, n_mels, sample_rate, mel_cache, workers, device, threads, overwrite, as_json, quiet):
    """Train the CRNN on log-mel spectrograms of DATA: out-of-fold scores for each development fold,
    then a model on all development folds scores the test fold.

    DATA is a labelled dataset with folds (ESC-50/ESC-10, UrbanSound8K, a label CSV with a fold
    column). An interrupted run resumes from its per-epoch checkpoints when rerun unchanged.
    """
    import dataclasses

    from deepfeat.augment import AugmentConfig
    from deepfeat.crnn import run_crnn, system_name
    from deepfeat.crnn.config import ARCHITECTURES, CRNN_MEL, TrainingConfig
    from deepfeat.datasets import load_manifest
    from deepfeat.evaluation import default_run_dir

    config = TrainingConfig(architecture=ARCHITECTURES[variant], epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, seed=seed,
                            augment=AugmentConfig.from_names(augment.split(",")))
    mel = dataclasses.replace(CRNN_MEL, sample_rate=sample_rate, n_mels=n_mels, window=window, hop=hop,
                              clip_db=clip_db)
    manifest = load_manifest(data)
    system = system_name(config)
    run_dir = run_dir or default_run_dir(manifest.name, system)
    metrics = run_crnn(manifest, run_dir, test_fold=fold, config=config, mel=mel, duration=duration,
                       mel_cache=mel_cache, workers=workers, device=device, threads=threads, progress=not quiet,
                       overwrite=overwrite, system=system)
    show_run({**metrics, "run_dir": str(run_dir)}, as_json, quiet)
