"""Late (decision-level) fusion of the class scores of several systems.

Inputs are scores files (:mod:`deepfeat.scores`) of one dataset and test fold: development rows
hold out-of-fold scores, test rows the scores of each system's model refitted on all development
folds. They are aligned by clip id and concatenated system by system into one matrix
``X [N, S * C]`` (S systems, C classes; columns ``s*C .. s*C + C - 1`` are system ``s``).

Fusion methods are scikit-learn classifiers on that matrix. All first standardise each system
with one affine z-score (one mean and one standard deviation over all its training entries), so
each system keeps its own ranking of classes and no system dominates by its scale:

* :class:`StackingFusion` — the linear SVM of ``deepfeat svm`` on the concatenated per-system
  class probabilities (softmax of the z-scores; ``normalise`` chooses), C tuned by
  cross-validation over the development folds.
* :class:`WeightedFusion` — a weighted sum of the z-scores with one weight per system and one
  offset per class, fitted by multinomial logistic regression (FoCal-style linear fusion).
* :class:`MeanFusion` — the mean over systems of the z-scores (``normalise="softmax"``: of the
  per-system class probabilities).
* :class:`MajorityVote` — each system votes for its top class; ties go to the class with the
  higher mean z-score.

Every statistic (standardisation, SVM, C) is fitted on development rows only; test-fold scores
and labels are used for nothing but the final prediction and its evaluation.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from .classify import C_PARAM, DEFAULT_C_GRID, decision_scores, make_svm
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
            difference = _describe_ids(set(ref_ids) - set(where), set(where) - set(ref_ids))
            raise StoreError(f"{name}: clip ids differ from {ref_name} ({difference}); "
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
        files = ", ".join(n for n, s in zip(names, systems) if s == dup)
        raise ConfigError(f"system {dup!r} is given twice ({files}); fuse each system once")
    return aligned


def read_aligned(paths: list[str | Path]) -> list[Scores]:
    """Read scores files and :func:`align_scores` them."""
    return align_scores([read_scores(p) for p in paths], list(paths))


def stack_scores(scores: list[Scores]) -> np.ndarray:
    """Aligned scores → ``X [N, S * C]`` float64, system-major column blocks."""
    return np.concatenate([s.scores.astype(np.float64) for s in scores], axis=1)


# --- fusion estimators ------------------------------------------------------------------------
NORMALISATIONS = ("none", "standard", "softmax")


def _softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class _BlockFusion(ClassifierMixin, BaseEstimator):
    """Shared part of the fusions: ``X [N, S*C]`` split into per-system blocks ``[N, S, C]``,
    each standardised with one mean and one standard deviation over its training entries
    (learnt in :meth:`fit`). ``n_classes`` fixes C (default: the classes present in ``y``)."""

    def _fit_blocks(self, X, y):
        X, y = check_X_y(X, y)
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.arange(self.n_classes) if self.n_classes is not None else np.unique(y)
        if X.shape[1] % len(self.classes_):
            raise ValueError(f"X has {X.shape[1]} columns, not a multiple of the {len(self.classes_)} classes "
                             "(expected S systems x C classes)")
        blocks = self._blocks(X)
        self.n_systems_ = blocks.shape[1]
        self.mean_ = blocks.mean(axis=(0, 2))
        scale = blocks.std(axis=(0, 2))
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return X, y

    def _blocks(self, X) -> np.ndarray:
        return X.reshape(len(X), -1, len(self.classes_))

    def _normalised(self, X, how: str = "standard") -> np.ndarray:
        """``[N, S, C]`` blocks: ``none`` as they are, ``standard`` z-scored per system,
        ``softmax`` z-scored then turned into class probabilities per system."""
        check_is_fitted(self)
        X = check_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} columns; this fusion was fitted on {self.n_features_in_}")
        if how == "none":
            return self._blocks(X)
        z = (self._blocks(X) - self.mean_[None, :, None]) / self.scale_[None, :, None]
        return _softmax(z) if how == "softmax" else z

    @staticmethod
    def _check_normalise(normalise: str) -> None:
        if normalise not in NORMALISATIONS:
            raise ConfigError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")

    def predict(self, X):
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


class MeanFusion(_BlockFusion):
    """Mean over systems of per-system normalised scores (see the module docstring).

    ``normalise``: ``standard`` (one z-score per system), ``softmax`` (z-score, then softmax
    over classes: averaged class probabilities) or ``none`` (raw scores, for systems already on
    one scale).
    """

    def __init__(self, normalise: str = "standard", n_classes: int | None = None):
        self.normalise = normalise
        self.n_classes = n_classes

    def fit(self, X, y, groups=None):  # noqa: ARG002 - groups accepted for a uniform fusion API
        self._check_normalise(self.normalise)
        self._fit_blocks(X, y)
        return self

    def decision_function(self, X) -> np.ndarray:
        return self._normalised(X, self.normalise).mean(axis=1)


class MajorityVote(_BlockFusion):
    """Each system votes for its highest-scoring class; the class with most votes wins.

    :meth:`decision_function` is the share of votes plus a tie-break below half a vote (the
    softmax of the mean standardised scores, times ``1 / (2 S)``), so its argmax is the vote
    winner and equal votes go to the class the systems score higher on average.
    """

    def __init__(self, n_classes: int | None = None):
        self.n_classes = n_classes

    def fit(self, X, y, groups=None):  # noqa: ARG002
        self._fit_blocks(X, y)
        return self

    def decision_function(self, X) -> np.ndarray:
        z = self._normalised(X, "standard")
        n_systems, n_classes = z.shape[1], z.shape[2]
        votes = np.zeros((len(z), n_classes))
        for s in range(n_systems):
            np.add.at(votes, (np.arange(len(z)), z[:, s].argmax(axis=1)), 1.0)
        return votes / n_systems + _softmax(z.mean(axis=1)) / (2 * n_systems)


class WeightedFusion(_BlockFusion):
    """Weighted sum of standardised scores, one weight per system and one offset per class,
    fitted as a multinomial logistic regression (the linear logistic-regression fusion of
    Brümmer's FoCal toolkit for speaker and language recognition)::

        logit[n, k] = sum_s  w_s * z[n, s, k]  +  b_k

    With S + C parameters it cannot overfit the way a model with a weight per system and class
    can, and it is unaffected by each system's scale: a weak system gets a small weight. ``l2``
    penalises ``sum_s w_s**2`` (scores are standardised, so one value suits all data sets).
    Fitted attributes: ``weights_`` [S], ``offsets_`` [C].
    """

    def __init__(self, l2: float = 1e-3, n_classes: int | None = None):
        self.l2 = l2
        self.n_classes = n_classes

    def fit(self, X, y, groups=None):  # noqa: ARG002
        from scipy.optimize import minimize
        from scipy.special import log_softmax, softmax

        X, y = self._fit_blocks(X, y)
        z = self._normalised(X, "standard")
        n, n_systems, n_classes = z.shape
        onehot = (y[:, None] == self.classes_[None, :]).astype(np.float64)

        def loss(p):
            w, b = p[:n_systems], p[n_systems:]
            logits = np.einsum("nsc,s->nc", z, w) + b
            value = -(onehot * log_softmax(logits, axis=1)).sum() / n + self.l2 * (w @ w)
            residual = (softmax(logits, axis=1) - onehot) / n
            grad = np.concatenate([np.einsum("nsc,nc->s", z, residual) + 2 * self.l2 * w, residual.sum(axis=0)])
            return value, grad

        start = np.concatenate([np.ones(n_systems), np.zeros(n_classes)])
        result = minimize(loss, start, jac=True, method="L-BFGS-B")
        self.weights_, self.offsets_ = result.x[:n_systems], result.x[n_systems:]
        self.n_iter_ = int(result.nit)
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.einsum("nsc,s->nc", self._normalised(X, "standard"), self.weights_) + self.offsets_


def _decision_accuracy(estimator, X, y) -> float:
    """Accuracy of the argmax of the decision scores, the prediction every stage reports (for
    ``SVC`` it can differ from ``predict``, which breaks one-vs-one vote ties by class order)."""
    scores = decision_scores(estimator, X, int(np.max(estimator.classes_)) + 1)
    return float(np.mean(scores.argmax(axis=1) == y))


class StackingFusion(_BlockFusion):
    """Stacking: the linear SVM of ``deepfeat svm`` (:func:`deepfeat.classify.make_svm`:
    standardisation, then a linear SVM) on the concatenated scores of all systems, its C chosen
    from ``Cs`` by cross-validation over the folds passed as ``groups`` to :meth:`fit` (one
    fold held out at a time; stratified 4-fold when no groups are given).

    ``normalise`` maps each system's block before concatenation: ``softmax`` (default) gives the
    SVM class probabilities per system, the meta-features stacking works best with (Ting &
    Witten, 1999), whatever the systems' score scales; ``standard`` z-scores each block;
    ``none`` concatenates the raw scores. On ESC-10 (test fold 5; BirdNET, DenseNet121
    untrained and EfficientNet-Lite0 SVM scores) devel accuracy was 90.6 % with ``softmax``
    and 86.9 % with ``none``.

    The choice of C follows :func:`deepfeat.classify.evaluate_fold`: the C with the highest
    mean accuracy over the held-out folds, the smallest C on ties. Fitted attributes:
    ``model_`` (the pipeline refitted on all rows with ``best_C_``), ``best_score_`` (its mean
    CV accuracy) and ``cv_results_`` (per C: mean, std and per-fold accuracy); with a single C
    there is no cross-validation and the last two are None.
    """

    def __init__(self, Cs=DEFAULT_C_GRID, normalise: str = "softmax", kind: str = "svc",
                 class_weight: str | None = None, n_classes: int | None = None, n_jobs: int | None = None):
        self.Cs = Cs
        self.normalise = normalise
        self.kind = kind
        self.class_weight = class_weight
        self.n_classes = n_classes
        self.n_jobs = n_jobs

    def _features(self, X) -> np.ndarray:
        blocks = self._normalised(X, self.normalise)
        return blocks.reshape(len(blocks), -1)

    def fit(self, X, y, groups=None):
        from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut, StratifiedKFold

        self._check_normalise(self.normalise)
        X, y = self._fit_blocks(X, y)
        grid = sorted({float(c) for c in self.Cs})
        if not grid or grid[0] <= 0:
            raise ConfigError(f"the stacking C grid needs positive values, got {self.Cs!r}")
        if len(grid) == 1:  # nothing to choose: no cross-validation
            self.best_C_, self.best_score_, self.cv_results_ = grid[0], None, None
            self.model_ = make_svm(grid[0], kind=self.kind, class_weight=self.class_weight).fit(self._features(X), y)
            return self
        cv = LeaveOneGroupOut() if groups is not None else StratifiedKFold(4)
        search = GridSearchCV(make_svm(kind=self.kind, class_weight=self.class_weight), {C_PARAM: grid},
                              scoring=_decision_accuracy, cv=cv, n_jobs=self.n_jobs, refit=True)
        search.fit(self._features(X), y, groups=groups)
        res = search.cv_results_
        self.cv_results_ = [{"C": c, "accuracy": float(res["mean_test_score"][i]),
                             "accuracy_std": float(res["std_test_score"][i]),
                             "fold_accuracy": [float(res[f"split{k}_test_score"][i]) for k in range(search.n_splits_)]}
                            for i, c in enumerate(grid)]
        # GridSearchCV keeps the first of equal scores: with the grid ascending, the smallest C.
        self.best_C_ = float(search.best_params_[C_PARAM])
        self.best_score_ = float(search.best_score_)
        self.model_ = search.best_estimator_
        return self

    def decision_function(self, X) -> np.ndarray:
        return decision_scores(self.model_, self._features(X), len(self.classes_))


METHODS: dict[str, type] = {"stacking": StackingFusion, "weighted": WeightedFusion, "mean": MeanFusion,
                            "vote": MajorityVote}


def make_fusion(method: str, n_classes: int | None = None, **params):
    """A fresh fusion estimator by name (``stacking``, ``mean``, ``vote``)."""
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method](n_classes=n_classes, **params)


def fusion_params(method: str, params: dict | None = None) -> dict:
    """Every parameter of the ``method`` fusion that shapes its result, defaults filled in
    (``n_classes`` comes from the data, ``n_jobs`` changes only speed)."""
    full = make_fusion(method, **(params or {})).get_params()
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(full.items())
            if k not in ("n_classes", "n_jobs")}


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


#: The paper's fusion groups (and "pretrained"): name → (description, which systems belong).
GROUPS: dict[str, tuple[str, object]] = {
    "imagenet": ("all ImageNet-pretrained image CNNs", lambda i: i.family == "image" and i.weights == "imagenet"),
    "untrained": ("all randomly initialised image CNNs", lambda i: i.family == "image" and i.weights == "none"),
    "image": ("all image CNNs", lambda i: i.family == "image"),
    "crnn+image": ("CRNN + all image CNNs", lambda i: i.family in ("crnn", "image")),
    "image+audio": ("all image CNNs + audio models", lambda i: i.family in ("image", "audio")),
    # beyond the paper's groups: every pre-trained system, leaving out the untrained CNNs
    "pretrained": ("ImageNet-pretrained image CNNs + audio models",
                   lambda i: (i.family == "image" and i.weights == "imagenet") or i.family == "audio"),
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


def select_group(sources: str | Path | list[str | Path], group: str, test_fold: int | None = None) -> list[Path]:
    """The scores files of the systems in ``group`` (and of ``test_fold``) among ``sources``:
    results folders (searched recursively) and scores files."""
    if group not in GROUPS:
        raise ConfigError(f"unknown fusion group {group!r}; choose one of {', '.join(GROUPS)}")
    sources = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(p) for p in sources]
    candidates = [p for src in sources for p in (find_scores(src) if src.is_dir() else [src])]
    member = GROUPS[group][1]
    by_system: dict[str, Path] = {}
    # a run's own folder before deeper ones (its --cv fold-k/ folders)
    for path in sorted(dict.fromkeys(candidates), key=lambda p: (len(p.parts), p)):
        s = read_scores(path)
        if (test_fold is None or s.test_fold == test_fold) and member(system_info(s)):
            kept = by_system.setdefault(s.system, path)
            if kept != path:
                log.warning("%s: another scores file of %s for this test fold; using %s", path, s.system, kept)
    chosen = sorted(by_system.values())
    if len(chosen) < 2:
        where = ", ".join(str(s) for s in sources)
        raise ConfigError(f"{where}: fusion group {group!r} ({GROUPS[group][0]}) needs at least two systems' "
                          f"scores{'' if test_fold is None else f' for test fold {test_fold}'}, found {len(chosen)}; "
                          "run the missing `deepfeat svm` / `deepfeat crnn` first")
    return chosen


# --- running a fusion under the fold protocol -------------------------------------------------
def dataset_name(scores: Scores) -> str | None:
    """The dataset a scores file was made from, as its config records it (svm: the store's
    ``dataset.name``; crnn and fuse: ``dataset``)."""

    def find(config):
        if isinstance(config, dict):
            value = config.get("dataset")
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("name"), str):
                return value["name"]
            for sub in config.values():
                found = find(sub)
                if found:
                    return found
        return None

    return find(scores.config)


def fused_system_name(method: str, systems: list[str], group: str | None = None) -> str:
    """``fusion-<group>-<method>`` for a named group, else ``fusion-<method>-<systems joined by +>``
    (``svm-`` prefixes dropped; a short hash when that is longer than 80 characters)."""
    if group:
        return f"fusion-{group}-{method}"
    joined = "+".join(sorted(s.removeprefix("svm-") for s in systems))
    if len(joined) > 80:
        import hashlib

        joined = f"{len(systems)}systems-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"
    return f"fusion-{method}-{joined}"


def fusion_config(paths: list[str | Path], systems: list[str], method: str, params: dict | None = None,
                  group: str | None = None) -> dict:
    """What identifies a fusion run: method, its parameters, group and each input's system and
    file checksum (a re-run of an input system changes it). Stored in the fused scores and in
    ``metrics.json["fusion"]``; the experiment driver compares it to skip finished runs."""
    from .weights import file_sha256

    return {"method": method, "params": fusion_params(method, params), "group": group,
            "inputs": [{"system": s, "path": str(p), "sha256": file_sha256(p)} for p, s in zip(paths, systems)]}


@dataclass
class FusionResult:
    """A fusion's outcome on one test fold (the same pieces as :class:`deepfeat.classify.FoldResult`)."""

    metrics: dict
    scores: Scores
    model: object
    y_true_test: np.ndarray
    y_pred_test: np.ndarray


def evaluate_fusion(inputs: list[Scores], method: str = "stacking", *, params: dict | None = None,
                    system: str | None = None, config: dict | None = None) -> FusionResult:
    """Fuse aligned scores (:func:`align_scores`) on their test fold.

    The fusion model is fitted on the development rows (the systems' out-of-fold scores) with
    their folds as CV groups and scores the test rows. Development rows of the fused scores are
    out-of-fold too: for each development fold, the fusion fitted on the other development folds
    (stacking: with the chosen C, so these are the CV models its C was chosen by). The devel
    scores are the means over development folds, as in ``deepfeat svm``.
    """
    from .evaluation import SCORE_NAMES, classification_metrics, development_folds

    t0 = time.perf_counter()
    ref = inputs[0]
    names = list(ref.label_names)
    n_classes = len(names)
    X, y, folds = stack_scores(inputs), ref.labels, ref.folds
    if (y < 0).any() or (y >= n_classes).any():
        raise StoreError(f"{ref.system}: {int(((y < 0) | (y >= n_classes)).sum())} clips have no valid label; "
                         "fusion is trained and scored on labelled clips")
    if not np.all(np.isfinite(X)):
        bad = [s.system for s in inputs if not np.all(np.isfinite(s.scores))]
        raise StoreError(f"{', '.join(bad)}: scores hold NaN/inf; re-run those systems")
    dev_folds = development_folds(folds, ref.test_fold, source=ref.system)
    dev, test = np.isin(folds, dev_folds), folds == ref.test_fold
    params = dict(params or {})
    estimator = make_fusion(method, n_classes=n_classes, **params)

    model = clone(estimator).fit(X[dev], y[dev], groups=folds[dev])
    oof_estimator = clone(estimator)
    if isinstance(model, StackingFusion):
        oof_estimator.set_params(Cs=(model.best_C_,))
    fused = np.full((len(X), n_classes), np.nan)
    for k in dev_folds:
        train, held = dev & (folds != k), folds == k
        fold_model = clone(oof_estimator).fit(X[train], y[train], groups=folds[train])
        fused[held] = decision_scores(fold_model, X[held], n_classes)
    fused[test] = decision_scores(model, X[test], n_classes)
    seconds = time.perf_counter() - t0

    predictions = fused.argmax(axis=1)
    per_fold = [classification_metrics(y[folds == k], predictions[folds == k], names) for k in dev_folds]
    devel = {name: float(np.mean([m[name] for m in per_fold])) for name in SCORE_NAMES}
    test_metrics = classification_metrics(y[test], predictions[test], names)
    systems = [s.system for s in inputs]
    system = system or fused_system_name(method, systems)
    stacking = isinstance(model, StackingFusion)
    metrics = {
        "dataset": dataset_name(ref), "systems": systems, "method": method,
        "test_fold": int(ref.test_fold), "development_folds": dev_folds,
        "folds": sorted(int(f) for f in np.unique(folds)), "best_C": model.best_C_ if stacking else None,
        **{f"devel_{k}": v for k, v in devel.items()}, **{f"test_{k}": v for k, v in test_metrics.items() if k != "n"},
        "devel_fold_accuracy": {int(k): m["accuracy"] for k, m in zip(dev_folds, per_fold)},
        "cv": model.cv_results_ if stacking else None, "estimator": repr(model.model_ if stacking else model),
        "n_features": int(X.shape[1]), "n_classes": n_classes,
        "n_devel": int(dev.sum()), "n_test": int(test.sum()),
        "system_weights": dict(zip(systems, model.weights_.tolist())) if isinstance(model, WeightedFusion) else None,
        "fusion": config or {"method": method, "params": fusion_params(method, params), "group": None,
                             "inputs": [{"system": s} for s in systems]},
        "timings": {"fusion_seconds": seconds},
    }
    scores = Scores(system=system, ids=ref.ids, folds=folds, labels=y, label_names=names,
                    scores=fused.astype(np.float32), test_fold=ref.test_fold, score_kind="decision_function",
                    config={"fusion": metrics["fusion"], "dataset": metrics["dataset"]})
    return FusionResult(metrics, scores, model, y[test], predictions[test])


def run_fusion(paths: list[str | Path], *, method: str = "stacking", fold: int | None = 5,
               run_dir: str | Path | None = None, group: str | None = None, results_dir: str | Path | None = None,
               system: str | None = None, params: dict | None = None) -> dict:
    """``deepfeat fuse``: read and align the scores files, fuse with ``method``, write the run
    directory (:func:`deepfeat.evaluation.write_run`) and return its metrics.

    ``run_dir`` defaults to ``RESULTS_DIR/<system>`` when ``results_dir`` is given (``--group``),
    else ``results/<dataset>/<system>``.
    """
    from .evaluation import default_run_dir, write_run

    t0 = time.perf_counter()
    paths = [Path(p) for p in paths]
    inputs = read_aligned(paths)
    if fold is not None and inputs[0].test_fold != fold:
        raise ConfigError(f"{paths[0]}: holds scores for test fold {inputs[0].test_fold}, not --fold {fold}; "
                          f"pass --fold {inputs[0].test_fold} or fuse runs made with --fold {fold}")
    systems = [s.system for s in inputs]
    if len(inputs) < 2:
        log.warning("fusing a single system (%s): the fusion only re-learns its scores", systems[0])
    params = dict(params or {})
    system = system or fused_system_name(method, systems, group)
    config = fusion_config(paths, systems, method, params, group)
    result = evaluate_fusion(inputs, method, params=params, system=system, config=config)
    if run_dir is None:
        run_dir = Path(results_dir) / system if results_dir is not None else default_run_dir(
            result.metrics["dataset"] or "", system)
    run_dir = Path(run_dir)
    metrics = result.metrics
    metrics["timings"]["total_seconds"] = time.perf_counter() - t0
    write_run(run_dir, system=system, metrics=metrics, scores=result.scores, y_true_test=result.y_true_test,
              y_pred_test=result.y_pred_test, label_names=result.scores.label_names, model=result.model)
    return {"system": system, **metrics, "run_dir": str(run_dir)}
