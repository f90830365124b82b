"""The HDF5 feature store: one file per feature set, self-describing, written resumably.

Layout (``format = "deepfeat.features"``, ``format_version = 1``):

=====================  ==================  ==============================================
``features``           float32 [N, D]      one row per clip, or per window if windowed
``ids``                str [N]             clip id of each row
``labels``             int64 [N]           index into ``label_names`` (-1: unlabelled)
``folds``              int64 [N]           fold of each row (0: none assigned)
``window_starts``      float64 [N]         window start in seconds (windowed stores only)
``channels``           int64 [N]           channel of each row (stores of ``--channels each`` only)
``label_names``        str [C]
``skipped/ids``        str [K]             clips that could not be processed ...
``skipped/reasons``    str [K]             ... and why
=====================  ==================  ==============================================

Attributes: ``config`` (canonical JSON of the full extraction configuration), ``network``,
``layer``, ``weights``, ``weights_sha256``, ``dataset``, ``manifest_sha256``, ``versions``
(JSON), ``n_clips``, ``complete``, timings (``extract_seconds``) and the dataset's protocol:
``layout``, ``primary_metric``, ``evaluation_folds`` (JSON list), ``channels`` (mix or each).

Writing commits whole batches to a journal folder ``OUT.h5.partial/`` (one file per batch,
each renamed into place once on disk, with the count of clips it completes); a killed run
reads the journal and continues after the last committed batch. Only a finished store is
written and renamed to ``OUT.h5``.

A sharded run (:mod:`deepfeat.shards`) writes one such store per contiguous range of clips, whose
``config`` holds a ``shard`` entry (index, count, start, stop); :func:`deepfeat.merge.merge_stores`
joins them, in order, into the store a single run would have written.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .config import canonical_json
from .errors import StoreError
from .io import STR, atomic_path, attrs_dict, open_h5, read_strings, stamp_format, write_bytes, write_strings

FORMAT = "deepfeat.features"
FORMAT_VERSION = 1
_HINT = "make one with `deepfeat extract`"


@dataclass
class FeatureSet:
    """A feature store read into memory."""

    path: Path
    features: np.ndarray  #: float32 [N, D]
    ids: np.ndarray  #: str [N]
    labels: np.ndarray  #: int64 [N]
    folds: np.ndarray  #: int64 [N]
    label_names: list[str]
    window_starts: np.ndarray | None
    config: dict
    attrs: dict
    skipped: list[tuple[str, str]]
    channels: np.ndarray | None = None  #: int64 [N], the channel of each row (``--channels each``)

    @property
    def windowed(self) -> bool:
        return self.window_starts is not None

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".h5")

    @property
    def feature_names(self) -> list[str]:
        """Column names of the features: ``<network>_<i>`` (``f_<i>`` when the network is unknown)."""
        prefix = str(self.attrs.get("network") or "f")
        return [f"{prefix}_{i}" for i in range(self.features.shape[1])]

    def to_numpy(self) -> np.ndarray:
        """The features, float32 [N, D] (row ``i`` belongs to ``ids[i]``)."""
        return self.features

    def to_pandas(self):
        """The store as a pandas DataFrame, one row per store row.

        Index: a MultiIndex ``(file, start, end)`` as opensmile and audformat use: the clip id,
        and the start and end of the row's audio as ``timedelta`` (a window's bounds for
        windowed stores; for whole clips start 0 and end ``NaT``, "to the end of the file",
        unless the store was made with ``--duration``). Columns: ``label`` (categorical over
        ``label_names``; missing for unlabelled rows), ``fold`` (int), then one float32 column
        per feature (:attr:`feature_names`).
        """
        import pandas as pd

        starts = self.window_starts if self.windowed else np.zeros(len(self.ids))
        start = pd.to_timedelta(np.asarray(starts, dtype=np.float64), unit="s")
        segment = (self.config.get("extractor") or {}).get("segment")
        length = segment[0] if self.windowed and segment else (self.config.get("extractor") or {}).get("duration")
        end = start + pd.to_timedelta(length, unit="s") if length else pd.to_timedelta([pd.NaT] * len(start))
        index = pd.MultiIndex.from_arrays([pd.Index(self.ids.astype(str), dtype=object), start, end],
                                          names=["file", "start", "end"])
        labels = pd.Categorical.from_codes(np.where(self.labels >= 0, self.labels, -1), categories=self.label_names)
        frame = pd.DataFrame(self.features, index=index, columns=self.feature_names)
        frame.insert(0, "fold", self.folds.astype(np.int64))
        frame.insert(0, "label", labels)
        return frame


def open_store(path: str | Path) -> h5py.File:
    """Open a complete feature store for reading (an ``h5py.File``; close it, or use ``with``).

    Raises :class:`StoreError` naming the file when it is missing (saying so when an unfinished
    ``.partial`` journal exists), not HDF5, not a feature store, or incomplete."""
    path = Path(path)
    partial = Path(str(path) + ".partial")
    unfinished = f" (an unfinished {partial.name} exists: rerun the same extract command to finish it)" \
        if partial.exists() else ""
    f = open_h5(path, FORMAT, _HINT, missing=f"no such feature store{unfinished}; {_HINT}")
    if not f.attrs.get("complete", False):
        f.close()
        raise StoreError(f"{path}: store is incomplete; rerun the extract command that made it")
    return f


def read_store(path: str | Path, lazy: bool = False) -> FeatureSet:
    """Read a complete feature store; raises :class:`StoreError` with the file name otherwise.

    ``lazy``: ``features`` is a :class:`~deepfeat.rows.StoreRows` view that reads rows from the
    file in blocks when asked (for stores larger than memory), not an array."""
    path = Path(path)
    with open_store(path) as f:
        if lazy:
            from .rows import StoreRows

            features = StoreRows(path)
        else:
            features = f["features"][()]
        attrs = attrs_dict(f)
        skipped = list(zip(read_strings(f["skipped/ids"]), read_strings(f["skipped/reasons"]))) \
            if "skipped" in f else []
        return FeatureSet(
            path=path, features=features, ids=np.array(read_strings(f["ids"]), dtype=object),
            labels=f["labels"][()], folds=f["folds"][()], label_names=read_strings(f["label_names"]),
            window_starts=f["window_starts"][()] if "window_starts" in f else None,
            config=json.loads(attrs.get("config", "{}")), attrs=attrs, skipped=skipped,
            channels=f["channels"][()] if "channels" in f else None,
        )


def summarise_store(path: str | Path) -> dict:
    """What ``deepfeat inspect`` shows of a feature store, as a plain (JSON-able) dict: shape,
    network, weights, classes and folds (counts), skipped clips, feature statistics, timings, config."""
    fs = read_store(path)
    per_class = {name: int((fs.labels == i).sum()) for i, name in enumerate(fs.label_names)}
    per_fold = {int(k): int(v) for k, v in zip(*np.unique(fs.folds, return_counts=True))}
    return {
        "file": str(path), "rows": int(fs.features.shape[0]), "dim": int(fs.features.shape[1]),
        "clips": int(len(set(fs.ids))), "windowed": fs.windowed, "network": fs.attrs.get("network"),
        "channels": None if fs.channels is None else sorted(int(c) for c in np.unique(fs.channels)),
        "layer": fs.attrs.get("layer"), "weights": fs.attrs.get("weights"),
        "weights_sha256": fs.attrs.get("weights_sha256") or None, "dataset": fs.attrs.get("dataset"),
        "classes": per_class, "folds": per_fold, "skipped": [{"id": i, "reason": r} for i, r in fs.skipped],
        "finite": bool(np.isfinite(fs.features).all()),
        "feature_mean": float(fs.features.mean()), "feature_std": float(fs.features.std()),
        "extract_seconds": fs.attrs.get("extract_seconds"), "device": fs.attrs.get("device"),
        "config": fs.config,
    }


def summary_lines(s: dict) -> list[str]:
    """:func:`summarise_store`'s dict as the lines ``deepfeat inspect`` prints."""
    lines = [f"{s['file']}: {s['rows']} rows x {s['dim']} features ({s['clips']} clips"
             f"{', windowed' if s['windowed'] else ''}"
             f"{', channels ' + ','.join(map(str, s['channels'])) if s.get('channels') else ''}), "
             f"all finite: {s['finite']}",
             f"  network {s['network']}  layer {s['layer']}  weights {s['weights']}"
             + (f" (sha256 {s['weights_sha256'][:12]}…)" if s["weights_sha256"] else "")]
    plot = s["config"].get("extractor", {}).get("plot")
    if plot:
        mel = plot["mel"]
        lines.append(f"  plot: {plot['colormap']} {plot['size'][0]}x{plot['size'][1]} px, {mel['n_mels']} mels, "
                     f"window {mel['window']:.4g} s, hop {mel['hop']:.4g} s, clip {mel['clip_db']:g} dB, "
                     f"{mel['sample_rate']} Hz, renderer {plot['renderer']}")
    lines.append(f"  dataset {s['dataset']}: {len(s['classes'])} classes "
                 + ", ".join(f"{k} {v}" for k, v in s["classes"].items()))
    lines.append("  folds: " + ", ".join(f"{k}: {v}" for k, v in s["folds"].items()))
    if s["extract_seconds"]:
        lines.append(f"  extracted in {s['extract_seconds']:.1f} s on {s['device']} "
                     f"({s['clips'] / s['extract_seconds']:.1f} clips/s)")
    lines.append(f"  skipped: {len(s['skipped'])}")
    lines += [f"    {k['id']}: {k['reason']}" for k in s["skipped"]]
    return lines


def _stored_config(candidate: Path) -> str | None:
    if candidate.is_dir():
        try:
            return json.loads((candidate / _HEADER).read_text())["config"]
        except (OSError, ValueError, KeyError):
            raise StoreError(f"{candidate}: unfinished run without a readable {_HEADER}; delete the folder "
                             "or pass --overwrite") from None
    try:
        with h5py.File(candidate, "r") as f:
            return f.attrs.get("config")
    except OSError:
        raise StoreError(f"{candidate}: exists but is not a readable HDF5 file; delete it or pass --overwrite") from None


def store_status(path: str | Path, config: dict) -> str:
    """``"complete"`` if ``path`` is a finished store of ``config``, ``"partial"`` if an unfinished
    run of ``config`` exists, ``"absent"`` if neither; raises if either holds another configuration."""
    path = Path(path)
    for candidate, state in ((path, "complete"), (Path(str(path) + ".partial"), "partial")):
        if candidate.exists():
            stored = _stored_config(candidate)
            if stored != canonical_json(config):
                raise StoreError(f"{candidate}: was made with a different configuration "
                                 f"({describe_difference(json.loads(stored or '{}'), config)}); "
                                 "pass --overwrite to replace it, or choose another -o")
            return state
    return "absent"


def describe_difference(old: dict, new: dict, prefix: str = "") -> str:
    """First differing key between two nested configurations, as ``key: old -> new``."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                return describe_difference(a, b, f"{prefix}{key}.")
        elif json.loads(canonical_json(a)) != json.loads(canonical_json(b)):
            return f"{prefix}{key}: {a!r} -> {b!r}"
    return "no difference"


class StoreWriter:
    """Commits batches of rows to a journal folder ``OUT.h5.partial/``; :meth:`finish` writes ``OUT.h5``.

    Each commit is one ``.npz`` file written to a temporary name and renamed into place, so a run
    killed at any instant (Ctrl-C, ``kill -9``, power loss) keeps every committed batch and never
    leaves a half-written file behind; the HDF5 store itself is written once, at the end, streaming
    the batches in order (memory does not grow with the number of clips).
    """

    def __init__(self, path: str | Path, config: dict, label_names: list[str], n_clips: int,
                 attrs: dict | None = None, overwrite: bool = False):
        self.path = Path(path)
        self.partial = Path(str(self.path) + ".partial")
        self.config_json = canonical_json(config)
        if overwrite:
            if self.path.exists():
                self.path.unlink()
            shutil.rmtree(self.partial, ignore_errors=True)
        state = store_status(self.path, config)
        if state == "complete":
            raise StoreError(f"{self.path}: already complete for this configuration")
        if state == "absent":
            self.partial.mkdir(parents=True, exist_ok=True)
            header = {"config": self.config_json, "label_names": list(label_names), "n_clips": n_clips,
                      "attrs": attrs or {}}
            write_bytes(self.partial / _HEADER, json.dumps(header).encode())
        self.header = json.loads((self.partial / _HEADER).read_text())
        self.batches = sorted(self.partial.glob("batch-*.npz"))
        for stale in self.partial.glob("*.tmp"):
            stale.unlink()

    @property
    def clips_done(self) -> int:
        """Clips (in manifest order) fully processed and committed: where a resumed run starts."""
        return _batch_clips_done(self.batches[-1]) if self.batches else 0

    def commit(self, features: np.ndarray, ids: list[str], labels, folds, window_starts=None,
               clips_done: int = 0, skipped: list[tuple[str, str]] = (), seconds: float = 0.0,
               channels=None) -> None:
        """Durably record a batch of rows and that the first ``clips_done`` manifest clips are finished
        (``channels``: each row's channel, for stores of single-channel rows)."""
        features = np.asarray(features, dtype=np.float32)
        if features.size and not np.all(np.isfinite(features)):
            raise StoreError(f"{self.partial}: non-finite features produced; this is a bug, please report it")
        target = self.partial / f"batch-{len(self.batches):07d}.npz"
        with atomic_path(target, fsync=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=features, ids=np.array(ids, dtype=str), labels=np.asarray(labels, dtype=np.int64),
                     folds=np.asarray(folds, dtype=np.int64),
                     window_starts=np.asarray(window_starts if window_starts is not None else [], dtype=np.float64),
                     windowed=window_starts is not None, clips_done=clips_done, seconds=seconds,
                     channels=np.asarray(channels if channels is not None else [], dtype=np.int64),
                     per_channel=channels is not None,
                     skipped_ids=np.array([s[0] for s in skipped], dtype=str),
                     skipped_reasons=np.array([s[1] for s in skipped], dtype=str))
        self.batches.append(target)

    def seconds(self) -> float:
        """Processing time summed over every committed batch, across resumed sessions."""
        total = 0.0
        for b in self.batches:
            with np.load(b) as z:
                total += float(z["seconds"])
        return total

    def finish(self, attrs: dict | None = None, allow_empty: bool = False) -> Path:
        """Write the HDF5 store from the committed batches and atomically publish it.

        ``allow_empty``: publish a store without feature rows (a shard whose clips were all
        skipped) instead of raising."""
        if not allow_empty and not any(_batch_rows(b) for b in self.batches):
            raise StoreError(f"{self.path}: no clip could be processed (see the skipped list in {self.partial} and "
                             "the log); check the audio files")
        write_store(self.path, self.config_json, self.header["n_clips"], self.header["label_names"],
                     {**self.header["attrs"], **(attrs or {})}, _journal_blocks(self.batches))
        shutil.rmtree(self.partial, ignore_errors=True)
        return self.path

    def close(self) -> None:
        """Nothing to release: every commit is already on disk."""


_HEADER = "header.json"
_ROW_FIELDS = ("features", "ids", "labels", "folds", "window_starts", "channels")


def committed_clips(path: str | Path) -> int:
    """Clips (in manifest order) that the journal of the store ``path`` has committed: 0 when it
    has no journal or no batch yet. Safe while a writer commits or finishes (for progress)."""
    batches = sorted(Path(str(path) + ".partial").glob("batch-*.npz"))
    try:
        return _batch_clips_done(batches[-1]) if batches else 0
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):  # finished and removed meanwhile
        return 0


def _batch_clips_done(batch: Path) -> int:
    with np.load(batch) as z:
        return int(z["clips_done"])


def _batch_rows(batch: Path) -> int:
    with np.load(batch) as z:
        return len(z["features"])


def _journal_blocks(batches: list[Path]) -> Iterator[dict]:
    """The journal's batches as row blocks for :func:`write_store`, one batch in memory at a time."""
    for b in batches:
        with np.load(b) as z:
            per_channel = "per_channel" in z.files and bool(z["per_channel"])
            yield {"features": z["features"], "ids": z["ids"].astype(object), "labels": z["labels"],
                   "folds": z["folds"], "window_starts": z["window_starts"] if z["windowed"] else None,
                   "channels": z["channels"] if per_channel else None,
                   "skipped_ids": z["skipped_ids"].astype(object), "skipped_reasons": z["skipped_reasons"].astype(object)}


def write_store(path: Path, config_json: str, n_clips: int, label_names: list[str], attrs: dict,
                blocks: Iterable[dict]) -> Path:
    """Write a complete store at ``path``, atomically, from row ``blocks`` (one in memory at a time).

    A block is a dict of ``features`` [n, D], ``ids``, ``labels``, ``folds``, ``window_starts`` [n]
    (None unless windowed) and ``channels`` [n] (None unless one row per channel), and optionally
    ``skipped_ids``/``skipped_reasons`` [k]."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        stamp_format(f, FORMAT, FORMAT_VERSION)
        f.attrs.update({"config": config_json, "n_clips": n_clips, **attrs})
        write_strings(f, "label_names", label_names)
        for name in ("ids", "reasons"):
            f.create_dataset(f"skipped/{name}", shape=(0,), maxshape=(None,), dtype=STR)
        for block in blocks:
            if len(block["features"]):
                if "features" not in f:
                    _create_rows(f, block["features"].shape[1], block["window_starts"] is not None,
                                 block.get("channels") is not None)
                for name in _ROW_FIELDS:
                    if name in f:
                        _append(f[name], block[name])
            _append(f["skipped/ids"], block.get("skipped_ids", ()))
            _append(f["skipped/reasons"], block.get("skipped_reasons", ()))
        f.attrs["complete"] = True
    return Path(path)


def _create_rows(f: h5py.File, dim: int, windowed: bool, per_channel: bool = False) -> None:
    chunk = max(1, min(256, (1 << 20) // (4 * dim)))
    f.create_dataset("features", shape=(0, dim), maxshape=(None, dim), dtype=np.float32,
                     chunks=(chunk, dim), compression="gzip", compression_opts=4, shuffle=True)
    f.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=STR, chunks=(1024,))
    optional = ((("window_starts", np.float64),) if windowed else ()) + ((("channels", np.int64),) if per_channel else ())
    for name, dtype in (("labels", np.int64), ("folds", np.int64)) + optional:
        f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))


def _append(ds, values) -> None:
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    if len(values):
        ds[n:] = values
