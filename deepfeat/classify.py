"""Linear SVMs on a feature store under the paper's fold protocol (Amiriparian et al. 2020).

One fold is the test set; the other (development) folds choose the SVM complexity ``C`` from a
log grid by cross-validation over those folds (leave one development fold out: 4-fold on
ESC-50/ESC-10 with test fold 5). The model is then refitted on all development folds with the
best ``C`` and scored on the test fold. Every fit is a fresh :func:`make_svm` pipeline, so the
standardisation is always fitted on that fit's training rows only, and the test fold is seen
only by the refitted model's ``decision_function``.

Windowed stores (several rows per clip) are trained per window; each clip's decision scores are
the mean of its windows' scores and its prediction their argmax (``per_window=True`` scores
each window on its own instead). ``C`` is chosen on the same unit (clip or window) that is
reported.

Predictions are always the argmax of the per-class decision scores (for ``SVC`` the same as
``break_ties=True``), so pooled and per-window scoring use one rule.

Classifier (``kind``): ``svc`` by default, a linear-kernel ``SVC`` (libsvm, one-vs-one, per-class
scores from ``decision_function_shape="ovr"``) fed a precomputed linear kernel
(:class:`LinearKernel`): each training split's kernel is one BLAS product shared by the whole C
grid. It was chosen over ``LinearSVC`` (liblinear, one-vs-rest) by speed, measured with
``--cv`` (5 test folds, 7 C values) on the 2 shared CPU cores of the development machine
(load average 7-10), on ESC-10 features of the paper preset (viridis, 0.32 s / 0.16 s):
EfficientNet-Lite0 ImageNet (400 × 1280) 9.6 s vs 47.8 s, random-init DenseNet-121
(400 × 1024) 10.3 s vs 271 s, at the same mean test accuracy (80.25 % and 75.0 % for both).
One test fold of a random 2000 × 4096 store (10 Gaussian classes): 4.8 s, where
``SVC(kernel="linear")`` (kernel recomputed by libsvm for every fit) took 114 s and
``LinearSVC`` 57-70 s; of pure noise: 8.9 s. The kernel grows with rows squared, so stores
with more than :data:`MAX_KERNEL_ROWS` rows (many windows) need ``kind="linearsvc"``.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from .config import PlotConfig
from .errors import ConfigError, StoreError
from .evaluation import (
    SCORE_NAMES, classification_metrics, default_run_dir, development_folds, summarise_folds, write_json, write_run,
)
from .scores import Scores
from .store import FeatureSet, read_store

log = logging.getLogger(__name__)

#: Log grid of the SVM complexity C: 1e-5 … 1e1, one value per decade.
DEFAULT_C_GRID = tuple(float(10.0 ** e) for e in range(-5, 2))
SVM_KINDS = ("svc", "linearsvc")
C_PARAM = "svm__C"  #: name of C in :func:`make_svm`'s pipeline
#: Most store rows for ``svc``: its float64 kernel matrices (rows² × 8 bytes each, one per
#: parallel fit) must fit in memory.
MAX_KERNEL_ROWS = 12000


class LinearKernel(TransformerMixin, BaseEstimator):
    """Transformer ``X → X @ X_fit.T``: the linear kernel against the training rows, in float64
    as libsvm computes it, for ``SVC(kernel="precomputed")``. Equivalent to
    ``SVC(kernel="linear")``, but the kernel is one BLAS product, computed once per training set
    and shared by every C of a grid."""

    def fit(self, X, y=None):
        self.X_fit_ = np.asarray(X)  # kept in its own dtype (float32 from the store): half the model size
        self.n_features_in_ = self.X_fit_.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self)
        return np.asarray(X, dtype=np.float64) @ self.X_fit_.astype(np.float64, copy=False).T


def make_svm(C: float = 1.0, kind: str = "svc", class_weight: str | None = None, random_state: int = 0):
    """Standardisation then a linear SVM, as a scikit-learn pipeline whose last step is ``svm``.

    ``kind``: ``svc``: ``StandardScaler → LinearKernel → SVC(kernel="precomputed")`` (libsvm,
    one-vs-one, per-class scores via ``decision_function_shape="ovr"``); ``linearsvc``:
    ``StandardScaler → LinearSVC`` (liblinear, one-vs-rest, squared hinge). ``class_weight``:
    None or ``balanced``.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    if class_weight not in (None, "balanced"):
        raise ConfigError(f"class_weight must be None or 'balanced', got {class_weight!r}")
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
    if not values or values[0] <= 0 or not np.all(np.isfinite(values)):
        raise ConfigError(f"C grid needs positive finite values, got {text!r}")
    return tuple(values)


def system_name(fs: FeatureSet, prefix: str = "svm", per_window: bool = False) -> str:
    """``<prefix>-<network>-<weights>[-<colormap>][-per-window]``, e.g.
    ``svm-efficientnet_lite0-imagenet``; the colour map is named when it is not the default
    (:class:`~deepfeat.config.PlotConfig`'s) and
    ``-per-window`` is added when a windowed store is scored per window."""
    weights = str(fs.attrs.get("weights") or "default")
    if os.sep in weights or weights.endswith((".pt", ".pth", ".ckpt", ".bin")):
        weights = Path(weights).stem
    parts = [prefix, str(fs.attrs.get("network") or fs.name), weights]
    colormap = ((fs.config.get("extractor") or {}).get("plot") or {}).get("colormap")
    if colormap and colormap != PlotConfig().colormap:
        parts.append(colormap)
    if per_window and fs.windowed:
        parts.append("per-window")
    return "-".join(parts)


# ---------------------------------------------------------------------------------------------
# Input checks and evaluation units


def check_feature_set(fs: FeatureSet) -> None:
    """Raise :class:`StoreError` (naming the file) for an empty store, non-finite or unlabelled
    rows, labels outside ``label_names``, fewer than two classes, or a clip whose windows
    disagree on label or fold."""
    n = fs.features.shape[0]
    if n == 0 or fs.features.ndim != 2 or fs.features.shape[1] == 0:
        raise StoreError(f"{fs.path}: the store has no feature rows; re-run `deepfeat extract` on a dataset with audio")
    bad = ~np.isfinite(fs.features).all(axis=1)
    if bad.any():
        raise StoreError(f"{fs.path}: {int(bad.sum())} of {n} rows have NaN/inf features ({_first(fs.ids[bad])}); "
                         "re-extract the store")
    unlabelled = fs.labels < 0
    if unlabelled.any():
        raise StoreError(f"{fs.path}: {int(unlabelled.sum())} of {n} rows are unlabelled "
                         f"({_first(fs.ids[unlabelled])}); "
                         "the SVM needs a label for every clip: extract from a labelled dataset")
    if fs.labels.max() >= len(fs.label_names):
        raise StoreError(f"{fs.path}: labels exceed the {len(fs.label_names)} label_names; the store is malformed, "
                         "re-extract it")
    present = np.unique(fs.labels)
    if present.size < 2:
        raise StoreError(f"{fs.path}: every row has the same class ({fs.label_names[present[0]]!r}); "
                         "a classifier needs at least 2 classes")
    _check_clips_consistent(fs)


def _first(ids, k: int = 3) -> str:
    ids = [str(i) for i in ids]
    return "first: " + ", ".join(ids[:k]) + (", ..." if len(ids) > k else "")


def _check_clips_consistent(fs: FeatureSet) -> None:
    _, first, inverse = np.unique(fs.ids.astype(str), return_index=True, return_inverse=True)
    for name, values in (("label", fs.labels), ("fold", fs.folds)):
        differs = values != values[first][inverse]
        if differs.any():
            raise StoreError(f"{fs.path}: rows of the same clip have different {name}s ({_first(fs.ids[differs])}); "
                             "the store is malformed, re-extract it")


@dataclass
class Units:
    """What is scored: clips (windows pooled) or single rows. ``row_unit[i]`` is row i's unit."""

    ids: np.ndarray  #: str [U]
    labels: np.ndarray  #: int64 [U]
    folds: np.ndarray  #: int64 [U]
    row_unit: np.ndarray  #: int64 [N]
    kind: str  #: "clip" or "window"

    def __len__(self) -> int:
        return len(self.ids)


def evaluation_units(fs: FeatureSet, per_window: bool = False) -> Units:
    """Clips in order of first appearance (rows sharing an id pooled), or every row as its own
    unit when ``per_window`` (ids ``<clip>@<start>s`` for windowed stores)."""
    ids = fs.ids.astype(str)
    rows = np.arange(len(ids))
    if fs.windowed and per_window:
        window_ids = np.array([f"{i}@{s:.3f}s" for i, s in zip(ids, fs.window_starts)], dtype=object)
        return Units(window_ids, fs.labels.astype(np.int64), fs.folds.astype(np.int64), rows, "window")
    if len(np.unique(ids)) == len(ids):
        return Units(ids.astype(object), fs.labels.astype(np.int64), fs.folds.astype(np.int64), rows, "clip")
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # units in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first = first[order]
    return Units(ids[first].astype(object), fs.labels[first].astype(np.int64), fs.folds[first].astype(np.int64),
                 rank[inverse], "clip")


def pool_scores(row_scores: np.ndarray, row_unit: np.ndarray, n_units: int) -> np.ndarray:
    """Mean of the rows' scores [N, C] per unit → [n_units, C] (NaN for units without rows)."""
    sums = np.zeros((n_units, row_scores.shape[1]), dtype=np.float64)
    np.add.at(sums, row_unit, row_scores)
    counts = np.bincount(row_unit, minlength=n_units).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


# ---------------------------------------------------------------------------------------------
# The protocol


def decision_scores(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``model.decision_function(X)`` as [N, n_classes] in class-index order. A binary model's
    single score s becomes (-s, s); classes the model never saw get each row's lowest score - 1."""
    raw = np.asarray(model.decision_function(X), dtype=np.float64)
    classes = np.asarray(model.classes_)
    if raw.ndim == 1:
        raw = np.stack([-raw, raw], axis=1)
    if len(classes) == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return raw
    out = np.repeat(raw.min(axis=1, keepdims=True) - 1.0, n_classes, axis=1)
    out[:, classes] = raw
    return out


def _not_converged(model) -> bool:
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    max_iter, n_iter = getattr(est, "max_iter", -1), getattr(est, "n_iter_", None)
    return max_iter is not None and max_iter > 0 and n_iter is not None and np.max(n_iter) >= max_iter


def _split_decisions(estimator, param: str, grid, X, y, train, test, n_classes):
    """For each C in ``grid``: fit ``estimator`` with ``param=C`` on rows ``train``, score rows
    ``test``. Returns ([decision scores per C], number of fits that did not converge).

    When ``estimator`` is a pipeline and ``param`` belongs to its last step, the earlier steps
    (scaler, kernel) are fitted once on ``train`` and shared by all C: same result, fewer fits."""
    from sklearn.pipeline import Pipeline

    steps = getattr(estimator, "steps", None)
    if steps and len(steps) > 1 and param.startswith(steps[-1][0] + "__"):
        head = Pipeline(clone(estimator).steps[:-1])
        X_train, X_test = head.fit_transform(X[train], y[train]), head.transform(X[test])
        final, final_param = steps[-1][1], param[len(steps[-1][0]) + 2:]
    else:
        X_train, X_test, final, final_param = X[train], X[test], estimator, param
    out, not_converged = [], 0
    for c in grid:
        model = clone(final).set_params(**{final_param: c}).fit(X_train, y[train])
        out.append(decision_scores(model, X_test, n_classes))
        not_converged += _not_converged(model)
    return out, not_converged


def _parallel(n_jobs: int | None):
    from joblib import Parallel

    # libsvm and liblinear release the GIL: threads share X without copies or process start-up.
    return Parallel(n_jobs=n_jobs, prefer="threads")


@dataclass
class FoldResult:
    """One test fold's outcome: metrics, per-unit scores, the refitted model, test labels/predictions."""

    metrics: dict
    scores: Scores
    model: object
    y_true_test: np.ndarray
    y_pred_test: np.ndarray


def evaluate_fold(fs: FeatureSet, test_fold: int, *, estimator=None, param: str = C_PARAM,
                  c_grid=DEFAULT_C_GRID, per_window: bool = False, n_jobs: int | None = 1,
                  system: str | None = None) -> FoldResult:
    """Tune ``param`` (C) over ``c_grid`` by leave-one-development-fold-out CV, refit on all
    development folds, score the test fold.

    ``estimator`` (default :func:`make_svm`) is cloned for every fit. The devel score of a C is
    the mean over development folds of the accuracy on that fold; the best C has the highest
    (ties: the smallest C). Scores: development units get the out-of-fold scores of the best
    C's CV models, test units the refitted model's.
    """
    from joblib import delayed

    check_feature_set(fs)
    dev_folds = development_folds(fs.folds, test_fold, source=str(fs.path))
    grid = sorted({float(c) for c in c_grid})
    if not grid or grid[0] <= 0:
        raise ConfigError(f"C grid needs positive values, got {c_grid!r}")
    estimator = make_svm() if estimator is None else estimator
    system = system or system_name(fs, per_window=per_window)
    X, y, row_folds = fs.features, fs.labels.astype(np.int64), fs.folds
    n_classes = len(fs.label_names)
    units = evaluation_units(fs, per_window)
    dev_rows = np.flatnonzero(row_folds != test_fold)
    test_rows = np.flatnonzero(row_folds == test_fold)
    splits = [(k, np.flatnonzero((row_folds != test_fold) & (row_folds != k)), np.flatnonzero(row_folds == k))
              for k in dev_folds]
    for k, train, _ in splits:
        if np.unique(y[train]).size < 2:
            raise StoreError(f"{fs.path}: the training folds without fold {k} (and test fold {test_fold}) hold a "
                             "single class; every split needs at least 2 classes")

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted below instead
        outputs = _parallel(n_jobs)(
            delayed(_split_decisions)(estimator, param, grid, X, y, train, val, n_classes) for _, train, val in splits)
        t1 = time.perf_counter()
        cv_rows, fold_scores, oof = [], {}, {}
        for i, c in enumerate(grid):
            row_scores = np.full((len(X), n_classes), np.nan)
            for (_, _, val), (split_scores, _) in zip(splits, outputs):
                row_scores[val] = split_scores[i]
            unit_scores = pool_scores(row_scores, units.row_unit, len(units))
            per_fold = [classification_metrics(units.labels[units.folds == k],
                                               unit_scores[units.folds == k].argmax(axis=1), fs.label_names)
                        for k in dev_folds]
            fold_scores[c], oof[c] = per_fold, unit_scores
            accs = [m["accuracy"] for m in per_fold]
            cv_rows.append({"C": c, "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
                            "fold_accuracy": accs})
        best = max(grid, key=lambda c: (np.mean([m["accuracy"] for m in fold_scores[c]]), -c))
        model = clone(estimator).set_params(**{param: best}).fit(X[dev_rows], y[dev_rows])
        not_converged = sum(o[1] for o in outputs) + int(_not_converged(model))
    t2 = time.perf_counter()
    if not_converged:
        log.warning("%s: %d of %d SVM fits stopped at max_iter before converging", fs.path, not_converged,
                    len(grid) * len(splits) + 1)

    unit_scores = oof[best].copy()
    unit_test = units.folds == test_fold
    unit_scores[unit_test] = pool_scores(decision_scores(model, X[test_rows], n_classes),
                                         units.row_unit[test_rows], len(units))[unit_test]
    y_true_test, y_pred_test = units.labels[unit_test], unit_scores[unit_test].argmax(axis=1)
    test = classification_metrics(y_true_test, y_pred_test, fs.label_names)
    devel = {name: float(np.mean([m[name] for m in fold_scores[best]])) for name in SCORE_NAMES}
    metrics = {
        "test_fold": int(test_fold), "development_folds": dev_folds,
        "folds": sorted(int(f) for f in np.unique(row_folds)), "best_C": best,
        **{f"devel_{k}": v for k, v in devel.items()}, **{f"test_{k}": v for k, v in test.items() if k != "n"},
        "devel_fold_accuracy": {int(k): m["accuracy"] for k, m in zip(dev_folds, fold_scores[best])},
        "cv": cv_rows, "c_grid": grid, "estimator": repr(model), "unit": units.kind,
        "pooling": "mean decision score over a clip's windows" if units.kind == "clip" and fs.windowed else None,
        "n_features": int(X.shape[1]), "n_classes": n_classes,
        "n_devel_rows": int(dev_rows.size), "n_test_rows": int(test_rows.size),
        "n_devel": int((~unit_test).sum()), "n_test": int(unit_test.sum()),
        "not_converged_fits": int(not_converged),
        "timings": {"tune_seconds": t1 - t0, "refit_seconds": t2 - t1, "fits": len(grid) * len(splits) + 1,
                    "n_jobs": n_jobs},
    }
    scores = Scores(system=system, ids=units.ids, folds=units.folds, labels=units.labels, label_names=fs.label_names,
                    scores=unit_scores.astype(np.float32), test_fold=int(test_fold), score_kind="decision_function",
                    config={"best_C": best, "estimator": repr(model), "unit": units.kind, "store": str(fs.path),
                            "store_config": fs.config})
    return FoldResult(metrics, scores, model, y_true_test, y_pred_test)


def default_jobs() -> int:
    """Parallel fits: the CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def run_svm(store: str | Path, *, fold: int = 5, cv: bool = False, run_dir: str | Path | None = None,
            kind: str = "svc", class_weight: str | None = None, c_grid=DEFAULT_C_GRID, per_window: bool = False,
            n_jobs: int | None = None) -> dict:
    """``deepfeat svm``: read ``store``, run the protocol on test fold ``fold`` (or on every fold
    in turn when ``cv``), write the run directory(ies) and return the metrics.

    ``run_dir`` defaults to ``results/<dataset>/<system>``; with ``cv`` each test fold's run goes
    to ``RUN_DIR/fold-<k>/`` and the mean ± std summary to ``RUN_DIR/cv_metrics.json``.
    """
    from .weights import file_sha256

    t0 = time.perf_counter()
    fs = read_store(store)
    provenance = {"store": str(Path(store)), "store_sha256": file_sha256(store),
                  **{key: fs.attrs.get(key) for key in ("dataset", "network", "layer", "weights")},
                  "svm": kind, "class_weight": class_weight}
    read_seconds = time.perf_counter() - t0
    system = system_name(fs, per_window=per_window)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(str(fs.attrs.get("dataset") or ""), system)
    if kind == "svc" and fs.features.shape[0] > MAX_KERNEL_ROWS:
        raise ConfigError(f"{store}: {fs.features.shape[0]} rows are too many for --svm svc (its kernel matrix grows "
                          f"with rows squared; limit {MAX_KERNEL_ROWS}); use --svm linearsvc")
    estimator = make_svm(kind=kind, class_weight=class_weight)
    n_jobs = default_jobs() if n_jobs is None else n_jobs
    if cv:
        check_feature_set(fs)
        test_folds = sorted(int(f) for f in np.unique(fs.folds))
    else:
        test_folds = [fold]
    per_fold = []
    for k in test_folds:
        t = time.perf_counter()
        result = evaluate_fold(fs, k, estimator=estimator, c_grid=c_grid, per_window=per_window, n_jobs=n_jobs,
                               system=system)
        metrics = {**provenance, **result.metrics}
        result.scores.config.update(store_sha256=provenance["store_sha256"])
        fold_dir = run_dir / f"fold-{k}" if cv else run_dir
        # seconds to read the store (and hash it) plus the protocol; a --cv fold counts its protocol only
        metrics["timings"].update(read_seconds=read_seconds, total_seconds=time.perf_counter() - (t if cv else t0))
        write_run(fold_dir, system=system, metrics=metrics, scores=result.scores, y_true_test=result.y_true_test,
                  y_pred_test=result.y_pred_test, label_names=fs.label_names, model=result.model)
        per_fold.append({"system": system, **metrics, "run_dir": str(fold_dir)})
    if not cv:
        return per_fold[0]
    keep = ("test_fold", "best_C", *(f"{s}_{n}" for s in ("devel", "test") for n in SCORE_NAMES), "run_dir")
    summary = {"system": system, **provenance, "protocol": f"{len(test_folds)}-fold CV, each fold as test",
               "folds": test_folds, **summarise_folds(per_fold),
               "per_fold": [{k: m[k] for k in keep} for m in per_fold],
               "timings": {"read_seconds": read_seconds, "total_seconds": time.perf_counter() - t0},
               "run_dir": str(run_dir)}
    write_json(run_dir / "cv_metrics.json", summary)
    return summary
