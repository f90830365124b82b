"""The one I/O layer of deepfeat's files: atomic writes, UTF-8 string datasets, and the format
check every HDF5 file of deepfeat carries (feature stores, scores files, mel caches).

Every file deepfeat writes appears under its final name only once it is complete:
:func:`atomic_path` hands out a temporary name beside the target and renames it into place
(``os.replace``, atomic on POSIX) when the block succeeds, and removes it when the block fails.
A run killed at any instant therefore leaves either the old file or the new one, never half of one.

One process at a time writes a given output: :class:`ExclusiveLock` holds an exclusive
``fcntl.flock`` on a lock file beside (or inside the journal of) what it writes, released by the
operating system when the process ends in any way (also ``kill -9``), so no stale lock survives.

Each HDF5 file has the attributes ``format`` (e.g. ``"deepfeat.features"``) and
``format_version``; :func:`open_h5` opens one for reading and checks both, raising
:class:`~deepfeat.errors.StoreError` naming the file and the command that writes it.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from .errors import StoreError

#: HDF5 dtype of every string dataset deepfeat writes.
STR = h5py.string_dtype("utf-8")
TMP_SUFFIX = ".tmp"
#: What each ``format`` attribute is called in messages.
FORMAT_NAMES = {"deepfeat.features": "deepfeat feature store", "deepfeat.scores": "deepfeat scores file",
                "deepfeat.mels": "deepfeat mel cache"}


def cache_dir(*parts: str) -> Path:
    """deepfeat's cache folder, ``$XDG_CACHE_HOME/deepfeat`` (default ``~/.cache/deepfeat``), or a
    folder below it (``parts``); not created here."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "deepfeat", *parts)


def cached_array(path: Path | None, make, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The array saved in ``path`` (a ``.npy`` file) if it is there with this ``shape`` and ``dtype``;
    else ``make()``, saved there atomically for next time (where the folder cannot be written,
    it is simply made again next time). ``path`` None: ``make()``, not saved."""
    if path is not None:
        try:
            array = np.load(path, allow_pickle=False)
            if array.shape == tuple(shape) and array.dtype == dtype:
                return array
        except (OSError, ValueError):
            pass
    array = make()
    if path is not None:
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, array)
        except OSError:
            pass
    return array


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure delete it.

    Parameters
    ----------
    path : str or Path
        The final file. Its folder is created if needed.
    fsync : bool
        Flush the file to disk before the rename (for journals that must survive power loss).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class ExclusiveLock:
    """An exclusive, non-blocking lock on the file ``path`` (``fcntl.flock``; POSIX), taken on
    construction and held until :meth:`release` (or the end of the process, however it ends).

    The holder writes its pid into the file, so a second process that asks for the lock stops at
    once with a :class:`StoreError` naming ``what`` and that pid. On a file system without locks
    (some network mounts) a warning is logged and nothing is locked. ``path``'s folder is created if
    needed; when that folder is removed and made again while the lock is being taken (its holder
    finished), the new file is locked instead.

    Parameters
    ----------
    path : str or Path
        The lock file (created if needed; never deleted by this class).
    what : str
        What the lock protects, for the message (e.g. the store's file name).
    """

    def __init__(self, path: str | Path, what: str):
        import fcntl

        self.path = Path(path)
        for _ in range(100):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if holder == str(os.getpid()):
                    raise StoreError(f"{what}: another writer in this process is writing it; close that one "
                                     "first") from None
                raise StoreError(f"{what}: another process (pid {holder}) is writing it; wait for that process to "
                                 "finish (or stop it), then rerun this command to resume") from None
            except OSError as e:  # a file system without locks (some network mounts): write unguarded
                logging.getLogger("deepfeat.io").warning("%s: cannot lock %s (%s); make sure no other process "
                                                         "writes it", what, self.path, e.strerror)
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd: int | None = fd
                return
            os.close(fd)  # locked a file its holder removed meanwhile: lock the new one
        raise StoreError(f"{what}: could not lock {self.path} (it keeps being removed); rerun this command")

    def release(self) -> None:
        """Give the lock up (closing the file releases it); calling it again does nothing."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` (numpy values and paths allowed) as indented JSON, atomically; non-finite
    floats become ``null``. Returns ``path``."""
    return write_text(path, json.dumps(jsonable(data), indent=2) + "\n")


def jsonable(value):
    """``value`` with numpy arrays/scalars and paths turned into JSON types; non-finite floats → None."""
    import math

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def content_sha256(*values) -> str:
    """sha256 (hex) of the content of ``values``: numpy arrays by dtype, shape and data (strings
    by value), anything else as canonical JSON. Equal content gives equal digests, whatever file
    it was read from (file checksums change with HDF5 timestamps and timing attributes)."""
    import hashlib

    digest = hashlib.sha256()
    for value in values:
        if isinstance(value, np.ndarray) and value.dtype.kind not in "OUS":
            digest.update(f"{value.dtype.str}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            value = value.tolist() if isinstance(value, np.ndarray) else value
            digest.update(json.dumps(jsonable(value), sort_keys=True, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def write_strings(group: h5py.Group, name: str, values: Iterable[str], **kwargs) -> h5py.Dataset:
    """Create the UTF-8 string dataset ``group[name]`` from ``values`` (``kwargs``: h5py options
    such as ``maxshape``/``chunks``)."""
    return group.create_dataset(name, data=np.array([str(v) for v in values], dtype=object), dtype=STR, **kwargs)


def read_strings(dataset: h5py.Dataset) -> list[str]:
    """A string dataset as a list of ``str`` (h5py returns ``bytes``)."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[()]]


def attrs_dict(obj: h5py.HLObject) -> dict:
    """HDF5 attributes as plain Python values (numpy scalars unwrapped, bytes decoded)."""
    out = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif hasattr(value, "item") and np.ndim(value) == 0:
            value = value.item()
        out[key] = value
    return out


def stamp_format(f: h5py.File, fmt: str, version: int = 1) -> None:
    """Mark an open file as deepfeat format ``fmt`` (see :func:`open_h5`)."""
    f.attrs["format"] = fmt
    f.attrs["format_version"] = version


def check_format(f: h5py.File, path: str | Path, fmt: str, hint: str, versions: Iterable[int] = (1,)) -> None:
    """Raise :class:`StoreError` unless ``f`` is a deepfeat ``fmt`` file of a readable version.

    ``hint`` says how such a file is made (e.g. ``"make one with `deepfeat extract`"``).
    """
    found = f.attrs.get("format")
    if isinstance(found, bytes):
        found = found.decode()
    what = FORMAT_NAMES.get(fmt, f"{fmt} file")
    if found != fmt:
        raise StoreError(f"{path}: not a {what} (format attribute: {found!r}, expected {fmt!r}); {hint}")
    version = int(f.attrs.get("format_version", 1))
    if version not in tuple(versions):
        raise StoreError(f"{path}: {what} format version {version} is not readable by this deepfeat "
                         f"(reads {', '.join(map(str, versions))}); upgrade deepfeat or {hint}")


def open_h5(path: str | Path, fmt: str, hint: str, missing: str | None = None) -> h5py.File:
    """Open the deepfeat HDF5 file ``path`` for reading after checking it exists, is HDF5 and is
    of format ``fmt``; every failure is a one-line :class:`StoreError` naming the file.

    Parameters
    ----------
    path : str or Path
    fmt : str
        Expected ``format`` attribute.
    hint : str
        How to make such a file, appended to messages.
    missing : str, optional
        Message for a missing file (default: ``"no such file; " + hint``).
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: {missing or 'no such file; ' + hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise StoreError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0][:100]}); {hint}") from None
    try:
        check_format(f, path, fmt, hint)
    except StoreError:
        f.close()
        raise
    return f


def run_files(results_dir: str | Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` under ``results_dir`` (recursively, sorted), leaving out folders
    that hold a study of their own (a ``README.md`` below ``results_dir``, e.g. the runs of
    ``deepfeat ssl-study`` in ``results/esc10/ssl/``): their runs belong to that study's table."""
    root = Path(results_dir)
    studies = {p.parent for p in root.rglob("README.md") if p.parent != root}
    return [p for p in sorted(root.rglob(pattern)) if not any(s in p.parents for s in studies)]
