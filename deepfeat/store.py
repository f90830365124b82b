"""The HDF5 feature store: one file per feature set, self-describing, written resumably.

Layout (``format = "deepfeat.features"``, ``format_version = 1``):

=====================  ==================  ==============================================
``features``           float32 [N, D]      one row per clip, or per window if windowed
``ids``                str [N]             clip id of each row
``labels``             int64 [N]           index into ``label_names`` (-1: unlabelled)
``folds``              int64 [N]           fold of each row (0: none assigned)
``window_starts``      float64 [N]         window start in seconds (windowed stores only)
``label_names``        str [C]
``skipped/ids``        str [K]             clips that could not be processed ...
``skipped/reasons``    str [K]             ... and why
=====================  ==================  ==============================================

Attributes: ``config`` (canonical JSON of the full extraction configuration), ``network``,
``layer``, ``weights``, ``weights_sha256``, ``dataset``, ``manifest_sha256``, ``versions``
(JSON), ``n_clips``, ``complete``, and timings (``extract_seconds``).

Writing goes to ``OUT.h5.partial`` in whole batches, each flushed with the count of clips it
completes; a killed run reopens the partial file, drops anything past the last committed batch
and continues. Only a finished store is renamed to ``OUT.h5``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .config import canonical_json
from .errors import StoreError

FORMAT = "deepfeat.features"
FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")
_ROW_DATASETS = ("ids", "labels", "folds", "window_starts")


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

    @property
    def windowed(self) -> bool:
        return self.window_starts is not None

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".h5")


def _strings(ds) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in ds[()]]


def _check_format(f: h5py.File, path: Path) -> None:
    if f.attrs.get("format") != FORMAT:
        raise StoreError(f"{path}: not a deepfeat feature store (no format={FORMAT!r} attribute); "
                         "make one with `deepfeat extract`")


def read_store(path: str | Path) -> FeatureSet:
    """Read a complete feature store; raises :class:`StoreError` with the file name otherwise."""
    path = Path(path)
    if not path.is_file():
        partial = Path(str(path) + ".partial")
        hint = f" (an unfinished {partial.name} exists: rerun the same extract command to finish it)" if partial.exists() else ""
        raise StoreError(f"{path}: no such feature store{hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise StoreError(f"{path}: not a readable HDF5 file ({e}); re-run `deepfeat extract`") from None
    with f:
        _check_format(f, path)
        if not f.attrs.get("complete", False):
            raise StoreError(f"{path}: store is incomplete; rerun the extract command that made it")
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        skipped = list(zip(_strings(f["skipped/ids"]), _strings(f["skipped/reasons"]))) if "skipped" in f else []
        return FeatureSet(
            path=path, features=f["features"][()], ids=np.array(_strings(f["ids"]), dtype=object),
            labels=f["labels"][()], folds=f["folds"][()], label_names=_strings(f["label_names"]),
            window_starts=f["window_starts"][()] if "window_starts" in f else None,
            config=json.loads(attrs.get("config", "{}")), attrs=attrs, skipped=skipped,
        )


def store_status(path: str | Path, config: dict) -> str:
    """``"complete"`` if ``path`` is a finished store of ``config``, ``"partial"`` if an unfinished
    one of ``config`` exists, ``"absent"`` if neither; raises if either holds another configuration."""
    path = Path(path)
    for candidate, state in ((path, "complete"), (Path(str(path) + ".partial"), "partial")):
        if candidate.exists():
            try:
                with h5py.File(candidate, "r") as f:
                    stored = f.attrs.get("config")
            except OSError:
                raise StoreError(f"{candidate}: exists but is not a readable HDF5 file; delete it or pass --overwrite") from None
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
    """Appends committed batches of rows to ``OUT.h5.partial``; :meth:`finish` publishes ``OUT.h5``."""

    def __init__(self, path: str | Path, config: dict, label_names: list[str], n_clips: int,
                 attrs: dict | None = None, overwrite: bool = False):
        self.path = Path(path)
        self.partial = Path(str(self.path) + ".partial")
        self.config_json = canonical_json(config)
        if overwrite:
            for p in (self.path, self.partial):
                if p.exists():
                    p.unlink()
        state = store_status(self.path, config)
        if state == "complete":
            raise StoreError(f"{self.path}: already complete for this configuration")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if state == "partial":
            self.file = h5py.File(self.partial, "r+")
            self._truncate_to_commit()
        else:
            self.file = h5py.File(self.partial, "w", libver="latest")
            self.file.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "config": self.config_json,
                                    "n_clips": n_clips, "clips_done": 0, "rows_done": 0, "complete": False,
                                    **(attrs or {})})
            self.file.create_dataset("label_names", data=np.array(label_names, dtype=object), dtype=_STR)
            self.file.create_group("skipped")
            for name in ("ids", "reasons"):
                self.file["skipped"].create_dataset(name, shape=(0,), maxshape=(None,), dtype=_STR)
            self.file.attrs["skipped_done"] = 0
            self.file.flush()

    @property
    def clips_done(self) -> int:
        """Clips (in manifest order) fully processed and committed: where a resumed run starts."""
        return int(self.file.attrs["clips_done"])

    def _truncate_to_commit(self) -> None:
        rows, skipped = int(self.file.attrs["rows_done"]), int(self.file.attrs["skipped_done"])
        for name in ("features", *_ROW_DATASETS):
            if name in self.file and self.file[name].shape[0] > rows:
                self.file[name].resize(rows, axis=0)
        for name in ("ids", "reasons"):
            self.file["skipped"][name].resize(skipped, axis=0)

    def _create_rows(self, dim: int, windowed: bool) -> None:
        chunk = max(1, min(256, (1 << 20) // (4 * dim)))
        self.file.create_dataset("features", shape=(0, dim), maxshape=(None, dim), dtype=np.float32,
                                 chunks=(chunk, dim), compression="gzip", compression_opts=4, shuffle=True)
        self.file.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
        for name, dtype in (("labels", np.int64), ("folds", np.int64)) + ((("window_starts", np.float64),) if windowed else ()):
            self.file.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))

    @staticmethod
    def _append(ds, values) -> None:
        n = ds.shape[0]
        ds.resize(n + len(values), axis=0)
        ds[n:] = values

    def commit(self, features: np.ndarray, ids: list[str], labels, folds, window_starts=None,
               clips_done: int = 0, skipped: list[tuple[str, str]] = ()) -> None:
        """Append a batch of rows and mark the first ``clips_done`` manifest clips finished."""
        features = np.asarray(features, dtype=np.float32)
        if len(features):
            if "features" not in self.file:
                self._create_rows(features.shape[1], window_starts is not None)
            if not np.all(np.isfinite(features)):
                raise StoreError(f"{self.partial}: non-finite features produced; this is a bug, please report it")
            self._append(self.file["features"], features)
            self._append(self.file["ids"], np.array(ids, dtype=object))
            self._append(self.file["labels"], np.asarray(labels, dtype=np.int64))
            self._append(self.file["folds"], np.asarray(folds, dtype=np.int64))
            if window_starts is not None:
                self._append(self.file["window_starts"], np.asarray(window_starts, dtype=np.float64))
        if skipped:
            self._append(self.file["skipped/ids"], np.array([s[0] for s in skipped], dtype=object))
            self._append(self.file["skipped/reasons"], np.array([s[1] for s in skipped], dtype=object))
        self.file.flush()  # data first, then the commit marker
        self.file.attrs["rows_done"] = self.file["features"].shape[0] if "features" in self.file else 0
        self.file.attrs["skipped_done"] = self.file["skipped/ids"].shape[0]
        self.file.attrs["clips_done"] = clips_done
        self.file.flush()

    def finish(self, attrs: dict | None = None) -> Path:
        """Mark complete, close and atomically rename to the final path."""
        if "features" not in self.file:
            self.close()
            raise StoreError(f"{self.partial}: no clip could be processed (see the skipped list and log); "
                             "check the audio files")
        self.file.attrs.update(attrs or {})
        self.file.attrs["complete"] = True
        self.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()
