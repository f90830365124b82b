"""deepfeat.classify (``deepfeat svm``): system names, store checks and the fold protocol of a
TunedSVM on feature stores, including the no-leakage properties."""
from __future__ import annotations

import numpy as np
import pytest
import sklearn.preprocessing
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from deepfeat.classify import evaluate_store, system_name
from deepfeat.errors import ConfigError, DeepfeatError, StoreError
from deepfeat.svm import DEFAULT_C_GRID, TunedSVM

from .helpers import blobs, feature_set


@pytest.mark.parametrize("attrs,config,per_window,windows,expected", [
    ({"network": "efficientnet_lite0", "weights": "imagenet"}, {}, False, 1, "svm-efficientnet_lite0-imagenet"),
    ({"network": "vgg16", "weights": "imagenet"}, {"extractor": {"plot": {"colormap": "magma"}}}, False, 1,
     "svm-vgg16-imagenet"),  # the default colour map is not named
    ({"network": "vgg16", "weights": "imagenet"}, {"extractor": {"plot": {"colormap": "viridis"}}}, False, 1,
     "svm-vgg16-imagenet-viridis"),
    ({"network": "densenet121", "weights": "/ckpt/my_model.pth"}, {}, False, 1, "svm-densenet121-my_model"),
    ({"network": "panns_cnn14", "weights": "audioset"}, {}, True, 3, "svm-panns_cnn14-audioset-per-window"),
    ({"network": "panns_cnn14", "weights": "audioset"}, {}, True, 1, "svm-panns_cnn14-audioset"),
])
def test_system_name(attrs, config, per_window, windows, expected):
    fs = feature_set(blobs(n_folds=2, per_cell=1, windows=windows), attrs=attrs, config=config)
    assert system_name(fs, per_window=per_window) == expected


# ------------------------------------------------------------------------------------------------
# The protocol on feature stores


@pytest.mark.parametrize("kind", ["svc", "linearsvc"])
@pytest.mark.parametrize("n_classes,windows", [(2, 1), (4, 1), (3, 3)])
def test_separable_store_is_classified_perfectly(kind, n_classes, windows):
    data = blobs(n_classes=n_classes, windows=windows, seed=n_classes)
    result = evaluate_store(feature_set(data), 5, estimator=TunedSVM(kind=kind, n_jobs=1))
    m = result.metrics
    assert m["test_accuracy"] == 1.0 and m["test_macro_f1"] == 1.0 and m["test_uar"] == 1.0
    assert m["devel_accuracy"] == 1.0 and m["best_C"] in DEFAULT_C_GRID
    assert m["development_folds"] == [1, 2, 3, 4] and m["test_fold"] == 5
    n_clips = 4 * n_classes  # per_cell clips per class in the test fold
    assert m["n_test"] == n_clips and m["n_test_rows"] == n_clips * windows and m["n_devel"] == 4 * n_clips
    assert result.scores.scores.shape == (5 * n_clips, n_classes)
    assert len(set(result.scores.ids)) == 5 * n_clips  # one row per clip


def test_noisy_store_scores_between_chance_and_perfect():
    data = blobs(n_classes=4, sep=0.45, dim=16, per_cell=6, seed=3)
    m = evaluate_store(feature_set(data), 5).metrics
    assert 0.4 < m["devel_accuracy"] < 1.0 and 0.4 < m["test_accuracy"] <= 1.0  # chance is 0.25


@pytest.mark.parametrize("test_fold", [1, 3, 5])
def test_metrics_are_consistent_with_the_scores(test_fold):
    data = blobs(n_classes=3, sep=0.6, dim=10, seed=4)
    result = evaluate_store(feature_set(data), test_fold)
    m, s = result.metrics, result.scores
    best_row = next(r for r in m["cv"] if r["C"] == m["best_C"])
    top = max(r["accuracy"] for r in m["cv"])
    assert best_row["accuracy"] == top == pytest.approx(m["devel_accuracy"])
    assert m["best_C"] == min(r["C"] for r in m["cv"] if r["accuracy"] == top)  # ties: the smallest C
    assert s.test_fold == test_fold
    for k, acc in m["devel_fold_accuracy"].items():  # devel = mean of per-fold accuracies of the OOF scores
        rows = s.folds == k
        assert np.mean(s.scores[rows].argmax(1) == s.labels[rows]) == pytest.approx(acc)
    test = s.folds == test_fold
    np.testing.assert_array_equal(result.y_pred_test, s.scores[test].argmax(1))
    assert np.mean(result.y_pred_test == result.y_true_test) == pytest.approx(m["test_accuracy"])


def test_scores_are_out_of_fold_and_test_scores_come_from_the_refit():
    """Every development clip's score equals that of a model fitted without its fold (best C);
    test scores equal a model fitted on exactly the development folds."""
    data = blobs(n_classes=3, sep=0.6, dim=10, seed=5)
    fs = feature_set(data)
    result = evaluate_store(fs, 4)
    C, s = result.metrics["best_C"], result.scores
    X, y, folds = data["features"], data["labels"], data["folds"]
    for k in (1, 2, 3, 5, 4):
        train = (folds != 4) & (folds != k) if k != 4 else folds != 4
        model = Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="linear", C=C))]).fit(X[train], y[train])
        np.testing.assert_allclose(s.scores[folds == k], model.decision_function(X[folds == k]), rtol=1e-3, atol=1e-3)


def test_test_fold_does_not_influence_tuning():
    """Replace the test fold's features and labels: C, devel scores and OOF scores stay the same."""
    data = blobs(n_classes=3, sep=0.6, dim=10, seed=6)
    rng = np.random.default_rng(0)
    changed = {**data, "features": data["features"].copy(), "labels": data["labels"].copy()}
    test = data["folds"] == 2
    changed["features"][test] = 50 + 10 * rng.standard_normal(changed["features"][test].shape)
    changed["labels"][test] = rng.permutation(changed["labels"][test])
    a, b = evaluate_store(feature_set(data), 2), evaluate_store(feature_set(changed), 2)
    assert a.metrics["best_C"] == b.metrics["best_C"] and a.metrics["cv"] == b.metrics["cv"]
    dev = ~test
    np.testing.assert_array_equal(a.scores.scores[dev], b.scores.scores[dev])


class RecordingScaler(StandardScaler):
    """A StandardScaler that logs which rows (tagged in column 0) it was fitted on and transformed."""

    log: list = []

    def fit(self, X, y=None, sample_weight=None):
        self.fitted_tags_ = frozenset(np.asarray(X)[:, 0].astype(int).tolist())
        RecordingScaler.log.append(("fit", id(self), self.fitted_tags_))
        return super().fit(X, y, sample_weight)

    def transform(self, X, copy=None):
        RecordingScaler.log.append(("transform", id(self), frozenset(np.asarray(X)[:, 0].astype(int).tolist())))
        return super().transform(X, copy)


@pytest.mark.parametrize("kind", ["svc", "linearsvc"])
@pytest.mark.parametrize("windows", [1, 2])
def test_scaler_never_sees_the_rows_it_scores(kind, windows, monkeypatch):
    data = blobs(n_classes=3, sep=1.0, windows=windows, seed=7)
    data["features"][:, 0] = np.arange(len(data["features"]))  # row tag
    folds = data["folds"]
    fold_of = dict(enumerate(folds.tolist()))
    test_fold = 3
    RecordingScaler.log = []
    monkeypatch.setattr(sklearn.preprocessing, "StandardScaler", RecordingScaler)
    estimator = TunedSVM(Cs=(1e-3, 1e-1, 10.0), kind=kind, n_jobs=1)
    evaluate_store(feature_set(data), test_fold, estimator=estimator)
    fits, scored, current = [], [], {}
    for event, inst, tags in RecordingScaler.log:  # in order: an id may be reused after an instance is freed
        if event == "fit":
            current[inst] = tags
            fits.append(tags)
        elif tags != current[inst]:  # transforming its own training rows is part of fitting
            scored.append((current[inst], tags))
    test_rows = frozenset(np.flatnonzero(folds == test_fold).tolist())
    dev_rows = frozenset(np.flatnonzero(folds != test_fold).tolist())
    # fitted on each development split and on all development rows, never on test rows
    splits = {dev_rows - set(np.flatnonzero(folds == k).tolist()) for k in (1, 2, 4, 5)}
    assert set(fits) == splits | {dev_rows}
    # every scoring pass: rows of folds the scaler was not fitted on; the test fold only by the refit
    assert len(scored) >= 9  # 4 tuning splits, 4 out-of-fold refits, the test fold
    for fitted, tags in scored:
        assert not {fold_of[r] for r in tags} & {fold_of[r] for r in fitted}
        if tags & test_rows:
            assert tags == test_rows and fitted == dev_rows


def test_windowed_clip_scores_are_the_mean_of_window_scores():
    data = blobs(n_classes=3, sep=0.5, dim=10, windows=3, seed=9)
    fs = feature_set(data)
    pooled = evaluate_store(fs, 5, estimator=TunedSVM(Cs=(0.01,)))
    windows = evaluate_store(fs, 5, estimator=TunedSVM(Cs=(0.01,)), per_window=True)
    assert pooled.metrics["unit"] == "clip"
    assert windows.metrics["unit"] == "window" and windows.metrics["n_test"] == 3 * pooled.metrics["n_test"]
    clip_of_window = np.array([i.split("@")[0] for i in windows.scores.ids])
    for clip, score in zip(pooled.scores.ids, pooled.scores.scores):
        np.testing.assert_allclose(score, windows.scores.scores[clip_of_window == clip].mean(axis=0), rtol=1e-5)


def test_pooling_beats_single_windows_when_windows_are_noisy():
    data = blobs(n_classes=3, sep=0.35, dim=10, windows=9, seed=10)
    fs = feature_set(data)
    pooled = evaluate_store(fs, 5, estimator=TunedSVM(Cs=(0.01,))).metrics
    windows = evaluate_store(fs, 5, estimator=TunedSVM(Cs=(0.01,)), per_window=True).metrics
    assert pooled["test_accuracy"] > windows["test_accuracy"]


# ------------------------------------------------------------------------------------------------
# Bad input


def _nan_row(d):
    d["features"][3, 1] = np.nan


def _inf_row(d):
    d["features"][-1, 0] = np.inf


def _unlabelled(d):
    d["labels"][:2] = -1


def _one_class(d):
    d["labels"][:] = 0


def _no_fold(d):
    d["folds"][4:6] = 0  # both windows of a clip


def _window_disagrees(d):
    d["labels"][1] = (d["labels"][0] + 1) % 3


def _empty(d):
    for k in ("features", "ids", "labels", "folds"):
        d[k] = d[k][:0]


def _single_class_split(d):  # class 1 only in fold 1, class 0 elsewhere: dev folds 2-4 hold one class
    d["labels"][:] = np.where(d["folds"] == 1, 1, 0)


@pytest.mark.parametrize("corrupt,test_fold,error,words", [
    (_nan_row, 5, StoreError, "NaN/inf"),
    (_inf_row, 5, StoreError, "NaN/inf"),
    (_unlabelled, 5, StoreError, "unlabelled"),
    (_one_class, 5, StoreError, "at least 2 classes"),
    (_no_fold, 5, ConfigError, "no fold"),
    (_window_disagrees, 5, StoreError, "different labels"),
    (_empty, 5, StoreError, "no feature rows"),
    (_single_class_split, 5, StoreError, "single class"),
    (None, 7, ConfigError, "fold 7 is not in"),
    (None, 0, ConfigError, "fold 0 is not in"),
])
def test_bad_input_raises_one_clear_line(corrupt, test_fold, error, words):
    data = blobs(windows=2, seed=11)
    if corrupt:
        corrupt(data)
    with pytest.raises(error) as info:
        evaluate_store(feature_set(data, path="bad.h5"), test_fold)
    message = str(info.value)
    assert isinstance(info.value, DeepfeatError) and "bad.h5" in message and words in message and "\n" not in message


def test_two_folds_are_too_few_for_cross_validation():
    with pytest.raises(ConfigError, match="at least 2"):
        evaluate_store(feature_set(blobs(n_folds=2)), 2)
