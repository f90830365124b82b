"""Late (decision-level) fusion of the class scores of several systems.

Inputs are scores files (:mod:`deepfeat.scores`) of one dataset and test fold: development rows
hold out-of-fold scores, test rows the scores of each system's model refitted on all development
folds. They are aligned by clip id and concatenated system by system into one matrix
``X [N, S * C]`` (S systems, C classes; columns ``s*C .. s*C + C - 1`` are system ``s``).

Fusion methods are scikit-learn classifiers on that matrix:

* :class:`StackingFusion` — a linear SVM on the standardised concatenated scores, C tuned by
  cross-validation over the development folds (the SVM and tuner of :mod:`deepfeat.classify`).
* :class:`MeanFusion` — the mean over systems of normalised scores. ``normalise="standard"``
  maps each system's scores through one affine z-score (a single mean and standard deviation
  over all its training entries), so each system keeps its own ranking of classes and systems
  with large decision values do not dominate; ``"softmax"`` further turns each system's
  standardised row into class probabilities before averaging.
* :class:`MajorityVote` — each system votes for its top class; ties go to the class with the
  higher mean standardised score.

Every statistic (standardisation, SVM, C) is fitted on development rows only; test-fold scores
and labels are used for nothing but the final prediction and its evaluation.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from .errors import ConfigError, StoreError
from .scores import Scores, read_scores

log = logging.getLogger("deepfeat.fusion")


# --- reading and aligning ---------------------------------------------------------------------
def _describe_ids(missing: set, extra: set) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {sorted(missing)[0]!r}")
    if extra:
        parts.append(f"{len(extra)} extra, e.g. {sorted(extra)[0]!r}")
    return "; ".join(parts)


def align_scores(scores: list[Scores], paths: list[str | Path] | None = None) -> list[Scores]:
    """Reorder every :class:`Scores` to the clip order of the first and check they describe the
    same clips: ids, folds, labels, label names and test fold must agree, else :class:`StoreError`
    naming both files."""
    if not scores:
        raise ConfigError("no scores files to fuse; pass scores.h5 files or --group with a results folder")
    names = [str(p) for p in paths] if paths is not None else [s.system for s in scores]
    ref, ref_name = scores[0], names[0]
    ref_ids = [str(i) for i in ref.ids]
    if len(set(ref_ids)) != len(ref_ids):
        raise StoreError(f"{ref_name}: clip ids are not unique; rewrite it with `deepfeat svm` or `deepfeat crnn`")
    aligned = [ref]
    for s, name in zip(scores[1:], names[1:]):
        ids = [str(i) for i in s.ids]
        where = {clip: row for row, clip in enumerate(ids)}
        if len(where) != len(ids):
            raise StoreError(f"{name}: clip ids are not unique; rewrite it with `deepfeat svm` or `deepfeat crnn`")
        if set(where) != set(ref_ids):
            raise StoreError(f"{name}: clip ids differ from {ref_name} ({_describe_ids(set(ref_ids) - set(where), set(where) - set(ref_ids))}); "
                             "fuse scores of the same dataset and clips")
        if list(s.label_names) != list(ref.label_names):
            raise StoreError(f"{name}: class names differ from {ref_name}; fuse scores of the same dataset")
        if s.test_fold != ref.test_fold:
            raise StoreError(f"{name}: test fold {s.test_fold} differs from {ref_name} (test fold {ref.test_fold}); "
                             "fuse scores made with the same --fold")
        order = np.array([where[clip] for clip in ref_ids], dtype=np.int64)
        for field_name in ("folds", "labels"):
            if not np.array_equal(getattr(s, field_name)[order], getattr(ref, field_name)):
                raise StoreError(f"{name}: clip {field_name} differ from {ref_name}; fuse scores of the same "
                                 "dataset manifest")
        aligned.append(Scores(system=s.system, ids=ref.ids, folds=ref.folds, labels=ref.labels,
                              label_names=list(ref.label_names), scores=s.scores[order], test_fold=s.test_fold,
                              score_kind=s.score_kind, config=s.config))
    systems = [s.system for s in aligned]
    dup = next((name for name in systems if systems.count(name) > 1), None)
    if dup is not None:
        raise ConfigError(f"system {dup!r} is given twice ({', '.join(n for n, s in zip(names, systems) if s == dup)}); "
                          "fuse each system once")
    return aligned


def read_aligned(paths: list[str | Path]) -> list[Scores]:
    """Read scores files and :func:`align_scores` them."""
    return align_scores([read_scores(p) for p in paths], list(paths))


def stack_scores(scores: list[Scores]) -> np.ndarray:
    """Aligned scores → ``X [N, S * C]`` float64, system-major column blocks."""
    return np.concatenate([s.scores.astype(np.float64) for s in scores], axis=1)


# --- fusion estimators ------------------------------------------------------------------------
class _BlockFusion(ClassifierMixin, BaseEstimator):
    """Shared part of the fixed-rule fusions: split X into per-system blocks and standardise
    each block with one mean and one standard deviation learnt in :meth:`fit`."""

    def __init__(self, n_classes: int | None = None):
        self.n_classes = n_classes

    def fit(self, X, y, groups=None):  # noqa: ARG002 - groups accepted for a uniform fusion API
        X, y = check_X_y(X, y)
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.arange(self.n_classes) if self.n_classes is not None else np.unique(y)
        n_classes = len(self.classes_)
        if X.shape[1] % n_classes:
            raise ValueError(f"X has {X.shape[1]} columns, not a multiple of the {n_classes} classes "
                             "(expected S systems x C classes)")
        blocks = self._blocks(X)
        self.n_systems_ = blocks.shape[1]
        self.mean_ = blocks.mean(axis=(0, 2))
        scale = blocks.std(axis=(0, 2))
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return self

    def _blocks(self, X) -> np.ndarray:
        """[N, S*C] → [N, S, C]."""
        return X.reshape(len(X), -1, len(self.classes_))

    def _standardised(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = check_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} columns; this fusion was fitted on {self.n_features_in_}")
        return (self._blocks(X) - self.mean_[None, :, None]) / self.scale_[None, :, None]

    def predict(self, X):
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


def _softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class MeanFusion(_BlockFusion):
    """Mean over systems of per-system normalised scores (see the module docstring).

    ``normalise``: ``"standard"`` (one z-score per system) or ``"softmax"`` (z-score, then
    softmax over classes: averaged class probabilities).
    """

    def __init__(self, normalise: str = "standard", n_classes: int | None = None):
        super().__init__(n_classes=n_classes)
        self.normalise = normalise

    def fit(self, X, y, groups=None):
        if self.normalise not in ("standard", "softmax"):
            raise ValueError(f"normalise must be 'standard' or 'softmax', got {self.normalise!r}")
        return super().fit(X, y, groups)

    def decision_function(self, X) -> np.ndarray:
        z = self._standardised(X)
        if self.normalise == "softmax":
            z = _softmax(z)
        return z.mean(axis=1)


class MajorityVote(_BlockFusion):
    """Each system votes for its highest-scoring class; the class with most votes wins.

    :meth:`decision_function` is the share of votes plus a tie-break below half a vote (the
    softmax of the mean standardised scores, times ``1 / (2 S)``), so its argmax is the vote
    winner and equal votes go to the class the systems score higher on average.
    """

    def decision_function(self, X) -> np.ndarray:
        z = self._standardised(X)
        n_systems, n_classes = z.shape[1], z.shape[2]
        votes = np.zeros((len(z), n_classes))
        for s in range(n_systems):
            np.add.at(votes, (np.arange(len(z)), z[:, s].argmax(axis=1)), 1.0)
        return votes / n_systems + _softmax(z.mean(axis=1)) / (2 * n_systems)


class StackingFusion(ClassifierMixin, BaseEstimator):
    """Stacking: a linear SVM on the standardised concatenated scores of all systems, its C
    chosen by cross-validation over the folds passed as ``groups`` to :meth:`fit` (one fold
    held out at a time; stratified 5-fold when no groups are given).

    Fitted attributes: ``model_`` (the SVM pipeline refitted on all training rows with
    ``best_C_``), ``cv_results_`` (``{C: mean CV accuracy}``), ``best_score_``.
    """

    def __init__(self, Cs=None):
        self.Cs = Cs

    def fit(self, X, y, groups=None):
        X, y = check_X_y(X, y)
        self.n_features_in_ = X.shape[1]
        tuned = tune_linear_svm(X, y, groups, Cs=self.Cs)
        self.model_, self.best_C_, self.cv_results_ = tuned.model, tuned.best_C, tuned.cv_results
        self.best_score_ = self.cv_results_[self.best_C_]
        self.classes_ = self.model_.classes_
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self)
        scores = self.model_.decision_function(check_array(X))
        return scores if scores.ndim == 2 else np.stack([-scores, scores], axis=1)

    def predict(self, X):
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


METHODS: dict[str, type] = {"stacking": StackingFusion, "mean": MeanFusion, "vote": MajorityVote}


def make_fusion(method: str, n_classes: int | None = None, **params):
    """A fresh fusion estimator by name (``stacking``, ``mean``, ``vote``)."""
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    if method != "stacking":
        params["n_classes"] = n_classes
    return METHODS[method](**params)


# --- which system made a scores file, and the paper's fusion groups ---------------------------
@dataclass(frozen=True)
class SystemInfo:
    """What a scores file's ``system`` and ``config`` say about the system that made it."""

    system: str
    family: str  #: "image" (image CNN + SVM), "audio" (audio-model embedding + SVM), "crnn" or "fusion"
    network: str | None = None
    weights: str | None = None  #: imagenet, none, a checkpoint path, or an audio model's own
    colormap: str | None = None


def _find_extractor(config) -> dict | None:
    """The extractor configuration (a dict with ``network`` and ``kind``) anywhere in ``config``."""
    if isinstance(config, dict):
        if "network" in config and "kind" in config:
            return config
        for value in config.values():
            found = _find_extractor(value)
            if found is not None:
                return found
    return None


def system_info(scores: Scores) -> SystemInfo:
    """Classify a system from its scores file metadata (for groups and the report)."""
    config = scores.config or {}
    if "fusion" in config:
        return SystemInfo(scores.system, "fusion", network=config["fusion"].get("method"))
    if scores.system.startswith("crnn") or config.get("model") == "crnn":
        return SystemInfo(scores.system, "crnn", network="crnn")
    extractor = _find_extractor(config)
    if extractor is None:
        raise StoreError(f"{scores.system}: its scores config names no extractor or model; "
                         "rewrite it with `deepfeat svm` or `deepfeat crnn`")
    plot = extractor.get("plot") or {}
    return SystemInfo(scores.system, "image" if extractor["kind"] == "image" else "audio",
                      network=extractor["network"], weights=extractor.get("weights"),
                      colormap=plot.get("colormap"))


#: The paper's fusion groups: name → (description, which systems belong).
GROUPS: dict[str, tuple[str, object]] = {
    "imagenet": ("all ImageNet-pretrained image CNNs", lambda i: i.family == "image" and i.weights == "imagenet"),
    "untrained": ("all randomly initialised image CNNs", lambda i: i.family == "image" and i.weights == "none"),
    "image": ("all image CNNs", lambda i: i.family == "image"),
    "crnn+image": ("CRNN + all image CNNs", lambda i: i.family in ("crnn", "image")),
    "image+audio": ("all image CNNs + audio models", lambda i: i.family in ("image", "audio")),
    "all": ("every single system", lambda i: i.family != "fusion"),
}


def find_scores(results_dir: str | Path) -> list[Path]:
    """Every scores file under ``results_dir`` (recursively), sorted."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir}: no such results folder; run `deepfeat svm` / `deepfeat crnn` first")
    found = []
    for path in sorted(results_dir.rglob("*.h5")):
        try:
            read_scores(path)
        except StoreError:
            continue
        found.append(path)
    return found


def select_group(results_dir: str | Path, group: str, test_fold: int | None = None) -> list[Path]:
    """Scores files under ``results_dir`` of the systems in ``group`` (and of ``test_fold``)."""
    if group not in GROUPS:
        raise ConfigError(f"unknown fusion group {group!r}; choose one of {', '.join(GROUPS)}")
    member = GROUPS[group][1]
    chosen = []
    for path in find_scores(results_dir):
        s = read_scores(path)
        if (test_fold is None or s.test_fold == test_fold) and member(system_info(s)):
            chosen.append(path)
    if len(chosen) < 2:
        raise ConfigError(f"{results_dir}: fusion group {group!r} ({GROUPS[group][0]}) needs at least two systems' "
                          f"scores{'' if test_fold is None else f' for test fold {test_fold}'}, found {len(chosen)}; "
                          "run the missing `deepfeat svm` / `deepfeat crnn` first")
    return chosen
