"""Fusion methods as scikit-learn classifiers on stacked class scores ``X [N, S * C]``
(S systems, C classes; columns ``s*C .. s*C + C - 1`` are system ``s``).

All first standardise each system with one affine z-score (one mean and one standard deviation
over all its training entries), so each system keeps its own ranking of classes and no system
dominates by its scale:

* :class:`StackingFusion` — the tuned linear SVM of ``deepfeat svm`` (:class:`~deepfeat.svm.TunedSVM`)
  on the concatenated per-system class probabilities (softmax of the z-scores; ``normalise``
  chooses), C tuned by cross-validation over the groups (development folds).
* :class:`WeightedFusion` — a weighted sum of the z-scores with one weight per system and one
  offset per class, fitted by multinomial logistic regression (FoCal-style linear fusion).
* :class:`MeanFusion` — the mean over systems of the z-scores (``normalise="softmax"``: of the
  per-system class probabilities).
* :class:`MajorityVote` — each system votes for its top class; ties go to the class with the
  higher mean z-score.

``classes`` names the C score columns of each system (the dataset's label names); without it
the classes are those present in ``y``. ``classes_`` are class labels (names), as scikit-learn's.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ConfigError
from ..svm import DEFAULT_C_GRID, TunedSVM

NORMALISATIONS = ("none", "standard", "softmax")


def _softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class _BlockFusion(ClassifierMixin, BaseEstimator):
    """Shared part of the fusions: ``X [N, S*C]`` split into per-system blocks ``[N, S, C]``,
    each standardised with one mean and one standard deviation over its training entries
    (learnt in :meth:`_fit_blocks`)."""

    def _fit_blocks(self, X, y):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_ = np.unique(y) if self.classes is None else np.asarray(self.classes)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y holds classes not in `classes`: {', '.join(map(str, unknown[:3]))}")
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes, got {len(self.classes_)} class")
        if X.shape[1] % len(self.classes_):
            raise ValueError(f"X has {X.shape[1]} feature(s), not a multiple of the {len(self.classes_)} classes "
                             "(expected S systems x C classes: one score per system and class)")
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
        X = validate_data(self, X, reset=False)
        if how == "none":
            return self._blocks(X)
        z = (self._blocks(X) - self.mean_[None, :, None]) / self.scale_[None, :, None]
        return _softmax(z) if how == "softmax" else z

    @staticmethod
    def _check_normalise(normalise: str) -> None:
        if normalise not in NORMALISATIONS:
            raise ConfigError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")

    def decision_function(self, X) -> np.ndarray:
        """Fused scores [N, C] ([N] for two classes: the second class's score minus the first's)."""
        scores = self._fused(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X):
        """The class with the highest fused score."""
        scores = self._fused(X)
        return self.classes_[np.argmax(scores, axis=1)]


class MeanFusion(_BlockFusion):
    """Mean over systems of per-system normalised scores (see the module docstring).

    ``normalise``: ``standard`` (one z-score per system), ``softmax`` (z-score, then softmax
    over classes: averaged class probabilities) or ``none`` (raw scores, for systems already on
    one scale).
    """

    def __init__(self, normalise: str = "standard", classes=None):
        self.normalise = normalise
        self.classes = classes

    def fit(self, X, y):
        self._check_normalise(self.normalise)
        self._fit_blocks(X, y)
        return self

    def _fused(self, X) -> np.ndarray:
        return self._normalised(X, self.normalise).mean(axis=1)


class MajorityVote(_BlockFusion):
    """Each system votes for its highest-scoring class; the class with most votes wins.

    :meth:`decision_function` is the share of votes plus a tie-break below half a vote (the
    softmax of the mean standardised scores, times ``1 / (2 S)``), so its argmax is the vote
    winner and equal votes go to the class the systems score higher on average.
    """

    def __init__(self, classes=None):
        self.classes = classes

    def fit(self, X, y):
        self._fit_blocks(X, y)
        return self

    def _fused(self, X) -> np.ndarray:
        """Vote shares plus the tie-break [N, C]."""
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

    def __init__(self, l2: float = 1e-3, classes=None):
        self.l2 = l2
        self.classes = classes

    def fit(self, X, y):
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
        self.summary_ = {"system_weights": self.weights_.tolist()}
        return self

    def _fused(self, X) -> np.ndarray:
        """Fused logits [N, C]."""
        return np.einsum("nsc,s->nc", self._normalised(X, "standard"), self.weights_) + self.offsets_


class StackingFusion(_BlockFusion):
    """Stacking: the tuned linear SVM of ``deepfeat svm`` (:class:`~deepfeat.svm.TunedSVM`:
    standardisation, a linear SVM, C chosen from ``Cs`` by cross-validation over the ``groups``
    passed to :meth:`fit`, one held out at a time; stratified 4-fold without groups) on the
    concatenated scores of all systems.

    ``normalise`` maps each system's block before concatenation: ``softmax`` (default) gives the
    SVM class probabilities per system, the meta-features stacking works best with (Ting &
    Witten, 1999), whatever the systems' score scales; ``standard`` z-scores each block;
    ``none`` concatenates the raw scores. Fitted attributes: ``svm_`` (the :class:`TunedSVM`),
    ``best_C_``, ``best_params_`` and ``cv_results_`` (its choice of C).
    """

    def __init__(self, Cs=DEFAULT_C_GRID, normalise: str = "softmax", kind: str = "svc",
                 class_weight: str | None = None, select_metric: str = "accuracy", classes=None,
                 n_jobs: int | None = None):
        self.Cs, self.normalise, self.kind, self.class_weight = Cs, normalise, kind, class_weight
        self.select_metric, self.classes, self.n_jobs = select_metric, classes, n_jobs

    def _features(self, X) -> np.ndarray:
        blocks = self._normalised(X, self.normalise)
        return blocks.reshape(len(blocks), -1)

    def fit(self, X, y, groups=None):
        self._check_normalise(self.normalise)
        X, y = self._fit_blocks(X, y)
        self.svm_ = TunedSVM(Cs=self.Cs, kind=self.kind, class_weight=self.class_weight,
                             select_metric=self.select_metric, n_jobs=self.n_jobs)
        self.svm_.fit(self._features(X), y, groups=groups)
        self.best_C_, self.cv_results_ = self.svm_.best_C_, self.svm_.cv_results_
        self.best_params_ = {"Cs": (self.best_C_,)}
        self.summary_ = {"best_C": self.best_C_, "cv": self.cv_results_, "select_metric": self.select_metric}
        return self

    def _fused(self, X) -> np.ndarray:
        """The SVM's decision scores [N, C] (classes absent from training: each row's minimum - 1)."""
        from ..protocol import class_scores

        features = self._features(X)
        return class_scores(self.svm_, features, self.classes_)


METHODS: dict[str, type] = {"stacking": StackingFusion, "weighted": WeightedFusion, "mean": MeanFusion,
                            "vote": MajorityVote}


def make_fusion(method: str, classes=None, **params):
    """A fresh fusion estimator by name (a key of :data:`METHODS`)."""
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method](classes=classes, **params)


def fusion_params(method: str, params: dict | None = None) -> dict:
    """Every parameter of the ``method`` fusion that shapes its result, defaults filled in
    (``classes`` comes from the data, ``n_jobs`` changes only speed)."""
    full = make_fusion(method, **(params or {})).get_params()
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(full.items())
            if k not in ("classes", "n_jobs")}
