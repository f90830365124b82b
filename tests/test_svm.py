"""deepfeat.svm: the pipeline, the precomputed linear kernel and TunedSVM's choice of C."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import LeaveOneGroupOut, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from deepfeat.errors import ConfigError
from deepfeat.svm import DEFAULT_C_GRID, LinearKernel, TunedSVM, make_svm, parse_c_grid

from .helpers import blobs


@pytest.mark.parametrize("kind", ["svc", "linearsvc"])
def test_make_svm_is_a_cloneable_pipeline_with_tunable_c(kind):
    est = make_svm(C=0.5, kind=kind, class_weight="balanced")
    assert isinstance(est, Pipeline) and est.steps[0][0] == "scale" and est.steps[-1][0] == "svm"
    copy = clone(est).set_params(svm__C=3.0)
    assert copy.get_params()["svm__C"] == 3.0 and est.get_params()["svm__C"] == 0.5
    assert copy.get_params()["svm__class_weight"] == "balanced"


@pytest.mark.parametrize("kind,class_weight", [("rbf", None), ("svc", "uniform")])
def test_make_svm_rejects_unknown_options(kind, class_weight):
    with pytest.raises(ConfigError):
        make_svm(kind=kind, class_weight=class_weight)


@pytest.mark.parametrize("C", [1e-4, 1e-2, 1.0])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_precomputed_kernel_svc_equals_linear_kernel_svc(C, n_classes):
    data = blobs(n_classes=n_classes, sep=0.7, dim=12, seed=1)  # overlapping classes: many support vectors
    X, y = data["features"], data["labels"]
    train, test = data["folds"] != 5, data["folds"] == 5
    ours = make_svm(C=C, kind="svc").fit(X[train], y[train])
    reference = Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="linear", C=C))]).fit(X[train], y[train])
    np.testing.assert_allclose(ours.decision_function(X[test]), reference.decision_function(X[test]),
                               rtol=1e-4, atol=1e-4)


def test_linear_kernel_is_the_gram_matrix_against_training_rows():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((6, 3)), rng.standard_normal((4, 3))
    k = LinearKernel().fit(A)
    np.testing.assert_allclose(k.transform(B), B @ A.T)
    assert k.transform(B).dtype == np.float64 and clone(k).get_params() == {}


@pytest.mark.parametrize("text,expected", [("1e-5,1e-3", (1e-5, 1e-3)), ("10, 0.1,0.1", (0.1, 10.0)), ("2", (2.0,))])
def test_parse_c_grid(text, expected):
    assert parse_c_grid(text) == expected


@pytest.mark.parametrize("text", ["", "a,b", "0,1", "-1", "1,inf"])
def test_parse_c_grid_rejects_bad_values(text):
    with pytest.raises(ConfigError):
        parse_c_grid(text)


def test_default_grid_spans_1e_5_to_1e1():
    assert min(DEFAULT_C_GRID) == pytest.approx(1e-5) and max(DEFAULT_C_GRID) == pytest.approx(10.0)
    assert len(DEFAULT_C_GRID) >= 7


def _toy(seed=4, n_classes=3):
    data = blobs(n_classes=n_classes, sep=0.6, dim=10, seed=seed)
    names = np.array(data["label_names"], dtype=object)[data["labels"]]
    return data["features"], names, data["folds"]


@pytest.mark.parametrize("kind", ["svc", "linearsvc"])
def test_c_is_the_best_leave_one_group_out_choice(kind):
    """TunedSVM's C and CV table equal scikit-learn's cross_val_score of the same pipelines, scored
    by the argmax of the decision scores (what every stage reports; SVC's own predict votes)."""
    X, y, groups = _toy()
    grid = (1e-3, 1e-2, 1e-1, 1.0)
    model = TunedSVM(Cs=grid, kind=kind, n_jobs=1).fit(X, y, groups=groups)

    def argmax_accuracy(est, X_test, y_test):
        return np.mean(est.classes_[est.decision_function(X_test).argmax(axis=1)] == y_test)

    expected = [cross_val_score(make_svm(c, kind), X, y, groups=groups, cv=LeaveOneGroupOut(),
                                scoring=argmax_accuracy).mean() for c in grid]
    np.testing.assert_allclose([r["accuracy"] for r in model.cv_results_], expected)
    best = grid[int(np.argmax(expected))]  # argmax: the first (smallest C) of equal means
    assert model.best_C_ == best and model.best_params_ == {"Cs": (best,)} and model.summary_["best_C"] == best


def test_classes_are_the_label_names_and_predict_is_the_argmax():
    X, y, groups = _toy()
    model = TunedSVM(n_jobs=1).fit(X, y, groups=groups)
    assert list(model.classes_) == ["class0", "class1", "class2"]
    scores = model.decision_function(X)
    np.testing.assert_array_equal(model.predict(X), model.classes_[scores.argmax(axis=1)])


def test_a_single_c_fits_without_cross_validation():
    X, y, groups = _toy()
    model = TunedSVM(Cs=(0.01,)).fit(X, y, groups=groups)
    assert model.best_C_ == 0.01 and model.cv_results_ is None
    reference = make_svm(0.01).fit(X, np.unique(y, return_inverse=True)[1])
    np.testing.assert_allclose(model.decision_function(X), reference.decision_function(X))


def test_clips_pool_window_scores_before_c_is_chosen():
    """With clips given, a split's accuracy counts clips (mean window scores), not windows."""
    data = blobs(n_classes=3, sep=0.35, dim=10, windows=5, seed=10)
    X, folds = data["features"], data["folds"]
    y = np.array(data["label_names"], dtype=object)[data["labels"]]
    clips = np.unique(data["ids"].astype(str), return_inverse=True)[1]
    grid = (1e-3, 1e-1)
    per_clip = TunedSVM(Cs=grid, n_jobs=1).fit(X, y, groups=folds, clips=clips)
    per_row = TunedSVM(Cs=grid, n_jobs=1).fit(X, y, groups=folds)
    assert [r["accuracy"] for r in per_clip.cv_results_] != [r["accuracy"] for r in per_row.cv_results_]
    n_clips_per_fold = len(np.unique(clips)) // 5
    for row in per_clip.cv_results_:  # accuracies are multiples of one clip in a fold
        for value in row["fold_accuracy"]:
            assert value * n_clips_per_fold == pytest.approx(round(value * n_clips_per_fold))


@pytest.mark.parametrize("metric", ["macro_f1", "uar"])
def test_selection_metric_is_what_the_table_holds(metric):
    X, y, groups = _toy(seed=12)
    model = TunedSVM(select_metric=metric, n_jobs=1).fit(X, y, groups=groups)
    assert all(metric in row and f"fold_{metric}" in row for row in model.cv_results_)
    assert model.best_C_ == max(model.cv_results_, key=lambda r: (r[metric], -r["C"]))["C"]


def test_parallel_splits_give_the_same_result():
    X, y, groups = _toy(seed=8)
    a = TunedSVM(n_jobs=1).fit(X, y, groups=groups)
    b = TunedSVM(n_jobs=2).fit(X, y, groups=groups)
    assert a.cv_results_ == b.cv_results_
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))


@pytest.mark.parametrize("params,words", [({"Cs": (0.0, 1.0)}, "positive"), ({"kind": "rbf"}, "unknown SVM kind"),
                                          ({"select_metric": "auc"}, "selection metric")])
def test_bad_parameters_fail_in_fit_with_a_value_error(params, words):
    X, y, groups = _toy()
    est = TunedSVM(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=words):
        est.fit(X, y, groups=groups)


def test_predict_before_fit_is_not_fitted_error():
    with pytest.raises(NotFittedError):
        TunedSVM().predict(np.zeros((2, 3)))
