"""The extract stage: manifest → front end (decode, resample, image; in worker processes or in this
one) → batched network → resumable HDF5 store. ``deepfeat extract`` is a thin shell over
:func:`extract_features`; the CPU plan (workers, torch threads) is :func:`deepfeat.threads.plan_threads`'s."""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from . import __version__
from .audio import decode_audio, low_rate_summary, native_rates, segments
from .datasets import Manifest
from .errors import AudioError, ConfigError, StoreError
from .extractors.base import Extractor
from .store import StoreWriter, store_status
from .threads import ThreadPlan, passive_wait, plan_threads, torch_threads

if TYPE_CHECKING:
    from .shards import Shard

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
    """Map-style dataset running decode → pad/crop → windows → ``extractor.frontend`` per clip
    of the manifest's clips ``start`` to ``stop`` (default: its end)."""

    def __init__(self, manifest: Manifest, extractor: Extractor, start: int = 0, stop: int | None = None):
        self.clips = manifest.clips
        self.extractor = extractor
        self.start = start
        self.stop = len(self.clips) if stop is None else stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> PreparedClip:
        index = self.start + i
        clip = self.clips[index]
        ex = self.extractor
        try:
            samples, rate, short = decode_audio(clip.path, ex.sample_rate, clip.channel)
            pieces, starts = segments(samples, rate, ex.duration, ex.segment)
            parts = [ex.frontend(piece) for piece in pieces]
            return PreparedClip(index, np.concatenate(parts), np.array([len(p) for p in parts]), starts, warning=short)
        except AudioError as e:
            return PreparedClip(index, None, None, None, str(e))
        except Exception as e:  # noqa: BLE001 - report any front-end failure against its file
            return PreparedClip(index, None, None, None, f"{clip.path}: {type(e).__name__}: {e}")


#: below this much free shared memory (``/dev/shm``; a container's default is 64 MB) workers pickle their batches
MIN_SHARED_MEMORY = 2**30


def _shared_memory_free() -> int:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _pack(items: list[PreparedClip], share: bool = True):
    """A worker's batch for the trip to the main process: the clips' inputs in one tensor, which
    torch passes through shared memory (one segment per batch) instead of pickling each array
    (``share`` False: as they are, pickled)."""
    good = [c for c in items if c.error is None]
    if not share or not good or len({c.inputs.dtype for c in good}) > 1:
        return items, None, []
    flat = torch.from_numpy(np.concatenate([c.inputs.ravel() for c in good]))
    shapes = [c.inputs.shape for c in good]
    for c in good:
        c.inputs = None
    return items, flat, shapes


def _unpack(packed) -> list[PreparedClip]:
    """The inverse of :func:`_pack`, in the main process (the inputs become views of the shared tensor)."""
    items, flat, shapes = packed
    if flat is not None:
        data, offset = flat.numpy(), 0
        for c, shape in zip((c for c in items if c.error is None), shapes):
            size = int(np.prod(shape))
            c.inputs, offset = data[offset:offset + size].reshape(shape), offset + size
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


def store_config(manifest: Manifest, extractor: Extractor, shard: Shard | None = None) -> dict:
    """The configuration a store is identified by (compared on resume); a shard's has its ``shard`` entry."""
    config = {"extractor": extractor.config(), "weights_sha256": extractor.weights_sha256,
              "dataset": {"name": manifest.name, "n_clips": len(manifest), "manifest_sha256": manifest.fingerprint()}}
    return {**config, "shard": shard.to_dict()} if shard is not None else config


def versions() -> dict:
    """Versions of the software the features depend on, read from the installed packages' metadata
    (importing scikit-learn or librosa only for a version string would cost a second)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    return {"deepfeat": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "librosa": installed("librosa"), "h5py": installed("h5py"), "numpy": np.__version__,
            "scikit-learn": installed("scikit-learn")}


CLIPS_PER_BATCH = 32  #: clips per committed batch of the store's journal


class _Laps:
    """Seconds since the previous call (the first: since construction)."""

    def __init__(self):
        self.last = time.perf_counter()

    def __call__(self) -> float:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds


def _open_writer(manifest: Manifest, extractor: Extractor, out: Path, overwrite: bool, clips_per_batch: int,
                 shard: Shard | None) -> StoreWriter:
    return StoreWriter(out, store_config(manifest, extractor, shard), manifest.label_names,
                       len(shard) if shard is not None else len(manifest), overwrite=overwrite,
                       batching={"clips_per_batch": clips_per_batch}, first_clip=shard.start if shard else 0, attrs={
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
    feats = extractor.embed_many([c.inputs for c in good])
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


def _inline_batches(dataset: ClipFrontend, clips_per_batch: int, threads: int):
    """Batches computed in this process, between the network's batches, by ``threads`` threads
    (decoding, resampling, FFTs and resizing release the GIL); in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="deepfeat-frontend") as pool:
        for first in range(0, len(dataset), clips_per_batch):
            yield list(pool.map(dataset.__getitem__, range(first, min(len(dataset), first + clips_per_batch))))


def _frontend_batches(manifest: Manifest, extractor: Extractor, start: int, stop: int, clips_per_batch: int,
                      plan: ThreadPlan):
    """An iterator over batches of :class:`PreparedClip` from clip ``start`` on: computed here
    (``plan.workers == 0``, on the plan's threads while the network waits) or by ``plan.workers``
    forked processes, which start at once (before the network loads) and inherit what
    :meth:`~deepfeat.extractors.base.Extractor.warm_frontend` imported."""
    dataset = ClipFrontend(manifest, extractor, start, stop)
    if plan.workers == 0:
        return _inline_batches(dataset, clips_per_batch, plan.threads)
    collate = partial(_pack, share=_shared_memory_free() >= MIN_SHARED_MEMORY)
    loader = DataLoader(dataset, batch_size=clips_per_batch, shuffle=False, num_workers=plan.workers,
                        collate_fn=collate, prefetch_factor=4, multiprocessing_context="fork")
    return map(_unpack, iter(loader))  # iter: the workers start now


def _load_network(extractor: Extractor, plan: ThreadPlan, progress: bool) -> float:
    """Load the network (saying so on stderr with ``progress``); returns the seconds it took."""
    if extractor.is_loaded:
        return 0.0
    if progress:
        print(f"loading {extractor.name} ({extractor.weights} weights, {extractor.device}; {plan.describe()})…",
              file=sys.stderr, flush=True)
    tic = time.perf_counter()
    extractor.load()
    return time.perf_counter() - tic


def extract_features(manifest: Manifest, extractor: Extractor, out: str | Path, *,
                     clips_per_batch: int = CLIPS_PER_BATCH, workers: int | None = None, threads: int | None = None,
                     on_error: str = "skip", overwrite: bool = False, progress: bool = True,
                     shard: Shard | None = None) -> Path:
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
    workers, threads : int, optional
        Front-end worker processes (0: in this process) and torch threads; defaults from
        :func:`deepfeat.threads.plan_threads` (workers + threads = the available cores). The
        features do not depend on ``workers``; on ``threads`` only by float32 rounding, for some
        networks (:mod:`deepfeat.threads`).
    on_error : {"skip", "fail"}
        ``skip`` records undecodable clips in the store's ``skipped`` group and the log and goes
        on (a clip cut short is kept, and listed in the store's ``warnings`` group and the log);
        ``fail`` stops at the first undecodable or cut-short clip with its error.
    overwrite : bool
        Replace a store (or journal) of another configuration.
    progress : bool
        A "loading" line and a progress bar on stderr.
    shard : Shard, optional
        Extract only the clips ``shard.start`` to ``shard.stop`` into ``out``, a shard store that
        :func:`deepfeat.merge.merge_stores` joins with the others (:mod:`deepfeat.shards` runs them).

    Returns
    -------
    Path
        The store.
    """
    out = Path(out)
    _check_run(out, clips_per_batch, workers)
    plan = plan_threads(workers, threads, device=extractor.device.type)
    extractor.resolve_weights()
    if not overwrite and store_status(out, store_config(manifest, extractor, shard)) == "complete":
        log.info("%s: already complete for this configuration; nothing to do", out)
        return out
    first, stop = (shard.start, shard.stop) if shard is not None else (0, len(manifest))
    with _open_writer(manifest, extractor, out, overwrite, clips_per_batch, shard) as writer, _run_log(out), \
            torch_threads(plan.threads):
        if shard is None or shard.index == 0:  # one warning per run, not per shard
            warn_low_rates(manifest, extractor)
        start = writer.clips_done
        if start > first:
            log.info("resuming %s at clip %d/%d", out, start, len(manifest))
        log.info("plan: %s; OpenMP threads wait %s", plan.describe(), "passively" if passive_wait() else "actively")
        extractor.warm_frontend()  # before the workers fork: they inherit its imports and tables
        batches = _frontend_batches(manifest, extractor, start, stop, clips_per_batch, plan)
        load_seconds = _load_network(extractor, plan, progress)
        from tqdm import tqdm

        lap, labels = _Laps(), manifest.label_indices()
        with tqdm(total=stop - first, initial=start - first, unit="clip", desc=f"extract {extractor.name}",
                  disable=not progress) as bar:
            for batch in batches:
                _commit_batch(writer, batch, extractor, manifest, labels, on_error, lap)
                bar.update(len(batch))
        total = writer.seconds()
        path = writer.finish({"extract_seconds": total, "load_seconds": load_seconds,
                              "clips_per_second": (stop - first) / total if total > 0 else 0.0,
                              "device": str(extractor.device), "workers": plan.workers, "threads": plan.threads},
                             allow_empty=shard is not None)
        log.info("wrote %s (%d clips, %.1f s)", path, stop - first, total)
    return path


__all__ = ["extract_features", "make_extractor", "store_config", "ClipFrontend"]
