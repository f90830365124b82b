"""The scores file: per-clip class decision scores of one system, written by ``svm`` and ``crnn``
(and ``fuse``), read by ``fuse`` and ``report``. Defined once here.

Layout (``format = "deepfeat.scores"``): ``ids`` str [N], ``folds`` int64 [N], ``labels``
int64 [N] (index into ``label_names``), ``label_names`` str [C], ``scores`` float32 [N, C].
Rows of development folds hold out-of-fold scores (each predicted by a model that did not see
its fold); rows of ``test_fold`` hold the scores of the model refitted on all development folds.
Attributes: ``system`` (a name such as ``svm-efficientnet_lite0-imagenet``), ``score_kind``
(``decision_function`` or ``probability``), ``test_fold``, ``config`` (JSON).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .config import canonical_json
from .errors import StoreError

FORMAT = "deepfeat.scores"
_STR = h5py.string_dtype("utf-8")


@dataclass
class Scores:
    system: str
    ids: np.ndarray  #: str [N]
    folds: np.ndarray  #: int64 [N]
    labels: np.ndarray  #: int64 [N]
    label_names: list[str]
    scores: np.ndarray  #: float32 [N, C]
    test_fold: int
    score_kind: str = "decision_function"
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=object)
        self.folds = np.asarray(self.folds, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        n = len(self.ids)
        if not (len(self.folds) == len(self.labels) == self.scores.shape[0] == n):
            raise ValueError("ids, folds, labels and scores must have the same number of rows")
        if self.scores.ndim != 2 or self.scores.shape[1] != len(self.label_names):
            raise ValueError(f"scores must be [N, {len(self.label_names)}], got {self.scores.shape}")

    @property
    def test_mask(self) -> np.ndarray:
        return self.folds == self.test_fold

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"format": FORMAT, "format_version": 1, "system": self.system, "test_fold": self.test_fold,
                            "score_kind": self.score_kind, "config": canonical_json(self.config)})
            f.create_dataset("ids", data=self.ids, dtype=_STR)
            f.create_dataset("folds", data=self.folds)
            f.create_dataset("labels", data=self.labels)
            f.create_dataset("label_names", data=np.array(self.label_names, dtype=object), dtype=_STR)
            f.create_dataset("scores", data=self.scores)
        tmp.replace(path)
        return path


def read_scores(path: str | Path) -> Scores:
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such scores file; `deepfeat svm` or `deepfeat crnn` write scores.h5")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise StoreError(f"{path}: not a deepfeat scores file (format attribute missing)")
            dec = lambda ds: [s.decode() if isinstance(s, bytes) else s for s in ds[()]]  # noqa: E731
            return Scores(system=str(f.attrs["system"]), ids=dec(f["ids"]), folds=f["folds"][()],
                          labels=f["labels"][()], label_names=dec(f["label_names"]), scores=f["scores"][()],
                          test_fold=int(f.attrs["test_fold"]), score_kind=str(f.attrs["score_kind"]),
                          config=json.loads(f.attrs.get("config", "{}")))
    except OSError as e:
        raise StoreError(f"{path}: not a readable HDF5 file ({e})") from None
