"""The linear SVM of ``deepfeat svm`` and of stacking fusion, as one scikit-learn classifier:
:class:`TunedSVM` standardises, fits a linear SVM and chooses its complexity ``C`` from a log grid
by cross-validation over the groups it is given (the development folds: one held out at a time).

Implementation (``kind``): ``svc`` by default, a linear-kernel ``SVC`` (libsvm, one-vs-one,
per-class scores from ``decision_function_shape="ovr"``) fed a precomputed linear kernel
(:class:`LinearKernel`): each training split's kernel is one BLAS product shared by the whole C
grid, which makes the grid search several times faster than ``LinearSVC`` or
``SVC(kernel="linear")`` on stores of a few thousand rows (``make bench`` measures it).
``linearsvc`` (liblinear, one-vs-rest) scales to more rows: the kernel grows with rows squared,
so stores with more than :data:`MAX_KERNEL_ROWS` rows need it.

Predictions are the argmax of the per-class decision scores (for ``SVC`` the same as
``break_ties=True``): ``predict`` of a saved model equals the predictions a run reports.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import ConfigError
from .evaluation import SCORE_NAMES, classification_metrics

#: Log grid of the SVM complexity C: 1e-5 … 1e1, one value per decade.
DEFAULT_C_GRID = tuple(float(10.0 ** e) for e in range(-5, 2))
SVM_KINDS = ("svc", "linearsvc")
#: Most training rows for ``svc``: its float64 kernel matrices (rows² × 8 bytes each, one per
#: parallel fit) must fit in memory.
MAX_KERNEL_ROWS = 12000


class LinearKernel(TransformerMixin, BaseEstimator):
    """Transformer ``X → X @ X_fit.T``: the linear kernel against the training rows, in float64
    as libsvm computes it, for ``SVC(kernel="precomputed")``. Equivalent to
    ``SVC(kernel="linear")``, but the kernel is one BLAS product, computed once per training set
    and shared by every C of a grid."""

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.X_fit_ = X  # kept in its own dtype (float32 from the store): half the model size
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return np.asarray(X, dtype=np.float64) @ self.X_fit_.astype(np.float64, copy=False).T


def make_svm(C: float = 1.0, kind: str = "svc", class_weight: str | None = None, random_state: int = 0):
    """Standardisation then a linear SVM, as a scikit-learn pipeline whose last step is ``svm``.

    ``kind``: ``svc``: ``StandardScaler → LinearKernel → SVC(kernel="precomputed")``;
    ``linearsvc``: ``StandardScaler → LinearSVC`` (squared hinge). ``class_weight``: None or
    ``balanced``.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    if class_weight not in (None, "balanced") and not isinstance(class_weight, dict):
        raise ConfigError(f"class_weight must be None, 'balanced' or a dict class → weight, got {class_weight!r}")
    if kind == "svc":
        return Pipeline([("scale", StandardScaler()), ("kernel", LinearKernel()),
                         ("svm", SVC(kernel="precomputed", C=C, class_weight=class_weight,
                                     decision_function_shape="ovr"))])
    if kind == "linearsvc":
        return Pipeline([("scale", StandardScaler()),
                         ("svm", LinearSVC(C=C, class_weight=class_weight, max_iter=10000, random_state=random_state))])
    raise ConfigError(f"unknown SVM kind {kind!r}; choose one of {', '.join(SVM_KINDS)}")


def parse_c_grid(text: str) -> tuple[float, ...]:
    """``"1e-5,1e-4,0.01"`` → sorted unique positive floats; :class:`ConfigError` otherwise."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ConfigError(f"C grid must be comma-separated numbers such as 1e-5,1e-4,1e-3, got {text!r}") from None
    return check_c_grid(values)


def check_c_grid(values) -> tuple[float, ...]:
    """Sorted unique C values, all positive and finite; :class:`ConfigError` otherwise."""
    grid = sorted({float(c) for c in np.atleast_1d(values)})
    if not grid or grid[0] <= 0 or not np.all(np.isfinite(grid)):
        raise ConfigError(f"the C grid needs positive finite values, got {values!r}")
    return tuple(grid)


def check_metric(name: str) -> str:
    if name not in SCORE_NAMES:
        raise ConfigError(f"unknown selection metric {name!r}; choose one of {', '.join(SCORE_NAMES)}")
    return name


def scores_by_class(raw: np.ndarray) -> np.ndarray:
    """Decision scores as [N, C]: a binary model's single score s becomes (-s, s)."""
    raw = np.asarray(raw, dtype=np.float64)
    return np.stack([-raw, raw], axis=1) if raw.ndim == 1 else raw


def _not_converged(model) -> bool:
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    max_iter, n_iter = getattr(est, "max_iter", -1), getattr(est, "n_iter_", None)
    return max_iter is not None and max_iter > 0 and n_iter is not None and np.max(n_iter) >= max_iter


def _split_decisions(pipeline, grid, X, y, train, test):
    """For each C in ``grid``: fit ``pipeline`` with that C on rows ``train``, score rows ``test``.
    Returns ([decision scores [len(test), n_classes] per C], number of fits that did not converge),
    ``y`` being class indices 0 … n_classes - 1.

    The pipeline's first steps (scaler, kernel) are fitted once on ``train`` and shared by all C."""
    from sklearn.pipeline import Pipeline

    from .protocol import class_scores

    head = Pipeline(clone(pipeline).steps[:-1])
    X_train, X_test = head.fit_transform(X[train], y[train]), head.transform(X[test])
    out, not_converged = [], 0
    for c in grid:
        model = clone(pipeline.steps[-1][1]).set_params(C=c).fit(X_train, y[train])
        out.append(class_scores(model, X_test, range(int(y.max()) + 1)))
        not_converged += _not_converged(model)
    return out, not_converged


def indexed_class_weight(class_weight, classes):
    """``class_weight`` with a dict's class labels replaced by their index in ``classes``."""
    if not isinstance(class_weight, dict):
        return class_weight
    index = {str(c): i for i, c in enumerate(classes)}
    return {index[str(k)]: v for k, v in class_weight.items() if str(k) in index}


def cv_splits(y: np.ndarray, groups, cv: int, who: str = "the SVM") -> tuple[list, np.ndarray]:
    """Cross-validation splits ``[(train rows, held-out rows), ...]`` and each row's held-out split [N]:
    one group held out at a time, or stratified ``cv``-fold without ``groups``."""
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

    if groups is not None:
        groups = np.asarray(groups)
        if np.unique(groups).size < 2:
            raise ValueError(f"{who}: cross-validation needs at least 2 groups (development folds)")
        return list(LeaveOneGroupOut().split(np.zeros(len(y)), y, groups)), groups
    splits = list(StratifiedKFold(cv).split(np.zeros(len(y)), y))
    split_of = np.empty(len(y), dtype=np.int64)
    for i, (_, held) in enumerate(splits):
        split_of[held] = i
    return splits, split_of


def grid_table(grid, row_scores: list[np.ndarray], y: np.ndarray, split_of: np.ndarray, clips, metric: str
               ) -> tuple[float, list[dict]]:
    """The C of ``grid`` whose held-out decision scores ``row_scores[i]`` [N, n_classes] score best,
    and the table of every C: mean, std and per-split ``metric``. Scores are pooled per clip
    (``clips`` [N], optional) before the metric; ties go to the smaller C. ``y``: class indices."""
    from .protocol import make_units, pool_scores

    units = make_units(np.arange(len(y)).astype(str) if clips is None else clips, y, split_of)
    names = [str(c) for c in range(row_scores[0].shape[1])]
    table = []
    for c, scores in zip(grid, row_scores):
        pooled = pool_scores(scores, units.row_unit, len(units)).argmax(axis=1)
        values = [classification_metrics(units.labels[m], pooled[m], names)[metric]
                  for m in (units.folds == g for g in np.unique(units.folds))]
        table.append({"C": c, metric: float(np.mean(values)), f"{metric}_std": float(np.std(values)),
                      f"fold_{metric}": values})
    return max(table, key=lambda r: (r[metric], -r["C"]))["C"], table


class TunedSVM(ClassifierMixin, BaseEstimator):
    """Standardisation + linear SVM whose ``C`` is chosen from ``Cs`` by cross-validation.

    Parameters
    ----------
    Cs : sequence of float
        The C grid (default 1e-5 … 1e1, one per decade). A single value: no cross-validation.
    kind : {"svc", "linearsvc"}
        SVM implementation (module docstring).
    class_weight : None, "balanced" or dict
        Per-class weights of the SVM's C (a dict maps class labels to weights).
    select_metric : {"accuracy", "macro_f1", "uar"}
        What the cross-validation maximises (mean over held-out groups); ties go to the smaller C.
    cv : int
        Stratified folds when ``fit`` gets no ``groups``.
    n_jobs : int or None
        Parallel splits (threads: libsvm and liblinear release the GIL).

    Attributes
    ----------
    classes_ : ndarray
        Class labels (e.g. class names), sorted.
    best_C_ : float
    best_params_ : dict
        ``{"Cs": (best_C_,)}``: the parameters that refit this model without tuning.
    cv_results_ : list of dict or None
        Per C: mean, std and per-split value of ``select_metric``.
    model_ : sklearn.pipeline.Pipeline
        Refitted on all rows with ``best_C_``.
    summary_ : dict
        What the fold protocol records in metrics.json.
    """

    def __init__(self, Cs=DEFAULT_C_GRID, kind: str = "svc", class_weight: str | None = None,
                 select_metric: str = "accuracy", cv: int = 4, n_jobs: int | None = None):
        self.Cs, self.kind, self.class_weight = Cs, kind, class_weight
        self.select_metric, self.cv, self.n_jobs = select_metric, cv, n_jobs

    def fit(self, X, y, groups=None, clips=None):
        """Choose C over the splits given by ``groups`` (one group held out at a time; stratified
        ``cv``-fold without groups), then refit on all rows.

        ``clips`` [N] (optional): each row's clip; a split's scores are then averaged over each
        clip's rows before ``select_metric`` is computed, so C is chosen on the unit reported."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"TunedSVM needs at least 2 classes in y, got 1 class ({self.classes_[0]!r})")
        class_weight = indexed_class_weight(self.class_weight, self.classes_)  # the pipeline is fitted on indices
        grid = check_c_grid(self.Cs)
        check_metric(self.select_metric)
        pipeline = make_svm(kind=self.kind, class_weight=class_weight)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # counted in summary_ instead
            best, self.cv_results_, not_converged = (grid[0], None, 0) if len(grid) == 1 else \
                self._search(pipeline, grid, X, y_index, groups, clips)
            self.model_ = clone(pipeline).set_params(svm__C=best).fit(X, y_index)
        self.best_C_ = best
        self.best_params_ = {"Cs": (best,)}
        self.summary_ = {"best_C": best, "c_grid": list(grid), "select_metric": self.select_metric,
                         "pipeline": repr(self.model_),
                         "cv": self.cv_results_, "not_converged_fits": not_converged + int(_not_converged(self.model_))}
        return self

    def _search(self, pipeline, grid, X, y, groups, clips):
        """(best C, CV table, fits that did not converge) of the grid search."""
        from joblib import Parallel, delayed

        splits, split_of = cv_splits(y, groups, self.cv, type(self).__name__)
        outputs = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(_split_decisions)(pipeline, grid, X, y, train, held) for train, held in splits)
        row_scores = [np.full((len(y), len(self.classes_)), np.nan) for _ in grid]
        for (_, held), (split_scores, _) in zip(splits, outputs):
            for i in range(len(grid)):
                row_scores[i][held] = split_scores[i]
        best, table = grid_table(grid, row_scores, y, split_of, clips, self.select_metric)
        return best, table, sum(o[1] for o in outputs)

    def decision_function(self, X):
        """Per-class decision scores [N, n_classes] ([N] for two classes, positive → ``classes_[1]``)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self.model_.decision_function(X)

    def predict(self, X):
        """The class with the highest decision score."""
        scores = scores_by_class(self.decision_function(X))
        return self.classes_[scores.argmax(axis=1)]
