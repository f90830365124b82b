"""A lazy view of a feature store's rows, for classifiers on stores larger than memory.

:class:`StoreRows` stands where the fold protocol (:mod:`deepfeat.protocol`) expects its ``X``:
indexing it by an array of rows gives another view (nothing is read), and an estimator that
accepts it (:class:`~deepfeat.sgd.StreamingSVM`) reads it block by block with
:meth:`StoreRows.blocks`. Memory is one HDF5 chunk plus one block of rows, whatever the number
of rows.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

#: rows per block of :meth:`StoreRows.blocks` unless told otherwise
BLOCK_ROWS = 2048


class StoreRows:
    """Rows ``rows`` of the ``features`` dataset of the feature store ``path``, read on demand.

    Parameters
    ----------
    path : str or Path
        A complete feature store (:func:`deepfeat.store.read_store` with ``lazy=True`` makes one).
    rows : int array, optional
        Store rows in this view, in its order (default: every row).

    Attributes
    ----------
    shape : tuple
        ``(len(rows), D)``.
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, path: str | Path, rows: np.ndarray | None = None):
        self.path = Path(path)
        with h5py.File(self.path, "r") as f:
            n, dim = f["features"].shape
            self._chunk = f["features"].chunks[0] if f["features"].chunks else 1024
        self.rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), dim)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> "StoreRows":
        """The view of ``self.rows[index]`` (an int array, boolean mask or slice): nothing is read."""
        if np.ndim(index) == 0 and not isinstance(index, slice):
            raise TypeError("index a StoreRows view with an array of rows or a slice; read rows with blocks() or read()")
        view = copy.copy(self)
        view.rows = self.rows[index]
        view.shape = (len(view.rows), self.shape[1])
        return view

    def __repr__(self) -> str:
        return f"StoreRows({str(self.path)!r}, {self.shape[0]} x {self.shape[1]})"

    def blocks(self, block_rows: int = BLOCK_ROWS, rng: np.random.Generator | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, X)``: positions [n] in this view and their rows float32 [n, D].

        Every row of the view is yielded once; n is at most ``block_rows`` (or the store's HDF5
        chunk, ≤ 256 rows, when that is larger). The file is read one HDF5 chunk at a time, in file
        order; with ``rng`` the chunks come in a random order and each block's rows are shuffled
        (an epoch of stochastic gradient descent)."""
        order = np.argsort(self.rows, kind="stable")
        stored = self.rows[order]
        chunk_of = stored // self._chunk
        starts = np.flatnonzero(np.r_[True, chunk_of[1:] != chunk_of[:-1]])
        spans = list(zip(starts, np.r_[starts[1:], len(stored)]))
        if rng is not None:
            spans = [spans[i] for i in rng.permutation(len(spans))]
        with h5py.File(self.path, "r") as f:
            ds = f["features"]
            positions, parts, size = [], [], 0
            for lo, hi in spans:
                if size and size + hi - lo > block_rows:
                    yield _block(positions, parts, rng)
                    positions, parts, size = [], [], 0
                first = int(chunk_of[lo]) * self._chunk
                chunk = ds[first:min(first + self._chunk, ds.shape[0])]
                positions.append(order[lo:hi])
                parts.append(chunk[stored[lo:hi] - first])
                size += hi - lo
            if size:
                yield _block(positions, parts, rng)

    def read(self) -> np.ndarray:
        """Every row of the view as one float32 array [N, D] (for views that fit in memory)."""
        out = np.empty(self.shape, dtype=np.float32)
        for positions, X in self.blocks():
            out[positions] = X
        return out


def _block(positions: list, parts: list, rng) -> tuple[np.ndarray, np.ndarray]:
    positions, X = np.concatenate(positions), np.concatenate(parts)
    if rng is not None:
        shuffle = rng.permutation(len(positions))
        positions, X = positions[shuffle], X[shuffle]
    return positions, X
