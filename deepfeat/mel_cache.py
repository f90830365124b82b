"""The mel cache: clipped log-mel spectrograms of every clip of a dataset, plain and per
waveform augmentation, in one HDF5 file per mel setting — the input of the networks deepfeat
trains (``deepfeat crnn``), computed once and reused by every training of a run.

Layout (``format = "deepfeat.mels"``): ``ids`` str [N]; ``mels/<name>`` float32
[N, n_mels, frames] in dB for ``original`` and each augmentation name; attribute ``key``
(canonical JSON of :func:`mel_cache_key`). Adding variants rewrites the file atomically
(:func:`deepfeat.io.atomic_path`), so a crash never leaves a half-written cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .audio import fix_length, load_audio
from .augment import WaveformAugmentation
from .config import MelConfig, canonical_json
from .datasets import Manifest
from .errors import StoreError
from .io import atomic_path, attrs_dict, open_h5, stamp_format, write_strings
from .spectrogram import log_mel
from .store import describe_difference

log = logging.getLogger("deepfeat.mel_cache")

FORMAT = "deepfeat.mels"
ORIGINAL = "original"  #: name of the unaugmented spectrograms
_HINT = "`deepfeat crnn` computes it; delete it to recompute"


def mel_cache_key(manifest: Manifest, mel: MelConfig, duration: float) -> dict:
    """What the cached spectrograms depend on: mel settings, clip duration (s), the dataset."""
    return {"mel": dataclasses.asdict(mel), "duration": float(duration), "dataset": manifest.name,
            "manifest_sha256": manifest.fingerprint()}


def default_mel_cache(manifest: Manifest, mel: MelConfig, duration: float) -> Path:
    """``features/<dataset>-crnn-mels-<hash>.h5``: one file per mel configuration."""
    digest = hashlib.sha256(canonical_json(mel_cache_key(manifest, mel, duration)).encode()).hexdigest()[:10]
    return Path("features") / f"{manifest.name}-crnn-mels-{digest}.h5"


def clip_mels(path: Path, clip_id: str, mel: MelConfig, duration: float,
              augmentations: list[WaveformAugmentation | None], channel: int | None = None) -> list[np.ndarray]:
    """Log-mels [n_mels, frames] (dB) of one clip (its ``channel``, or all mixed), one per
    augmentation (``None``: the clip as is).

    Augmentations act on the whole decoded clip; the result is then padded/cropped to ``duration`` s.
    """
    samples, rate = load_audio(path, mel.sample_rate, channel)
    out = []
    for aug in augmentations:
        x = samples if aug is None else aug.apply(samples, rate, clip_id)
        out.append(log_mel(fix_length(x, rate, duration), mel))
    return out


def _map_clips(fn, calls: list[tuple], workers: int):
    """``fn(*args)`` for each of ``calls``, in order, in ``workers`` processes (in this one if <= 1)."""
    if workers <= 1:
        yield from (fn(*args) for args in calls)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(fn, *zip(*calls), chunksize=4)


def _check_key(path: Path, key: dict, overwrite: bool) -> None:
    """Refuse a file at ``path`` that is not the mel cache of ``key`` (delete it if ``overwrite``)."""
    if not path.exists():
        return
    try:
        with open_h5(path, FORMAT, _HINT) as f:
            stored = attrs_dict(f).get("key")
    except StoreError:
        stored = None
    if stored == canonical_json(key):
        return
    if overwrite:
        path.unlink()
    elif stored is None:
        raise StoreError(f"{path}: exists but is not a readable deepfeat mel cache; "
                         "delete it, choose another --mel-cache or pass --overwrite")
    else:
        raise StoreError(f"{path}: mel cache of a different configuration "
                         f"({describe_difference(json.loads(stored), key)}); "
                         "pass --overwrite to recompute it, or choose another --mel-cache")


def _variants(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with open_h5(path, FORMAT, _HINT) as f:
        return set(f["mels"])


def _write(path: Path, key: dict, ids: list[str], new: dict[str, np.ndarray]) -> None:
    """Write the cache with the variants already in ``path`` plus ``new`` (name → mels), atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        stamp_format(out, FORMAT)
        out.attrs.update({"key": canonical_json(key), "deepfeat_version": __version__})
        write_strings(out, "ids", ids)
        group = out.create_group("mels")
        if path.exists():
            with h5py.File(path, "r") as old:
                for name in old["mels"]:
                    if name not in new:
                        old.copy(old["mels"][name], group, name)
        for name, mels in new.items():
            group.create_dataset(name, data=mels)


def ensure_mel_cache(path: str | Path, manifest: Manifest, mel: MelConfig, duration: float,
                     augmentations: list[WaveformAugmentation] = (), workers: int | None = None,
                     progress: bool = True, overwrite: bool = False) -> Path:
    """Make sure ``path`` holds the log-mels of every clip of ``manifest``, plain and per
    waveform augmentation (module docstring). Missing variants are computed (in ``workers``
    processes; default: one per available core) and added; a cache with another key is refused
    unless ``overwrite``."""
    from .threads import available_cores

    path = Path(path)
    key = mel_cache_key(manifest, mel, duration)
    _check_key(path, key, overwrite)
    present = _variants(path)
    todo = [aug for aug in [None, *augmentations] if (ORIGINAL if aug is None else aug.name) not in present]
    if not todo:
        return path
    names = [ORIGINAL if aug is None else aug.name for aug in todo]
    start = time.perf_counter()
    # Once here, before the workers fork: they inherit the imports (librosa.effects) and the filterbank.
    for aug in todo:
        silence = np.zeros(mel.sample_rate // 4, np.float32)
        log_mel(silence if aug is None else aug.apply(silence, mel.sample_rate, "warm-up"), mel)
    results = _map_clips(clip_mels, [(c.path, c.id, mel, duration, todo, c.channel) for c in manifest.clips],
                         available_cores() if workers is None else workers)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(manifest), unit="clip", desc=f"mels {'+'.join(names)}"[:60])
    per_clip = list(results)
    _write(path, key, manifest.ids(), {name: np.stack([clip[i] for clip in per_clip]) for i, name in enumerate(names)})
    log.info("mel cache %s: computed %s in %.1f s", path, ", ".join(names), time.perf_counter() - start)
    return path


def read_mels(path: str | Path, names: list[str]) -> np.ndarray:
    """Cached log-mels as float32 [len(names), N, n_mels, frames] (dB)."""
    with open_h5(path, FORMAT, _HINT) as f:
        missing = [n for n in names if n not in f["mels"]]
        if missing:
            raise StoreError(f"{path}: mel cache lacks {', '.join(missing)}; rerun `deepfeat crnn` to compute it")
        return np.stack([f["mels"][n][()] for n in names])
