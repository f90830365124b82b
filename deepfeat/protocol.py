"""The fold protocol: the one place where folds become out-of-fold scores, a refit, test scores
and metrics. Every classifier stage — ``svm``, ``fuse``, ``crnn``, ``finetune`` — hands this
module a scikit-learn estimator and its data; none repeats the logic.

Protocol (Amiriparian et al. 2020): one fold is the test set, the others the development set.

1. The estimator is fitted on all development rows with their folds as ``groups``; an estimator
   that tunes itself (e.g. :class:`~deepfeat.svm.TunedSVM` choosing C) cross-validates over those
   groups, one development fold held out at a time, and exposes the choice as ``best_params_``.
2. Out-of-fold development scores: for each development fold, a clone with the chosen
   hyper-parameters fixed (``best_params_``) is fitted on the other development folds and scores
   the held-out fold.
3. The model of step 1 scores the test fold.

Development metrics are means over development folds of the per-fold metrics; test metrics are
computed on the test fold. The test fold is seen by nothing but ``decision_function`` /
``predict_proba`` of the model of step 1.

Evaluation partitions: data may declare folds that are never development folds
(``ProtocolData.evaluation_folds``, e.g. the DCASE evaluation sets): such a fold is only ever the
test fold (``fold="evaluation"``); with a development fold as test they are left out entirely
(neither trained on nor scored).

Rows and units: data may have several rows per clip (windows, channels). Estimators are fitted
and score per row; scores are pooled per clip (mean over its rows) before anything is evaluated,
unless each row is its own unit (:class:`Units`). Estimators that accept a ``clips`` fit parameter
receive each row's unit so their own tuning scores the same unit.

Fitted estimators may expose ``summary_``: a JSON-able dict merged into the run's metrics (e.g.
the chosen C and the CV table). Fit parameters ``groups``, ``clips`` and ``checkpoint`` (a file
path for resumable training) are passed to estimators whose ``fit`` accepts them.

Run folders are never overwritten silently: :func:`run` records what a run is of (its inputs'
checksums, the estimator and its parameters, the test folds: :func:`deepfeat.runs.run_identity`)
in ``run.json`` before it starts, and refuses a folder holding a run of anything else unless
asked to overwrite it. Rerunning the same run (to resume, or again) is not an overwrite.
"""
from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import clone

from .errors import ConfigError, StoreError
from .evaluation import SCORE_NAMES, classification_metrics, development_folds, summarise_folds, write_run
from .io import write_json
from .scores import Scores

log = logging.getLogger("deepfeat.protocol")


@dataclass
class Units:
    """What is scored: ``U`` units (clips, or single rows). ``row_unit[i]`` is row ``i``'s unit."""

    ids: np.ndarray  #: str [U]
    labels: np.ndarray  #: int64 [U]
    folds: np.ndarray  #: int64 [U]
    row_unit: np.ndarray  #: int64 [N]
    kind: str = "clip"  #: "clip" or "window"

    def __len__(self) -> int:
        return len(self.ids)


def make_units(ids, labels, folds, window_starts=None, per_window: bool = False) -> Units:
    """Units of rows: clips in order of first appearance (rows sharing an id pooled), or every
    row its own unit when ``per_window`` (ids ``<clip>@<start>s`` when ``window_starts`` [N],
    seconds, are given)."""
    ids = np.asarray(ids).astype(str)
    labels, folds = np.asarray(labels, dtype=np.int64), np.asarray(folds, dtype=np.int64)
    rows = np.arange(len(ids))
    if per_window and window_starts is not None:
        window_ids = np.array([f"{i}@{s:.3f}s" for i, s in zip(ids, window_starts)], dtype=object)
        return Units(window_ids, labels, folds, rows, "window")
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    if len(first) == len(ids):
        return Units(ids.astype(object), labels, folds, rows, "clip")
    order = np.argsort(first)  # units in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first = first[order]
    return Units(ids[first].astype(object), labels[first], folds[first], rank[inverse.ravel()], "clip")


def pool_scores(row_scores: np.ndarray, row_unit: np.ndarray, n_units: int) -> np.ndarray:
    """Mean of the rows' scores [N, C] per unit → [n_units, C] (NaN for units without rows)."""
    sums = np.zeros((n_units, row_scores.shape[1]), dtype=np.float64)
    np.add.at(sums, row_unit, row_scores)
    counts = np.bincount(row_unit, minlength=n_units).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


@dataclass
class ProtocolData:
    """What the protocol runs on: rows ``X`` with class indices, folds, and their units.

    ``X`` is anything indexable by an integer array of rows (a numpy array [N, ...], or a lazy
    row view): feature vectors, stacked scores, spectrograms, cached activations.
    """

    X: object
    labels: np.ndarray  #: int64 [N], index into ``label_names``
    folds: np.ndarray  #: int64 [N]
    label_names: list[str]
    units: Units
    source: str = ""  #: the file or folder the data came from, for messages
    evaluation_folds: tuple[int, ...] = ()  #: folds that are only ever a test fold, never development
    primary_metric: str = "accuracy"  #: the metric the dataset is reported by (recorded in metrics and scores)

    def __post_init__(self):
        self.evaluation_folds = tuple(int(f) for f in self.evaluation_folds)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.folds = np.asarray(self.folds, dtype=np.int64)
        n = len(self.labels)
        if len(self.folds) != n or len(self.units.row_unit) != n or len(self.X) != n:
            raise ValueError(f"X, labels, folds and units must have one entry per row ({n})")

    @classmethod
    def from_rows(cls, X, labels, folds, label_names, ids=None, window_starts=None, per_window: bool = False,
                  source: str = "", evaluation_folds=(), primary_metric: str = "accuracy") -> "ProtocolData":
        """Data whose units are clips named by ``ids`` [N] (default: every row its own clip)."""
        ids = np.arange(len(labels)).astype(str) if ids is None else ids
        return cls(X, labels, folds, list(label_names), make_units(ids, labels, folds, window_starts, per_window),
                   source, tuple(evaluation_folds), primary_metric)

    def label_strings(self, rows: np.ndarray) -> np.ndarray:
        """Class names of ``rows``: the targets estimators are fitted on (so ``classes_`` are names)."""
        return np.asarray(self.label_names, dtype=object)[self.labels[rows]]


def class_scores(model, X, classes) -> np.ndarray:
    """Per-class scores float64 [N, C] of a fitted model, one column per entry of ``classes``
    (class labels, e.g. the dataset's label names), in that order.

    ``decision_function`` when the model has one, else ``predict_proba``. A binary model's single
    decision score s becomes (-s, s); classes the model never saw get each row's lowest score
    minus one (decision scores) or 0 (probabilities).
    """
    proba = not hasattr(model, "decision_function")
    raw = np.asarray(model.predict_proba(X) if proba else model.decision_function(X), dtype=np.float64)
    if raw.ndim == 1:
        raw = np.stack([-raw, raw], axis=1)
    index = {str(c): i for i, c in enumerate(classes)}
    columns = [index[str(c)] for c in model.classes_]
    if columns == list(range(len(classes))):
        return raw
    fill = np.zeros((len(raw), 1)) if proba else raw.min(axis=1, keepdims=True) - 1.0
    out = np.repeat(fill, len(classes), axis=1)
    out[:, columns] = raw
    return out


def score_kind(model) -> str:
    """``decision_function`` or ``probability``: what :func:`class_scores` returns for ``model``."""
    return "decision_function" if hasattr(model, "decision_function") else "probability"


def fit_estimator(estimator, X, y, *, groups=None, clips=None, checkpoint: Path | None = None):
    """``estimator.fit(X, y, ...)`` passing ``groups``, ``clips`` and ``checkpoint`` only to an
    estimator whose ``fit`` takes them. Returns the fitted estimator."""
    accepted = inspect.signature(estimator.fit).parameters
    extra = {name: value for name, value in (("groups", groups), ("clips", clips), ("checkpoint", checkpoint))
             if value is not None and name in accepted}
    return estimator.fit(X, y, **extra)


@dataclass
class FoldResult:
    """One test fold's outcome: metrics, per-unit scores, the refitted model, test labels/predictions
    and the out-of-fold models (development fold → model)."""

    metrics: dict
    scores: Scores
    model: object
    y_true_test: np.ndarray
    y_pred_test: np.ndarray
    oof_models: dict = field(default_factory=dict)


def _check_splits(data: ProtocolData, test_fold: int, dev_folds: list[int]) -> None:
    for k in [None, *dev_folds]:
        train = np.isin(data.folds, dev_folds) & (data.folds != k)
        if np.unique(data.labels[train]).size < 2:
            without = "" if k is None else f" without fold {k}"
            raise StoreError(f"{data.source}: the development folds{without} (test fold {test_fold}) hold a single "
                             "class; every training split needs at least 2 classes")


def fold_metrics(units: Units, predictions: np.ndarray, label_names: list[str], dev_folds: list[int],
                 test_fold: int) -> dict:
    """Devel metrics (means over development folds of per-fold metrics), test metrics and the
    per-fold devel accuracies of per-unit class ``predictions`` [U] (indices)."""
    per_fold = [classification_metrics(units.labels[units.folds == k], predictions[units.folds == k], label_names)
                for k in dev_folds]
    devel = {name: float(np.mean([m[name] for m in per_fold])) for name in SCORE_NAMES}
    test_units = units.folds == test_fold
    test = classification_metrics(units.labels[test_units], predictions[test_units], label_names)
    return {"test_fold": int(test_fold), "development_folds": dev_folds,
            "folds": sorted(int(f) for f in np.unique(units.folds)),
            **{f"devel_{k}": v for k, v in devel.items()}, **{f"test_{k}": v for k, v in test.items() if k != "n"},
            "devel_fold_accuracy": {int(k): m["accuracy"] for k, m in zip(dev_folds, per_fold)}}


def evaluate_fold(estimator, data: ProtocolData, test_fold: int, *, system: str,
                  checkpoints: Path | None = None) -> FoldResult:
    """Run the protocol (module docstring) of ``estimator`` on ``data`` with test fold ``test_fold``.

    Parameters
    ----------
    estimator : scikit-learn classifier
        Cloned for every fit, never fitted itself.
    data : ProtocolData
    test_fold : int
    system : str
        Name of the system, written into the scores.
    checkpoints : Path, optional
        Folder for the per-fit checkpoints of resumable estimators (``oof-fold<k>.pt``, ``final.pt``).

    Returns
    -------
    FoldResult
    """
    dev_folds = development_folds(data.units.folds, test_fold, source=data.source,
                                  evaluation_folds=data.evaluation_folds)
    _check_splits(data, test_fold, dev_folds)
    units, names = data.units, data.label_names
    timings: dict = {"fit_seconds": {}}

    def fit_on(train: np.ndarray, est, name: str):
        rows = np.flatnonzero(train)
        tic = time.perf_counter()
        model = fit_estimator(clone(est), data.X[rows], data.label_strings(rows), groups=data.folds[rows],
                    clips=units.row_unit[rows], checkpoint=checkpoints / f"{name}.pt" if checkpoints else None)
        timings["fit_seconds"][name] = time.perf_counter() - tic
        return model

    def unit_scores(model, mask: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(mask)
        return pool_scores(class_scores(model, data.X[rows], names), units.row_unit[rows], len(units))

    dev = np.isin(data.folds, dev_folds)
    model = fit_on(dev, estimator, "final")
    fixed = clone(estimator).set_params(**getattr(model, "best_params_", {}))
    scores = np.full((len(units), len(names)), np.nan)
    oof_models = {}
    for k in dev_folds:
        oof_models[k] = fit_on(dev & (data.folds != k), fixed, f"oof-fold{k}")
        held = units.folds == k
        scores[held] = unit_scores(oof_models[k], data.folds == k)[held]
    unit_test = units.folds == test_fold
    scores[unit_test] = unit_scores(model, data.folds == test_fold)[unit_test]

    scored = np.isin(units.folds, [*dev_folds, test_fold])  # not: evaluation partitions other than the test fold
    predictions = np.where(scored, np.nan_to_num(scores, nan=-np.inf).argmax(axis=1), -1)
    metrics = {
        **fold_metrics(units, predictions, names, dev_folds, test_fold),
        **getattr(model, "summary_", {}),
        "estimator": repr(estimator), "unit": units.kind, "n_classes": len(names),
        "n_devel": int((scored & ~unit_test).sum()), "n_test": int(unit_test.sum()),
        "n_devel_rows": int(dev.sum()), "n_test_rows": int((data.folds == test_fold).sum()),
        "test_partition": "evaluation" if test_fold in data.evaluation_folds else "fold",
        "evaluation_folds": list(data.evaluation_folds), "primary_metric": data.primary_metric, "timings": timings,
    }
    return FoldResult(metrics, _unit_scores(data, scores, scored, system, test_fold, score_kind(model)), model,
                      units.labels[unit_test], predictions[unit_test], oof_models)


def _unit_scores(data: ProtocolData, scores: np.ndarray, scored: np.ndarray, system: str, test_fold: int,
                 kind: str) -> Scores:
    """The :class:`Scores` of the ``scored`` units (development and test folds)."""
    units = data.units
    return Scores(system=system, ids=units.ids[scored], folds=units.folds[scored], labels=units.labels[scored],
                  label_names=data.label_names, scores=scores[scored].astype(np.float32), test_fold=int(test_fold),
                  score_kind=kind, evaluation_folds=data.evaluation_folds, primary_metric=data.primary_metric)


EVALUATION = "evaluation"  #: ``fold`` value naming the data's evaluation partition as the test fold


def resolve_test_fold(fold: int | str, evaluation_folds=(), source: str = "") -> int:
    """The test fold ``fold`` names: a fold number, or ``"evaluation"`` (the data's one evaluation
    partition; :class:`ConfigError` when it has none)."""
    if isinstance(fold, str) and fold.strip().lower() == EVALUATION:
        if len(evaluation_folds) != 1:
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}the data has no evaluation partition (read a DCASE development and evaluation "
                              "set together); pass a fold number with --fold")
        return int(evaluation_folds[0])
    try:
        return int(fold)
    except (TypeError, ValueError):
        raise ConfigError(f"test fold {fold!r}: pass a fold number or {EVALUATION!r}") from None


def chosen_test_folds(data: ProtocolData, fold: int | str | None, cv: bool) -> list[int]:
    """The test folds a run uses: every fold but the evaluation partitions when ``cv``, else ``[fold]``."""
    if cv:
        folds = sorted(int(f) for f in np.unique(data.units.folds) if int(f) not in data.evaluation_folds)
        development_folds(data.units.folds, folds[-1] if folds else 0, source=data.source,
                          evaluation_folds=data.evaluation_folds)  # validates folds
        return folds
    if fold is None:
        raise ConfigError("pass a test fold (--fold K) or --cv")
    return [resolve_test_fold(fold, data.evaluation_folds, data.source)]


def run(estimator, data: ProtocolData, run_dir: str | Path, *, system: str, fold: int | str | None = 5,
        cv: bool = False, provenance: dict | None = None, score_config: dict | None = None,
        checkpoints: bool = False, on_result=None, inputs: dict | None = None, overwrite: bool = False) -> dict:
    """Run the protocol on test fold ``fold`` (a number or ``"evaluation"``; or every development
    fold in turn when ``cv``) and write the run.

    Each test fold's run folder (``run_dir``, or ``run_dir/fold-<k>/`` with ``cv``) receives what
    :func:`deepfeat.evaluation.write_run` writes. ``provenance`` (inputs, stage settings) is put
    first in ``metrics.json``; ``score_config`` goes into the scores file's ``config``;
    ``checkpoints``: resumable estimators checkpoint under ``<run folder>/checkpoints/``.
    ``on_result(result, fold_dir)`` is called before each fold's run is written (a stage adds its
    own files or metrics there). With ``cv``, ``run_dir/cv_metrics.json`` holds mean ± std over
    test folds. ``inputs`` identifies the stage's input data (:func:`~deepfeat.runs.run_identity`);
    a ``run_dir`` holding a run of another identity is refused unless ``overwrite``
    (:func:`~deepfeat.runs.claim_run_dir`).
    Returns the metrics (the summary with ``cv``).
    """
    from .runs import claim_run_dir, run_identity

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    test_folds = chosen_test_folds(data, fold, cv)
    identity = run_identity(estimator, data, test_folds, inputs)
    claim_run_dir(run_dir, identity, overwrite)
    provenance = {**(provenance or {}), "run_identity": identity["sha256"]}
    per_fold = []
    for k in test_folds:
        tic = time.perf_counter()
        fold_dir = run_dir / f"fold-{k}" if cv else run_dir
        result = evaluate_fold(estimator, data, k, system=system,
                               checkpoints=fold_dir / "checkpoints" if checkpoints else None)
        result.scores.config = {**(score_config or {}), **result.scores.config}
        result.metrics = {**provenance, **result.metrics}
        result.metrics["timings"]["total_seconds"] = time.perf_counter() - (tic if cv else t0)
        if on_result is not None:
            on_result(result, fold_dir)
        write_run(fold_dir, system=system, metrics=result.metrics, scores=result.scores,
                  y_true_test=result.y_true_test, y_pred_test=result.y_pred_test, label_names=data.label_names,
                  model=result.model)
        per_fold.append({"system": system, **result.metrics, "run_dir": str(fold_dir)})
    if not cv:
        return per_fold[0]
    keep = ("test_fold", "best_C", *(f"{s}_{n}" for s in ("devel", "test") for n in SCORE_NAMES), "run_dir")
    summary = {"system": system, **provenance, "protocol": f"{len(per_fold)}-fold CV, each fold as test",
               "folds": [m["test_fold"] for m in per_fold], **summarise_folds(per_fold),
               "per_fold": [{k: m.get(k) for k in keep} for m in per_fold],
               "timings": {"total_seconds": time.perf_counter() - t0}, "run_dir": str(run_dir)}
    write_json(run_dir / "cv_metrics.json", summary)
    return summary
