"""Writing a feature store resumably: the journal ``OUT.h5.partial/`` of committed batches
(:class:`StoreWriter`), its lock and chain checks; the finished store is written by
:func:`deepfeat.store.write_store`. See :mod:`deepfeat.store` for the layout."""
from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .config import canonical_json
from .errors import StoreError
from .io import ExclusiveLock, atomic_path, write_bytes
from .store import _HEADER, _PAIR_GROUPS, describe_difference, store_status, write_store

JOURNAL_VERSION = 2  #: layout of a journal (header.json, batch files); another version is not resumed


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
