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
``warnings/ids``       str [W]             clips stored with a warning (e.g. truncated) ...
``warnings/reasons``   str [W]             ... and what it was
=====================  ==================  ==============================================

A clip's rows are contiguous and differ in window start or channel (:func:`check_rows`).

Attributes: ``config`` (canonical JSON of the full extraction configuration), ``network``,
``layer``, ``weights``, ``weights_sha256``, ``dataset``, ``manifest_sha256``, ``versions``
(JSON), ``n_clips``, ``complete``, timings (``extract_seconds``) and the dataset's protocol:
``layout``, ``primary_metric``, ``evaluation_folds`` (JSON list), ``channels`` (mix or each).

Writing (:mod:`deepfeat.journal`, :class:`StoreWriter`) commits whole batches to a journal folder ``OUT.h5.partial/`` (one file per batch,
each renamed into place once on disk, with the range of clips it completes); a killed run
reads the journal and continues after the last committed batch. Only a finished store is
written and renamed to ``OUT.h5``. One process at a time writes a store: it holds an exclusive
lock on ``OUT.h5.partial/lock``, and the journal records what its batches share (its version,
the batching), so a resume never mixes incompatible batches.

A sharded run (:mod:`deepfeat.shards`) writes one such store per contiguous range of clips, whose
``config`` holds a ``shard`` entry (index, count, start, stop); :func:`deepfeat.merge.merge_stores`
joins them, in order, into the store a single run would have written.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .config import canonical_json
from .errors import StoreError
from .io import (
    STR, atomic_path, attrs_dict, open_h5, read_strings, stamp_format, write_strings,
)

FORMAT = "deepfeat.features"
FORMAT_VERSION = 1
_HINT = "make one with `deepfeat extract`"
#: Datasets that tell the rows of one clip apart (besides its id).
ROW_KEYS = ("window_starts", "channels")


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
    warnings: list[tuple[str, str]] = field(default_factory=list)  #: (clip id, what was wrong), rows kept

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
    """Read a complete feature store; raises :class:`StoreError` with the file name otherwise
    (also when a clip's rows repeat or are not contiguous: see :func:`check_rows`).

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
        ids = np.array(read_strings(f["ids"]), dtype=object)
        check_rows(path, ids, {name: f[name][()] for name in ROW_KEYS if name in f})
        return FeatureSet(
            path=path, features=features, ids=ids,
            labels=f["labels"][()], folds=f["folds"][()], label_names=read_strings(f["label_names"]),
            window_starts=f["window_starts"][()] if "window_starts" in f else None,
            config=json.loads(attrs.get("config", "{}")), attrs=attrs, skipped=_pairs(f, "skipped"),
            channels=f["channels"][()] if "channels" in f else None, warnings=_pairs(f, "warnings"),
        )


def _pairs(f: h5py.File, group: str) -> list[tuple[str, str]]:
    """``(id, reason)`` pairs of the group ``skipped`` or ``warnings`` (empty when absent)."""
    if group not in f:
        return []
    return list(zip(read_strings(f[f"{group}/ids"]), read_strings(f[f"{group}/reasons"])))


def check_rows(path: str | Path, ids, keys: dict | None = None) -> None:
    """Raise :class:`StoreError` unless each clip's rows are contiguous and no two rows of a clip
    share their ``keys`` (name → per-row array [N] telling a clip's rows apart, e.g.
    ``window_starts`` in seconds; without keys a clip has one row).

    Windows of one clip legitimately share its id; a clip whose rows repeat or are split apart was
    written twice (two writers at once, or a malformed file)."""
    ids = np.asarray(ids).astype(str)
    if ids.size == 0:
        return
    fix = "it was written twice (two processes at once?) or is malformed: re-extract it with --overwrite"
    starts = np.r_[True, ids[1:] != ids[:-1]]
    names, runs = np.unique(ids[starts], return_counts=True)
    if (runs > 1).any():
        raise StoreError(f"{path}: the rows of clip {str(names[runs > 1][0])!r} are not contiguous; {fix}")
    keys = {name: np.asarray(k) for name, k in (keys or {}).items()}
    clip = np.cumsum(starts)
    order = np.lexsort((*reversed(list(keys.values())), clip))
    same = clip[order][1:] == clip[order][:-1]
    for k in keys.values():
        same &= k[order][1:] == k[order][:-1]
    if same.any():
        row = order[1:][same][0]
        where = "".join(f" with {name} = {k[row]}" for name, k in keys.items())
        raise StoreError(f"{path}: clip {str(ids[row])!r} has more than one row{where}; {fix}")


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
        if candidate.is_dir() and not (candidate / _HEADER).exists():
            continue  # a journal folder holding only its lock: nothing committed yet
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


_HEADER = "header.json"  #: the journal's header file
_PAIR_GROUPS = (("skipped", "skipped"), ("warnings", "warning"))  #: store group, journal prefix of (id, reason) pairs
_ROW_FIELDS = ("features", "ids", "labels", "folds", "window_starts", "channels")


def write_store(path: Path, config_json: str, n_clips: int, label_names: list[str], attrs: dict,
                blocks: Iterable[dict]) -> Path:
    """Write a complete store at ``path``, atomically, from row ``blocks`` (one in memory at a time).

    A block is a dict of ``features`` [n, D], ``ids``, ``labels``, ``folds``, ``window_starts`` [n]
    (None unless windowed) and ``channels`` [n] (None unless one row per channel), and optionally
    ``skipped_ids``/``skipped_reasons`` [k] and ``warnings_ids``/``warnings_reasons`` [k]."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        stamp_format(f, FORMAT, FORMAT_VERSION)
        f.attrs.update({"config": config_json, "n_clips": n_clips, **attrs})
        write_strings(f, "label_names", label_names)
        for group, _ in _PAIR_GROUPS:
            for name in ("ids", "reasons"):
                f.create_dataset(f"{group}/{name}", shape=(0,), maxshape=(None,), dtype=STR)
        for block in blocks:
            if len(block["features"]):
                if "features" not in f:
                    _create_rows(f, block["features"].shape[1], block["window_starts"] is not None,
                                 block.get("channels") is not None)
                for name in _ROW_FIELDS:
                    if name in f:
                        _append(f[name], block[name])
            for group, _ in _PAIR_GROUPS:
                for name in ("ids", "reasons"):
                    _append(f[f"{group}/{name}"], block.get(f"{group}_{name}", ()))
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


from .journal import StoreWriter, committed_clips  # noqa: E402,F401 - the writing side, re-exported (it uses write_store)
