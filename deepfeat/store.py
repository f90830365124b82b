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

Writing commits whole batches to a journal folder ``OUT.h5.partial/`` (one file per batch,
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
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .config import canonical_json
from .errors import StoreError
from .io import (
    STR, ExclusiveLock, atomic_path, attrs_dict, open_h5, read_strings, stamp_format, write_bytes, write_strings,
)

FORMAT = "deepfeat.features"
FORMAT_VERSION = 1
_HINT = "make one with `deepfeat extract`"
JOURNAL_VERSION = 2  #: layout of a journal (header.json, batch files); another version is not resumed
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


class StoreWriter:
    """Commits batches of rows to a journal folder ``OUT.h5.partial/``; :meth:`finish` writes ``OUT.h5``.

    Each commit is one ``.npz`` file written to a temporary name and renamed into place, so a run
    killed at any instant (Ctrl-C, ``kill -9``, power loss) keeps every committed batch and never
    leaves a half-written file behind; the HDF5 store itself is written once, at the end, streaming
    the batches in order (memory does not grow with the number of clips).

    The writer holds the journal's lock until :meth:`finish` or :meth:`close` (or a ``with``
    block's end); a second writer raises :class:`StoreError` naming its pid. ``batching`` (e.g.
    ``{"clips_per_batch": 32}``) is what a journal's batches share (see :func:`_check_journal`);
    ``first_clip``: the manifest index of the first clip this store holds (a shard's start).
    """

    def __init__(self, path: str | Path, config: dict, label_names: list[str], n_clips: int,
                 attrs: dict | None = None, overwrite: bool = False, batching: dict | None = None,
                 first_clip: int = 0):
        self.path = Path(path)
        self.first_clip = int(first_clip)
        self.partial = Path(str(self.path) + ".partial")
        self.config_json = canonical_json(config)
        try:
            self._lock = ExclusiveLock(self.partial / _LOCK, str(self.path))
        except OSError as e:
            raise StoreError(f"{self.partial}: cannot create the journal ({e.strerror}); write the store to a "
                             "folder you can write to (-o) or fix its permissions") from None
        try:
            self._open(config, label_names, n_clips, attrs, overwrite, dict(batching or {}))
        except BaseException:
            if not (self.partial / _HEADER).exists():  # this writer made the folder: leave nothing behind
                shutil.rmtree(self.partial, ignore_errors=True)
            self.close()
            raise

    def _open(self, config, label_names, n_clips, attrs, overwrite: bool, batching: dict) -> None:
        if overwrite:
            self.path.unlink(missing_ok=True)
            for entry in self.partial.iterdir():
                if entry.name != _LOCK:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        state = store_status(self.path, config)
        if state == "complete":
            raise StoreError(f"{self.path}: already complete for this configuration")
        if state == "absent":
            header = {"config": self.config_json, "label_names": list(label_names), "n_clips": n_clips,
                      "attrs": attrs or {}, "journal_version": JOURNAL_VERSION, "batching": batching}
            write_bytes(self.partial / _HEADER, json.dumps(header).encode())
        self.header = json.loads((self.partial / _HEADER).read_text())
        for stale in self.partial.glob("*.tmp"):
            stale.unlink()
        self.batches = sorted(self.partial.glob("batch-*.npz"))
        self._done = _check_journal(self.partial, self.header, batching, self.batches, self.first_clip)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def clips_done(self) -> int:
        """Clips (in manifest order) fully processed and committed: where a resumed run starts."""
        return self._done

    def commit(self, features: np.ndarray, ids: list[str], labels, folds, window_starts=None,
               clips_done: int = 0, skipped: list[tuple[str, str]] = (), seconds: float = 0.0,
               channels=None, warnings: list[tuple[str, str]] = (), clips_start: int | None = None) -> None:
        """Durably record a batch of rows and that manifest clips ``clips_start`` (default: where
        the journal stands, :attr:`clips_done`) to ``clips_done`` are finished. ``skipped``:
        (id, reason) of clips left out; ``warnings``: (id, reason) of clips stored despite a problem;
        ``channels``: each row's channel, for stores of single-channel rows."""
        features = np.asarray(features, dtype=np.float32)
        if features.size and not np.all(np.isfinite(features)):
            raise StoreError(f"{self.partial}: non-finite features produced; this is a bug, please report it")
        start = self._done if clips_start is None else int(clips_start)
        if start != self._done or clips_done < start:
            raise StoreError(f"{self.partial}: a batch of clips {start}-{clips_done} does not follow the journal, "
                             f"which ends at clip {self._done}; this is a bug, please report it")
        target = self.partial / f"batch-{len(self.batches):07d}.npz"
        pairs = {f"{name}_{part}": np.array([p[i] for p in pairs], dtype=str)
                 for name, pairs in (("skipped", skipped), ("warning", warnings))
                 for i, part in enumerate(("ids", "reasons"))}
        with atomic_path(target, fsync=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=features, ids=np.array(ids, dtype=str), labels=np.asarray(labels, dtype=np.int64),
                     folds=np.asarray(folds, dtype=np.int64),
                     window_starts=np.asarray(window_starts if window_starts is not None else [], dtype=np.float64),
                     windowed=window_starts is not None, clips_start=start, clips_done=clips_done, seconds=seconds,
                     channels=np.asarray(channels if channels is not None else [], dtype=np.int64),
                     per_channel=channels is not None, **pairs)
        self.batches.append(target)
        self._done = int(clips_done)

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
        self.close()
        return self.path

    def close(self) -> None:
        """Release the journal's lock (every commit is already on disk); idempotent."""
        self._lock.release()


def _check_journal(partial: Path, header: dict, batching: dict, batches: list[Path], first_clip: int = 0) -> int:
    """The clips a journal's batches complete, after refusing one of another layout version or
    batching, or whose batches do not follow each other (two processes wrote it at once)."""
    fix = "pass --overwrite to start again"
    version = header.get("journal_version", 1)
    if version != JOURNAL_VERSION:
        raise StoreError(f"{partial}: an unfinished journal of journal version {version} (this deepfeat writes "
                         f"version {JOURNAL_VERSION}); {fix}")
    if (header.get("batching") or {}) != batching:
        difference = describe_difference(header.get("batching") or {}, batching).replace(" -> ", " (this run: ", 1)
        raise StoreError(f"{partial}: the unfinished journal was written with {difference}); rerun with the "
                         f"journal's setting to resume it, or {fix}")
    done = first_clip
    for b in batches:
        with np.load(b) as z:
            start, end = int(z["clips_start"]), int(z["clips_done"])
        if start != done:
            raise StoreError(f"{partial}: {b.name} starts at clip {start} but the batches before it end at clip "
                             f"{done}: two processes wrote this journal at once; {fix}")
        done = end
    return done


_LOCK = "lock"
_HEADER = "header.json"
_PAIR_GROUPS = (("skipped", "skipped"), ("warnings", "warning"))  #: store group, journal prefix of (id, reason) pairs
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
                   **{f"{group}_{part}": z[f"{prefix}_{part}"].astype(object)
                      for group, prefix in _PAIR_GROUPS for part in ("ids", "reasons") if f"{prefix}_{part}" in z.files}}


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
