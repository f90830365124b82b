"""What pre-training reads: the clips it may see, and their log-mel spectrograms, cached once.

:func:`pretraining_manifest` is the only way pre-training gets its clips: the dataset's manifest
without the held-out test fold and without any evaluation partition. Everything downstream (the
mel cache, its key and checksum, the training's identity) is made from that smaller manifest, so
the test fold's audio is never decoded. Labels are ignored; a plain folder of audio (no folds)
gives every clip.

The spectrograms are the front end's own (:func:`deepfeat.spectrogram.log_mel`, clipped dB; three
resolutions for ``mel3``), computed once per clip into a mel cache (:mod:`deepfeat.mel_cache`,
``features/<dataset>-pretrain-mels-<hash>.h5``); the views are then made from them in torch.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from ..config import MEL3_RESOLUTIONS, MelConfig, PlotConfig, canonical_json
from ..datasets import Manifest
from ..errors import ConfigError


def held_out_folds(manifest: Manifest, test_fold: int | str | None) -> list[int]:
    """The folds pre-training must not read: ``test_fold`` (a number, ``"evaluation"`` or None)
    and the dataset's evaluation partitions (which are only ever test data). Data without folds
    (a plain folder of audio: every clip in fold 0) has no test fold to leave out; a test fold the
    data lacks is a :class:`ConfigError` (a typo would otherwise pre-train on every clip)."""
    from ..protocol import resolve_test_fold

    held = set(manifest.evaluation_folds)
    folds = {c.fold for c in manifest.clips} - {0}
    if test_fold is not None and folds:
        fold = resolve_test_fold(test_fold, manifest.evaluation_folds, str(manifest.root))
        if fold not in folds:
            raise ConfigError(f"{manifest.root}: no fold {fold} (its folds: {', '.join(map(str, sorted(folds)))}); "
                              "pass the test fold with --fold K, or --fold none to pre-train on every clip")
        held.add(fold)
    return sorted(held)


def pretraining_manifest(manifest: Manifest, test_fold: int | str | None) -> Manifest:
    """``manifest`` without the clips of :func:`held_out_folds` (its name and layout kept)."""
    held = held_out_folds(manifest, test_fold)
    clips = tuple(c for c in manifest.clips if c.fold not in held)
    if not clips:
        raise ConfigError(f"{manifest.root}: no clips outside the held-out fold(s) {', '.join(map(str, held))}; "
                          "pre-train on data with other folds, or pass another --fold (none: every clip)")
    return dataclasses.replace(manifest, clips=clips, evaluation_folds=())


def plane_mels(plot: PlotConfig) -> list[MelConfig]:
    """The mel settings of each image plane: the plot's, or ``mel3``'s three resolutions."""
    if plot.colormap == "mel3":
        return [dataclasses.replace(plot.mel, window=w, hop=h) for w, h in MEL3_RESOLUTIONS]
    return [plot.mel]


def mel_cache_path(manifest: Manifest, mel: MelConfig, duration: float, folder: str | Path = "features") -> Path:
    """``<folder>/<dataset>-pretrain-mels-<hash>.h5``: one file per clip set and mel setting."""
    from ..mel_cache import mel_cache_key

    digest = hashlib.sha256(canonical_json(mel_cache_key(manifest, mel, duration)).encode()).hexdigest()[:10]
    return Path(folder) / f"{manifest.name}-pretrain-mels-{digest}.h5"


def load_planes(manifest: Manifest, plot: PlotConfig, duration: float, *, folder: str | Path = "features",
                workers: int | None = None, progress: bool = False) -> list[np.ndarray]:
    """Clipped log-mels of every clip of ``manifest``, float32 [N, n_mels, frames] (dB) per
    image plane, from the mel cache (computed there first where missing).

    Parameters
    ----------
    manifest : Manifest
        The clips pre-training may read (:func:`pretraining_manifest`).
    plot : PlotConfig
        The front end: its mel settings (three resolutions for ``mel3``).
    duration : float
        Seconds each clip is padded or cropped to.
    folder : path
        Where the mel caches are.
    workers : int, optional
        Processes computing missing spectrograms.
    """
    from ..mel_cache import ORIGINAL, ensure_mel_cache, read_mels

    if plot.segment is not None:
        raise ConfigError("pre-training reads whole clips: leave out --segment (use --duration to pad or crop)")
    planes = []
    for mel in plane_mels(plot):
        path = mel_cache_path(manifest, mel, duration, folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        ensure_mel_cache(path, manifest, mel, duration, workers=workers, progress=progress)
        planes.append(read_mels(path, [ORIGINAL])[0])
    return planes
