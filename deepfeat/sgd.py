"""A linear SVM for feature stores larger than memory: ``deepfeat svm --svm sgd``.

:class:`StreamingSVM` standardises its rows and fits a linear SVM (hinge loss, L2 penalty,
one-vs-rest) by stochastic gradient descent — scikit-learn's ``SGDClassifier.partial_fit`` —
reading the rows block by block. ``X`` is an array or a lazy
:class:`~deepfeat.rows.StoreRows` view, which the fold protocol indexes without reading
anything. Like :class:`~deepfeat.svm.TunedSVM` it chooses C from a grid by cross-validation over
the groups it is given (the development folds, one held out at a time).

Passes over ``X`` in one fit: one for the standardisation statistics of every training set (each
split's and the whole set's); ``epochs`` passes training the models of every (split, C) pair
together; one scoring the held-out rows; ``epochs`` passes refitting on every row with the chosen
C. Each epoch visits the store's chunks in a new random order and shuffles the rows of each block.
C maps onto the SGD penalty as ``alpha = 1 / (C n)`` for n training rows: the objective
``C Σ hinge + ½‖w‖²`` of the other SVM kinds, divided by ``C n``.

Memory: one block of ``block_rows`` rows (float32, and its standardised copy) and the models
(classes × features each), whatever the number of rows; the held-out decision scores of the grid
search (rows × classes per C) and the labels are the only arrays that grow with the rows.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d, validate_data

from .errors import ConfigError
from .rows import BLOCK_ROWS, StoreRows
from .svm import DEFAULT_C_GRID, check_c_grid, check_metric, cv_splits, grid_table, indexed_class_weight, scores_by_class


def blocks(X, block_rows: int, rng: np.random.Generator | None = None):
    """``(positions, rows)`` of ``X`` (an array or a :class:`StoreRows` view), at most about
    ``block_rows`` rows at a time; with ``rng`` in a random order (an SGD epoch)."""
    if isinstance(X, StoreRows):
        yield from X.blocks(block_rows, rng)
        return
    order = rng.permutation(len(X)) if rng is not None else np.arange(len(X))
    for start in range(0, len(X), block_rows):
        positions = order[start:start + block_rows]
        yield positions, X[positions]


class StreamingSVM(ClassifierMixin, BaseEstimator):
    """Standardisation + linear SVM trained by SGD over blocks of rows; ``C`` chosen from ``Cs`` by
    cross-validation (module docstring).

    Parameters
    ----------
    Cs : sequence of float
        The C grid (default 1e-5 … 1e1, one per decade). A single value: no cross-validation.
    class_weight : None, "balanced" or dict
        Per-class weights of the hinge loss (a dict maps class labels to weights).
    select_metric : {"accuracy", "macro_f1", "uar"}
        What the cross-validation maximises; ties go to the smaller C.
    epochs : int
        Passes over the training rows per model.
    block_rows : int
        Rows read and fitted at a time: bounds the memory of a fit.
    cv : int
        Stratified folds when ``fit`` gets no ``groups``.
    n_jobs : int or None
        Threads over the one-vs-rest classes of each SGD model.
    random_state : int
        Seed of the block order and of SGD's shuffling.

    Attributes
    ----------
    classes_ : ndarray
    best_C_ : float
    best_params_ : dict
        ``{"Cs": (best_C_,)}``.
    cv_results_ : list of dict or None
        Per C: mean, std and per-split value of ``select_metric``.
    scaler_ : sklearn.preprocessing.StandardScaler
    model_ : sklearn.linear_model.SGDClassifier
        Fitted on class indices (0 … n_classes - 1) of standardised rows.
    summary_ : dict
        What the fold protocol records in metrics.json.
    """

    def __init__(self, Cs=DEFAULT_C_GRID, class_weight=None, select_metric: str = "accuracy", epochs: int = 10,
                 block_rows: int = BLOCK_ROWS, cv: int = 4, n_jobs: int | None = None, random_state: int = 0):
        self.Cs, self.class_weight, self.select_metric = Cs, class_weight, select_metric
        self.epochs, self.block_rows, self.cv = epochs, block_rows, cv
        self.n_jobs, self.random_state = n_jobs, random_state

    def fit(self, X, y, groups=None, clips=None):
        """Choose C over the splits given by ``groups`` (stratified ``cv``-fold without them), then
        refit on every row. ``clips`` [N] (optional): each row's clip; held-out scores are averaged
        per clip before ``select_metric`` is computed."""
        X, y = self._check_fit_input(X, y)
        check_classification_targets(y)
        self.classes_, y = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"StreamingSVM needs at least 2 classes in y, got 1 class ({self.classes_[0]!r})")
        grid, metric = check_c_grid(self.Cs), check_metric(self.select_metric)
        every = np.ones(len(y), dtype=bool)
        splits, split_of = cv_splits(y, groups, self.cv, type(self).__name__) if len(grid) > 1 else ([], None)
        trains = [np.isin(np.arange(len(y)), train) for train, _ in splits]
        scalers = self._scalers(X, [*trains, every])
        best, self.cv_results_ = grid[0], None
        if splits:
            members = [(train, scaler, [self._sgd(c, y[train]) for c in grid]) for train, scaler in zip(trains, scalers)]
            self._train(X, y, members)
            best, self.cv_results_ = grid_table(grid, self._held_out_scores(X, members, len(grid)), y, split_of,
                                                clips, metric)
        self.scaler_, self.model_ = scalers[-1], self._sgd(best, y)
        self._train(X, y, [(every, self.scaler_, [self.model_])])
        self.best_C_, self.best_params_ = best, {"Cs": (best,)}
        self.summary_ = {"best_C": best, "c_grid": list(grid), "select_metric": metric, "cv": self.cv_results_,
                         "sgd": repr(self.model_), "epochs": self.epochs, "block_rows": self.block_rows}
        return self

    def _check_fit_input(self, X, y):
        if int(self.epochs) < 1 or int(self.block_rows) < 1:
            raise ConfigError(f"epochs and block_rows must be at least 1, got {self.epochs} and {self.block_rows}")
        if not isinstance(X, StoreRows):
            return validate_data(self, X, y, dtype=[np.float64, np.float32])
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        self.n_features_in_ = X.shape[1]
        return X, y

    def _check_input(self, X):
        check_is_fitted(self)
        if not isinstance(X, StoreRows):
            return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    def _sgd(self, C: float, y_train: np.ndarray):
        """An untrained SGD linear SVM for C on the training labels ``y_train`` (class indices)."""
        from sklearn.linear_model import SGDClassifier
        from sklearn.utils.class_weight import compute_class_weight

        weight = indexed_class_weight(self.class_weight, self.classes_)
        if weight == "balanced":  # partial_fit takes weights, not "balanced": computed from the training set
            present = np.unique(y_train)
            weight = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=y_train)))
        elif weight is not None and not isinstance(weight, dict):
            raise ConfigError(f"class_weight must be None, 'balanced' or a dict class → weight, got {weight!r}")
        return SGDClassifier(loss="hinge", alpha=1.0 / (C * len(y_train)), class_weight=weight, average=True,
                             n_jobs=self.n_jobs, random_state=self.random_state)

    def _scalers(self, X, masks: list[np.ndarray]) -> list:
        """One pass: a ``StandardScaler`` fitted on the rows of each boolean mask."""
        from sklearn.preprocessing import StandardScaler

        scalers = [StandardScaler() for _ in masks]
        for positions, block in blocks(X, self.block_rows):
            if not np.isfinite(block).all():
                raise ValueError(f"{X}: rows contain NaN or infinity; re-extract the store")
            for mask, scaler in zip(masks, scalers):
                keep = mask[positions]
                if keep.any():
                    scaler.partial_fit(block[keep])
        return scalers

    def _train(self, X, y: np.ndarray, members: list) -> None:
        """``epochs`` passes over ``X``: each member ``(rows mask, scaler, models)`` trains its models
        on its standardised rows of every block."""
        rng = np.random.default_rng(self.random_state)
        classes = np.arange(len(self.classes_))
        for _ in range(int(self.epochs)):
            for positions, block in blocks(X, self.block_rows, rng):
                for mask, scaler, models in members:
                    keep = mask[positions]
                    if keep.any():
                        Z, target = scaler.transform(block[keep]), y[positions[keep]]
                        for model in models:
                            model.partial_fit(Z, target, classes=classes)

    def _held_out_scores(self, X, members: list, n_grid: int) -> list[np.ndarray]:
        """One pass: decision scores [N, n_classes] per C of each row by the models that did not train on it."""
        scores = [np.full((len(X), len(self.classes_)), np.nan) for _ in range(n_grid)]
        for positions, block in blocks(X, self.block_rows):
            for mask, scaler, models in members:
                held = ~mask[positions]
                if held.any():
                    Z = scaler.transform(block[held])
                    for i, model in enumerate(models):
                        scores[i][positions[held]] = scores_by_class(model.decision_function(Z))
        return scores

    def decision_function(self, X):
        """Per-class decision scores [N, n_classes] ([N] for two classes, positive → ``classes_[1]``)."""
        X = self._check_input(X)
        out = np.empty((len(X),) if len(self.classes_) == 2 else (len(X), len(self.classes_)))
        for positions, block in blocks(X, self.block_rows):
            out[positions] = self.model_.decision_function(self.scaler_.transform(block))
        return out

    def predict(self, X):
        """The class with the highest decision score."""
        scores = scores_by_class(self.decision_function(X))
        return self.classes_[scores.argmax(axis=1)]
