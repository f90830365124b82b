"""The extract stage: manifest → worker processes (decode, resample, front end) → batched network
→ resumable HDF5 store. ``deepfeat extract`` is a thin shell over :func:`extract_features`."""
from __future__ import annotations

import json
import logging
import platform
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from . import __version__
from .audio import TruncatedAudioWarning, load_audio, low_rate_summary, native_rates, segments
from .datasets import Manifest
from .errors import AudioError, ConfigError, StoreError
from .extractors.base import Extractor
from .store import StoreWriter, store_status

log = logging.getLogger("deepfeat.extract")


@dataclass
class PreparedClip:
    """A clip after the front end: model inputs of each segment, or the reason it failed."""

    index: int
    inputs: np.ndarray | None  #: [sum(counts), ...]
    counts: np.ndarray | None  #: model inputs per segment
    starts: np.ndarray | None  #: segment start times, seconds
    error: str | None = None
    warning: str | None = None  #: decoded, but with a problem (e.g. cut short)


class ClipFrontend(Dataset):
    """Map-style dataset running decode → pad/crop → windows → ``extractor.frontend`` per clip."""

    def __init__(self, manifest: Manifest, extractor: Extractor, start: int = 0):
        self.clips = manifest.clips
        self.extractor = extractor
        self.start = start

    def __len__(self) -> int:
        return len(self.clips) - self.start

    def __getitem__(self, i: int) -> PreparedClip:
        index = self.start + i
        clip = self.clips[index]
        ex = self.extractor
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", TruncatedAudioWarning)
                samples, rate = load_audio(clip.path, ex.sample_rate, clip.channel)
            short = next((str(w.message) for w in caught if issubclass(w.category, TruncatedAudioWarning)), None)
            pieces, starts = segments(samples, rate, ex.duration, ex.segment)
            parts = [ex.frontend(piece) for piece in pieces]
            return PreparedClip(index, np.concatenate(parts), np.array([len(p) for p in parts]), starts, warning=short)
        except AudioError as e:
            return PreparedClip(index, None, None, None, str(e))
        except Exception as e:  # noqa: BLE001 - report any front-end failure against its file
            return PreparedClip(index, None, None, None, f"{clip.path}: {type(e).__name__}: {e}")


def _collate(items):
    return items


def make_extractor(network: str, *, weights: str | None = None, plot=None, layer: str | None = None,
                   device: str | None = None, precision: str = "auto", seed: int = 0,
                   size: tuple[int, int] | None = None) -> Extractor:
    """The extractor ``network`` as ``deepfeat extract`` builds it.

    Parameters
    ----------
    network : str
        A registered extractor (``deepfeat extract --list``).
    weights : str, optional
        ``imagenet``, ``none``, a checkpoint path, or the network's own default (None).
    plot : PlotConfig, optional
        The front end of image networks (default ``PlotConfig()``); audio models take only its
        ``duration`` and ``segment`` (see the class's ``plot_settings``), and any other
        setting that differs from the default raises :class:`ConfigError`: ignoring it would
        store features that look made with settings that were never applied.
    layer, device, precision, seed
        As the ``extract`` options of the same names.
    size : (int, int), optional
        Image networks: the image (height, width) in pixels instead of the network's own input
        size (e.g. the size a backbone was pre-trained at).
    """
    from .config import PlotConfig
    from .extractors import create_extractor, get_extractor_class

    plot = plot or PlotConfig()
    cls = get_extractor_class(network)
    ignored = cls.ignored_settings(plot)
    if ignored:
        raise ConfigError(f"{network} is an {cls.kind} model with its own front end ({cls.sample_rate} Hz): "
                          f"{', '.join(ignored)} would change nothing in its features; drop "
                          f"{'them' if len(ignored) > 1 else 'it'}")
    params = dict(weights=weights, layer=layer, device=device, precision=precision, seed=seed)
    if cls.kind == "image":
        params.update(plot=plot, **({"input_size": tuple(size)} if size else {}))
    elif size:
        raise ConfigError(f"--size sets the image size of image networks; {network} is an audio model")
    else:
        params.update(duration=plot.duration, segment=plot.segment)
    return create_extractor(network, **params)


def store_config(manifest: Manifest, extractor: Extractor) -> dict:
    """The configuration a store is identified by (compared on resume)."""
    return {"extractor": extractor.config(), "weights_sha256": extractor.weights_sha256,
            "dataset": {"name": manifest.name, "n_clips": len(manifest), "manifest_sha256": manifest.fingerprint()}}


def versions() -> dict:
    import h5py
    import librosa
    import sklearn

    return {"deepfeat": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "librosa": librosa.__version__, "h5py": h5py.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__}


def default_workers() -> int:
    import os

    return max(1, min(4, (os.cpu_count() or 2)))


CLIPS_PER_BATCH = 32  #: clips per committed batch of the store's journal


class _Laps:
    """Seconds since the previous call (the first: since construction)."""

    def __init__(self):
        self.last = time.perf_counter()

    def __call__(self) -> float:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds


def _open_writer(manifest: Manifest, extractor: Extractor, out: Path, overwrite: bool,
                 clips_per_batch: int) -> StoreWriter:
    return StoreWriter(out, store_config(manifest, extractor), manifest.label_names, len(manifest),
                       overwrite=overwrite, batching={"clips_per_batch": clips_per_batch}, attrs={
                           "network": extractor.name, "layer": str(extractor.layer), "weights": extractor.weights,
                           "default_layer": str(type(extractor).default_layer(extractor.name) or ""),
                           "weights_sha256": extractor.weights_sha256 or "", "dataset": manifest.name,
                           "manifest_sha256": manifest.fingerprint(), "versions": json.dumps(versions()),
                           **dataset_attrs(manifest)})


def dataset_attrs(manifest: Manifest) -> dict:
    """What a store records of its dataset's protocol: layout, primary metric, evaluation folds
    (JSON list), and whether its rows are single channels (``each``) or mixes (``mix``)."""
    return {"layout": manifest.layout, "primary_metric": manifest.primary_metric,
            "evaluation_folds": json.dumps(list(manifest.evaluation_folds)),
            "channels": "mix" if manifest.channels() is None else "each"}


@contextmanager
def _run_log(out: Path):
    """Log this run to ``OUT.h5.log`` (every run appends: commits, skips, resumes)."""
    handler = logging.FileHandler(str(out) + ".log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def _rows(batch: list[PreparedClip], extractor: Extractor, manifest: Manifest, labels: np.ndarray) -> dict:
    """Feature rows of a batch's decoded clips: one per segment, the mean over its model inputs."""
    good = [c for c in batch if c.error is None]
    rows = {"features": [], "ids": [], "labels": [], "folds": [], "window_starts": [], "channels": []}
    if not good:
        return rows
    clips = manifest.clips
    feats = extractor.embed(np.concatenate([c.inputs for c in good]))
    offset = 0
    for c in good:
        for count, start in zip(c.counts, c.starts):
            rows["features"].append(feats[offset:offset + count].mean(axis=0))
            offset += count
            rows["ids"].append(clips[c.index].id)
            rows["labels"].append(labels[c.index])
            rows["folds"].append(clips[c.index].fold)
            rows["window_starts"].append(start)
            rows["channels"].append(clips[c.index].channel)
    return rows


def warn_low_rates(manifest: Manifest, extractor: Extractor) -> str | None:
    """Log one warning (and return it) when clips of ``manifest`` are sampled too low for the
    frequencies ``extractor`` analyses (:attr:`~deepfeat.extractors.base.Extractor.max_frequency`):
    they are upsampled and their features see an empty band. Reads only the files' headers."""
    top = extractor.max_frequency
    summary = low_rate_summary(native_rates(dict.fromkeys(c.path for c in manifest.clips)), top)
    if summary is None:
        return None
    message = (f"{manifest.name}: {summary}: they hold nothing above their Nyquist frequency, but {extractor.name} "
               f"analyses up to {top:g} Hz" + ("; --fmax auto fits the mel bands to the data"
                                               if extractor.kind == "image" else ""))
    log.warning(message)
    return message


def _commit_batch(writer: StoreWriter, batch: list[PreparedClip], extractor: Extractor, manifest: Manifest,
                  labels: np.ndarray, on_error: str, lap: _Laps) -> None:
    skipped = [(manifest.clips[c.index].id, c.error) for c in batch if c.error is not None]
    warned = [(manifest.clips[c.index].id, c.warning) for c in batch if c.error is None and c.warning]
    if on_error == "fail" and (skipped or warned):
        raise AudioError((skipped or warned)[0][1])
    for clip_id, reason in skipped:
        log.warning("skipped %s: %s", clip_id, reason)
    for clip_id, reason in warned:
        log.warning("kept %s with a warning: %s", clip_id, reason)
    rows = _rows(batch, extractor, manifest, labels)
    done = batch[-1].index + 1
    features = np.stack(rows["features"]) if rows["features"] else np.zeros((0, 0), np.float32)
    writer.commit(features, rows["ids"], rows["labels"], rows["folds"],
                  rows["window_starts"] if extractor.segment else None, clips_start=batch[0].index, clips_done=done,
                  skipped=skipped, warnings=warned, seconds=lap(),
                  channels=rows["channels"] if manifest.channels() is not None else None)
    log.info("committed %d/%d clips", done, len(manifest))


def _check_run(out: Path, clips_per_batch: int, workers: int | None) -> None:
    """Fail before any work on a batch size below 1, negative workers, or a store folder that
    cannot be made or written."""
    import os

    if clips_per_batch < 1 or (workers is not None and workers < 0):
        raise ConfigError(f"clips per batch must be at least 1 (got {clips_per_batch}) and workers at least 0 "
                          f"(got {workers})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{out}: cannot create its folder ({e.strerror}); choose another -o") from None
    if not os.access(out.parent, os.W_OK):
        raise StoreError(f"{out}: its folder is not writable; choose another -o or fix its permissions")


def extract_features(manifest: Manifest, extractor: Extractor, out: str | Path, *,
                     clips_per_batch: int = CLIPS_PER_BATCH, workers: int | None = None, on_error: str = "skip",
                     overwrite: bool = False, progress: bool = True) -> Path:
    """Extract features of every clip of ``manifest`` into the HDF5 store ``out``; resumes an
    interrupted run.

    Parameters
    ----------
    manifest : Manifest
    extractor : Extractor
        Loaded here if it is not yet.
    out : str or Path
        The store; its journal is ``OUT.h5.partial/``, its log ``OUT.h5.log``.
    clips_per_batch : int
        Clips per committed batch.
    workers : int, optional
        Front-end worker processes (default :func:`default_workers`; 0: in this process).
    on_error : {"skip", "fail"}
        ``skip`` records undecodable clips in the store's ``skipped`` group and the log and goes
        on (a clip cut short is kept, and listed in the store's ``warnings`` group and the log);
        ``fail`` stops at the first undecodable or cut-short clip with its error.
    overwrite : bool
        Replace a store (or journal) of another configuration.
    progress : bool
        A progress bar.

    Returns
    -------
    Path
        The store.
    """
    out = Path(out)
    _check_run(out, clips_per_batch, workers)
    if not extractor.is_loaded:
        extractor.load()
    if not overwrite and store_status(out, store_config(manifest, extractor)) == "complete":
        log.info("%s: already complete for this configuration; nothing to do", out)
        return out
    with _open_writer(manifest, extractor, out, overwrite, clips_per_batch) as writer, _run_log(out):
        warn_low_rates(manifest, extractor)
        start = writer.clips_done
        if start:
            log.info("resuming %s at clip %d/%d", out, start, len(manifest))
        workers = default_workers() if workers is None else workers
        loader = DataLoader(ClipFrontend(manifest, extractor, start), batch_size=clips_per_batch, shuffle=False,
                            num_workers=workers, collate_fn=_collate, prefetch_factor=4 if workers else None,
                            multiprocessing_context="fork" if workers else None)
        from tqdm import tqdm

        lap, labels = _Laps(), manifest.label_indices()
        with tqdm(total=len(manifest), initial=start, unit="clip", desc=f"extract {extractor.name}",
                  disable=not progress) as bar:
            for batch in loader:
                _commit_batch(writer, batch, extractor, manifest, labels, on_error, lap)
                bar.update(len(batch))
        total = writer.seconds()
        path = writer.finish({"extract_seconds": total,
                              "clips_per_second": (len(manifest) / total) if total > 0 else 0.0,
                              "device": str(extractor.device)})
        log.info("wrote %s (%d clips, %.1f s)", path, len(manifest), total)
    return path


__all__ = ["extract_features", "make_extractor", "store_config", "ClipFrontend"]
