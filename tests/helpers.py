"""Small synthetic data shared by several test modules (no downloads, no ../shared)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from deepfeat.store import FeatureSet, StoreWriter


def blobs(n_classes=3, n_folds=5, per_cell=4, dim=8, sep=6.0, noise=1.0, windows=1, seed=0) -> dict:
    """Gaussian class clusters: ``per_cell`` clips per class and fold, ``windows`` rows per clip.
    With the default ``sep`` the classes are linearly separable."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_classes, dim)) * sep
    rows = {"features": [], "ids": [], "labels": [], "folds": [], "window_starts": []}
    for fold in range(1, n_folds + 1):
        for c in range(n_classes):
            for i in range(per_cell):
                for w in range(windows):
                    rows["features"].append(means[c] + noise * rng.standard_normal(dim))
                    rows["ids"].append(f"f{fold}-c{c}-{i}")
                    rows["labels"].append(c)
                    rows["folds"].append(fold)
                    rows["window_starts"].append(0.5 * w)
    data = {k: np.asarray(v) for k, v in rows.items()}
    data["features"] = data["features"].astype(np.float32)
    data["ids"] = data["ids"].astype(object)
    data["label_names"] = [f"class{c}" for c in range(n_classes)]
    if windows == 1:
        data["window_starts"] = None
    return data


def feature_set(data: dict, path="mem.h5", attrs=None, config=None) -> FeatureSet:
    """An in-memory :class:`FeatureSet` of ``blobs`` data."""
    return FeatureSet(path=Path(path), features=data["features"], ids=data["ids"], labels=data["labels"],
                      folds=data["folds"], label_names=data["label_names"], window_starts=data["window_starts"],
                      config=config or {}, attrs={"network": "toynet", "weights": "none", "dataset": "toy",
                                                  **(attrs or {})}, skipped=[])


def write_store(path, data: dict, attrs=None) -> Path:
    """Write ``blobs`` data as a complete feature store with :class:`StoreWriter`."""
    n_clips = len(set(data["ids"]))
    writer = StoreWriter(path, {"toy": True}, data["label_names"], n_clips,
                         attrs={"network": "toynet", "weights": "none", "dataset": "toy", **(attrs or {})})
    if len(data["features"]):
        writer.commit(data["features"], list(data["ids"]), data["labels"], data["folds"],
                      window_starts=data["window_starts"], clips_done=n_clips)
    else:  # StoreWriter refuses to publish an empty store: make one by emptying a one-row store
        writer.commit(np.zeros((1, 4), np.float32), ["x"], [0], [1], clips_done=1)
    path = writer.finish()
    if not len(data["features"]):
        with h5py.File(path, "r+") as f:
            for name in ("features", "ids", "labels", "folds"):
                f[name].resize(0, axis=0)
    return path
