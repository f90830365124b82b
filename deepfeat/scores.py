"""The scores file: per-clip class scores of one system, written by every classifier stage
(``svm``, ``crnn``, ``finetune``, ``fuse``) through :mod:`deepfeat.protocol`, read by ``fuse`` and
``report``. Defined once here.

Layout (``format = "deepfeat.scores"``): ``ids`` str [N], ``folds`` int64 [N], ``labels``
int64 [N] (index into ``label_names``), ``label_names`` str [C], ``scores`` float32 [N, C].
Rows of development folds hold out-of-fold scores (each predicted by a model that did not see
its fold); rows of ``test_fold`` hold the scores of the model refitted on all development folds.
Attributes: ``system`` (a name such as ``svm-efficientnet_lite0-imagenet``), ``score_kind``
(``decision_function`` or ``probability``), ``test_fold``, ``config`` (JSON), and the dataset's
``evaluation_folds`` (JSON list: folds that are never development folds) and ``primary_metric``.
Clips of an evaluation partition that is not the test fold are not scored, so not in the file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .config import canonical_json
from .io import atomic_path, attrs_dict, open_h5, read_strings, stamp_format, write_strings

FORMAT = "deepfeat.scores"
_HINT = "`deepfeat svm`, `crnn`, `finetune` and `fuse` write scores.h5 in their run folders"


@dataclass
class Scores:
    """Class scores of one system on one dataset and test fold (see the module docstring)."""

    system: str
    ids: np.ndarray  #: str [N]
    folds: np.ndarray  #: int64 [N]
    labels: np.ndarray  #: int64 [N]
    label_names: list[str]
    scores: np.ndarray  #: float32 [N, C]
    test_fold: int
    score_kind: str = "decision_function"
    config: dict = field(default_factory=dict)
    evaluation_folds: tuple[int, ...] = ()
    primary_metric: str = "accuracy"

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=object)
        self.folds = np.asarray(self.folds, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.evaluation_folds = tuple(int(f) for f in self.evaluation_folds)
        n = len(self.ids)
        if not (len(self.folds) == len(self.labels) == self.scores.shape[0] == n):
            raise ValueError("ids, folds, labels and scores must have the same number of rows")
        if self.scores.ndim != 2 or self.scores.shape[1] != len(self.label_names):
            raise ValueError(f"scores must be [N, {len(self.label_names)}], got {self.scores.shape}")

    @property
    def test_mask(self) -> np.ndarray:
        return self.folds == self.test_fold

    def write(self, path: str | Path) -> Path:
        """Write the scores file ``path`` atomically; returns ``path``."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            stamp_format(f, FORMAT)
            f.attrs.update({"system": self.system, "test_fold": self.test_fold, "score_kind": self.score_kind,
                            "config": canonical_json(self.config),
                            "evaluation_folds": json.dumps(list(self.evaluation_folds)),
                            "primary_metric": self.primary_metric})
            write_strings(f, "ids", self.ids)
            f.create_dataset("folds", data=self.folds)
            f.create_dataset("labels", data=self.labels)
            write_strings(f, "label_names", self.label_names)
            f.create_dataset("scores", data=self.scores)
        return Path(path)


def read_scores(path: str | Path) -> Scores:
    """Read a scores file; :class:`~deepfeat.errors.StoreError` naming the file otherwise."""
    with open_h5(path, FORMAT, _HINT, missing=f"no such scores file; {_HINT}") as f:
        attrs = attrs_dict(f)
        return Scores(system=str(attrs["system"]), ids=read_strings(f["ids"]), folds=f["folds"][()],
                      labels=f["labels"][()], label_names=read_strings(f["label_names"]), scores=f["scores"][()],
                      test_fold=int(attrs["test_fold"]), score_kind=str(attrs["score_kind"]),
                      config=json.loads(attrs.get("config", "{}")),
                      evaluation_folds=tuple(json.loads(attrs.get("evaluation_folds", "[]"))),
                      primary_metric=str(attrs.get("primary_metric", "accuracy")))
