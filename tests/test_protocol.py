"""deepfeat.protocol: units and pooling, class scores, and the fold protocol with any estimator."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from deepfeat.protocol import ProtocolData, class_scores, evaluate_fold, make_units, pool_scores, run
from deepfeat.scores import read_scores
from deepfeat.svm import TunedSVM

from .helpers import blobs


def test_pool_scores_is_the_mean_per_unit():
    scores = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 1.0]])
    pooled = pool_scores(scores, np.array([0, 0, 2, 2]), 3)
    np.testing.assert_allclose(pooled[[0, 2]], [[2.0, 1.0], [2.5, 3.0]])
    assert np.isnan(pooled[1]).all()


@pytest.mark.parametrize("per_window", [False, True])
def test_units_of_windowed_rows(per_window):
    data = blobs(n_folds=2, per_cell=2, windows=3)
    units = make_units(data["ids"], data["labels"], data["folds"], data["window_starts"], per_window)
    if per_window:
        assert len(units) == len(data["ids"]) and units.kind == "window"
        assert units.ids[1] == f"{data['ids'][1]}@0.500s" and len(set(units.ids)) == len(units.ids)
    else:  # clips in order of first appearance, every row mapped to its clip
        assert list(units.ids) == list(dict.fromkeys(data["ids"])) and units.kind == "clip"
        np.testing.assert_array_equal(units.ids[units.row_unit], data["ids"])
        np.testing.assert_array_equal(units.labels[units.row_unit], data["labels"])


def test_units_of_one_row_per_clip_are_the_rows():
    data = blobs(per_cell=2)
    for per_window in (False, True):
        units = make_units(data["ids"], data["labels"], data["folds"], None, per_window)
        np.testing.assert_array_equal(units.row_unit, np.arange(len(data["ids"])))


@pytest.mark.parametrize("n_classes,seen", [(2, [0, 1]), (3, [0, 1, 2]), (4, [0, 2]), (5, [1, 3, 4])])
def test_class_scores_have_one_column_per_class(n_classes, seen):
    data = blobs(n_classes=n_classes, seed=2)
    keep = np.isin(data["labels"], seen)
    names = np.array(data["label_names"], dtype=object)
    X, y = data["features"][keep], names[data["labels"][keep]]
    for model in (TunedSVM(kind="linearsvc", Cs=(1.0,)).fit(X, y), LogisticRegression().fit(X, y)):
        scores = class_scores(model, X, data["label_names"])
        assert scores.shape == (len(X), n_classes)
        np.testing.assert_array_equal(names[scores.argmax(axis=1)], model.predict(X))
        unseen = [c for c in range(n_classes) if c not in seen]
        if unseen:  # never the argmax
            assert (scores[:, unseen] <= scores[:, seen].min(axis=1, keepdims=True)).all()


def _data(seed=5, n_classes=3, windows=1):
    d = blobs(n_classes=n_classes, sep=0.6, dim=10, seed=seed, windows=windows)
    return ProtocolData.from_rows(d["features"], d["labels"], d["folds"], d["label_names"], ids=d["ids"],
                                  source="toy.h5")


def test_any_classifier_runs_through_the_protocol():
    """A plain scikit-learn classifier: out-of-fold development scores equal a model fitted without
    the fold; test scores come from a model fitted on all development folds; probabilities."""
    data = _data()
    result = evaluate_fold(GaussianNB(), data, 3, system="bayes")
    s, X, y = result.scores, data.X, data.label_strings(np.arange(len(data.labels)))
    assert s.score_kind == "probability" and set(result.oof_models) == {1, 2, 4, 5}
    for k in (1, 2, 4, 5, 3):
        train = (data.folds != 3) & (data.folds != k) if k != 3 else data.folds != 3
        reference = GaussianNB().fit(X[train], y[train])
        np.testing.assert_allclose(s.scores[data.folds == k], reference.predict_proba(X[data.folds == k]), rtol=1e-6)
    assert result.metrics["test_accuracy"] == pytest.approx(np.mean(result.y_pred_test == result.y_true_test))


class Recorder(ClassifierMixin, BaseEstimator):
    """Records the fit parameters and the folds it was trained on; predicts the majority class."""

    calls: list = []

    def __init__(self, tag: int = 0):
        self.tag = tag

    def fit(self, X, y, groups=None, clips=None, checkpoint=None):
        Recorder.calls.append({"folds": sorted(set(np.asarray(groups).tolist())), "clips": clips is not None,
                               "checkpoint": checkpoint, "tag": self.tag})
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[counts.argmax()]
        self.best_params_ = {"tag": self.tag + 1}
        self.summary_ = {"recorded": True}
        return self

    def predict_proba(self, X):
        return (self.classes_[None, :] == self.majority_).astype(float).repeat(len(X), axis=0)


def test_fit_parameters_checkpoints_and_chosen_parameters_reach_the_estimator(tmp_path):
    Recorder.calls = []
    result = evaluate_fold(Recorder(), _data(), 5, system="rec", checkpoints=tmp_path)
    final, *oof = Recorder.calls
    assert final["folds"] == [1, 2, 3, 4] and final["tag"] == 0 and final["checkpoint"] == tmp_path / "final.pt"
    assert [c["folds"] for c in oof] == [[2, 3, 4], [1, 3, 4], [1, 2, 4], [1, 2, 3]]
    assert all(c["tag"] == 1 for c in oof)  # refitted with best_params_
    assert [c["checkpoint"].name for c in oof] == [f"oof-fold{k}.pt" for k in (1, 2, 3, 4)]
    assert all(c["clips"] for c in Recorder.calls) and result.metrics["recorded"] is True


def test_windowed_rows_are_pooled_per_clip_for_evaluation():
    data = _data(windows=3)
    result = evaluate_fold(TunedSVM(Cs=(0.01,), n_jobs=1), data, 5, system="w")
    assert result.metrics["n_test_rows"] == 3 * result.metrics["n_test"] and len(result.scores.ids) == len(data.units)


def test_run_with_cv_writes_every_fold_and_a_summary(tmp_path):
    summary = run(TunedSVM(Cs=(0.01, 1.0), n_jobs=1), _data(), tmp_path / "run", system="toy-svm", cv=True,
                  provenance={"dataset": "toy"})
    assert summary["folds"] == [1, 2, 3, 4, 5] and len(summary["per_fold"]) == 5
    on_disk = json.loads((tmp_path / "run" / "cv_metrics.json").read_text())
    assert on_disk["test_accuracy"] == pytest.approx(np.mean([m["test_accuracy"] for m in summary["per_fold"]]))
    for k in range(1, 6):
        fold_dir = tmp_path / "run" / f"fold-{k}"
        assert read_scores(fold_dir / "scores.h5").test_fold == k
        assert json.loads((fold_dir / "metrics.json").read_text())["dataset"] == "toy"


def test_saved_model_predicts_what_the_run_reports(tmp_path):
    import joblib

    data = _data(seed=9)
    metrics = run(TunedSVM(n_jobs=1), data, tmp_path, system="toy-svm", fold=2)
    model = joblib.load(tmp_path / "model.joblib")
    test = data.folds == 2
    reported = json.loads((tmp_path / "metrics.json").read_text())["test_confusion_matrix"]
    predicted = model.predict(data.X[test])
    truth = data.label_strings(np.flatnonzero(test))
    names = data.label_names
    matrix = [[int(np.sum((truth == a) & (predicted == b))) for b in names] for a in names]
    assert matrix == reported and metrics["test_accuracy"] == pytest.approx(np.mean(predicted == truth))
