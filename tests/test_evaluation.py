import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score

from deepfeat.errors import ConfigError
from deepfeat.evaluation import (
    classification_metrics, default_run_dir, development_folds, jsonable, summarise_folds, summary_table,
    write_json, write_run,
)
from deepfeat.scores import Scores, read_scores

NAMES = ["dog", "rain", "sea_waves", "rooster"]


@pytest.mark.parametrize("y_true,y_pred,expected", [
    ([0, 1, 2, 3], [0, 1, 2, 3], {"accuracy": 1.0, "macro_f1": 1.0, "uar": 1.0}),
    ([0, 1, 2, 3], [1, 2, 3, 0], {"accuracy": 0.0, "macro_f1": 0.0, "uar": 0.0}),
    # imbalanced: always "dog" is 75 % accurate but recalls one class of two
    ([0, 0, 0, 1], [0, 0, 0, 0], {"accuracy": 0.75, "macro_f1": (2 * 0.75 / 1.75 + 0) / 2, "uar": 0.5}),
    ([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], {"accuracy": 4 / 6, "uar": (0.5 + 1 + 0.5) / 3,
                                               "macro_f1": (0.5 + 0.8 + 2 / 3) / 3}),
])
def test_classification_metrics_known_values(y_true, y_pred, expected):
    m = classification_metrics(y_true, y_pred, NAMES)
    assert m["n"] == len(y_true)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value)


@pytest.mark.parametrize("seed", range(4))
def test_classification_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    m = classification_metrics(y_true, y_pred, NAMES)
    assert m["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_uar_ignores_classes_absent_from_the_truth():
    m = classification_metrics([0, 0, 1, 1], [0, 3, 1, 1], NAMES)  # class 3 predicted, never true
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.parametrize("y_true,y_pred", [([0, 1], [0]), ([], []), ([0, 4], [0, 1]), ([0, -1], [0, 0])])
def test_classification_metrics_reject_bad_labels(y_true, y_pred):
    with pytest.raises(ValueError):
        classification_metrics(y_true, y_pred, NAMES)


@pytest.mark.parametrize("folds,test_fold,expected", [
    ([1, 2, 3, 4, 5], 5, [1, 2, 3, 4]),
    ([1, 2, 3, 4, 5], 1, [2, 3, 4, 5]),
    (np.array([3, 1, 1, 2, 3, 2, 10]), 2, [1, 3, 10]),  # per-row folds, any numbering
    ((f for f in [1, 2, 3]), 3, [1, 2]),
])
def test_development_folds(folds, test_fold, expected):
    assert development_folds(folds, test_fold) == expected


@pytest.mark.parametrize("folds,test_fold,words", [
    ([1, 2, 3, 4, 5], 6, "fold 6 is not in the data (folds: 1, 2, 3, 4, 5)"),
    ([1, 2], 1, "at least 2"),
    ([1, 2, 3, 0], 1, "no fold (0)"),
    ([], 1, "no rows"),
])
def test_development_folds_errors_name_the_source(folds, test_fold, words):
    with pytest.raises(ConfigError) as info:
        development_folds(folds, test_fold, source="x.h5")
    assert str(info.value).startswith("x.h5: ") and words in str(info.value)


@pytest.mark.parametrize("dataset,system,expected", [
    ("esc10", "svm-efficientnet_lite0-imagenet", "results/esc10/svm-efficientnet_lite0-imagenet"),
    ("my data", "svm-a/b", "results/my_data/svm-a_b"),
    ("", "crnn", "results/unknown/crnn"),
])
def test_default_run_dir(dataset, system, expected):
    assert default_run_dir(dataset, system) == Path(expected)


def test_jsonable_converts_numpy_and_non_finite():
    data = jsonable({"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), 4: Path("x"), "d": (np.int64(2),),
                     "e": np.float64("inf"), "f": np.array([1.0, np.nan])})
    assert data == {"a": 0.5, "b": [0, 1, 2], "c": None, "4": "x", "d": [2], "e": None, "f": [1.0, None]}
    json.dumps(data)


def _scores(n=12, test_fold=3):
    rng = np.random.default_rng(0)
    return Scores(system="svm-toy", ids=[f"clip{i}" for i in range(n)], folds=np.arange(n) % 3 + 1,
                  labels=np.arange(n) % 4, label_names=NAMES, scores=rng.standard_normal((n, 4)), test_fold=test_fold)


@pytest.mark.parametrize("with_model", [True, False])
def test_write_run_writes_every_output(tmp_path, with_model):
    scores = _scores()
    test = scores.test_mask
    y_true, y_pred = scores.labels[test], scores.scores[test].argmax(1)
    model = LogisticRegression().fit(np.eye(4), np.arange(4)) if with_model else None
    metrics = {"test_fold": 3, "test_accuracy": float(np.mean(y_true == y_pred)), "best_C": 0.01,
               "fold_values": np.array([0.5, 0.25])}
    run = write_run(tmp_path / "run", system="svm-toy", metrics=metrics, scores=scores, y_true_test=y_true,
                    y_pred_test=y_pred, label_names=NAMES, model=model)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["system"] == "svm-toy" and saved["test_accuracy"] == metrics["test_accuracy"]
    assert saved["fold_values"] == [0.5, 0.25] and saved["label_names"] == NAMES
    confusion = np.array(saved["test_confusion_matrix"])
    assert confusion.shape == (4, 4) and confusion.sum() == test.sum()
    assert np.trace(confusion) == np.sum(y_true == y_pred)
    report = (run / "report.txt").read_text()
    assert all(name in report for name in NAMES)
    per_class = json.loads((run / "report.json").read_text())
    assert per_class["dog"]["support"] == int(np.sum(y_true == 0))
    for name in ("confusion_matrix.png", "confusion_matrix_normalised.png"):
        with Image.open(run / name) as png:
            assert png.size[0] > 200 and png.size[1] > 200
    back = read_scores(run / "scores.h5")
    np.testing.assert_allclose(back.scores, scores.scores, rtol=1e-6)
    assert list(back.ids) == list(scores.ids) and back.test_fold == 3
    assert (run / "model.joblib").exists() == with_model
    if with_model:
        np.testing.assert_array_equal(joblib.load(run / "model.joblib").predict(np.eye(4)), model.predict(np.eye(4)))


def test_write_run_handles_many_classes(tmp_path):
    names = [f"class_with_a_long_name_{i}" for i in range(50)]
    rng = np.random.default_rng(1)
    y = rng.integers(0, 50, 200)
    scores = Scores(system="s", ids=[str(i) for i in range(200)], folds=np.full(200, 5), labels=y, label_names=names,
                    scores=rng.standard_normal((200, 50)), test_fold=5)
    run = write_run(tmp_path, system="s", metrics={"test_fold": 5}, scores=scores, y_true_test=y,
                    y_pred_test=scores.scores.argmax(1), label_names=names)
    assert (run / "confusion_matrix.png").stat().st_size > 0


def test_summarise_folds_mean_and_std():
    per_fold = [{"test_accuracy": 0.8, "devel_accuracy": 0.7}, {"test_accuracy": 0.9, "devel_accuracy": 0.7},
                {"test_accuracy": 1.0, "devel_accuracy": 0.7, "test_uar": None}]
    s = summarise_folds(per_fold)
    assert s["test_accuracy"] == pytest.approx(0.9) and s["test_accuracy_std"] == pytest.approx(np.std([0.8, 0.9, 1.0]))
    assert s["devel_accuracy_std"] == pytest.approx(0.0) and "test_uar" not in s


def test_summary_table_single_fold():
    text = summary_table({"system": "svm-x", "test_fold": 5, "best_C": 1e-3, "devel_accuracy": 0.775,
                          "devel_macro_f1": 0.7741, "devel_uar": 0.775, "test_accuracy": 0.8125,
                          "test_macro_f1": 0.8131, "test_uar": 0.8125, "timings": {"total_seconds": 1.25}})
    lines = text.splitlines()
    assert lines[0] == "svm-x (test fold 5, best C 1e-03)"
    assert lines[2].split() == ["devel", "77.50", "77.41", "77.50"]
    assert lines[3].split() == ["test", "81.25", "81.31", "81.25"]
    assert "time: 1.2 s" in text or "time: 1.3 s" in text


def test_summary_table_without_devel_or_c():
    text = summary_table({"system": "fusion", "test_fold": 1, "test_accuracy": 0.5})
    assert "devel" not in text and "best C" not in text and "50.00" in text and text.count("-") >= 2


def test_summary_table_cross_validation():
    per_fold = [{"test_fold": k, "best_C": 0.01, "devel_accuracy": 0.7, "test_accuracy": a} for k, a in
                [(1, 0.8), (2, 0.9)]]
    text = summary_table({"system": "svm-x", "per_fold": per_fold, **summarise_folds(per_fold)})
    assert "2-fold CV" in text and "85.00 ± 5.00" in text and "70.00 ± 0.00" in text
    assert any(line.split()[:4] == ["2", "1e-02", "70.00", "90.00"] for line in text.splitlines())


def test_write_json_creates_parents(tmp_path):
    path = write_json(tmp_path / "a" / "b.json", {"x": np.float64(1.5)})
    assert json.loads(path.read_text()) == {"x": 1.5}


@pytest.mark.parametrize("normalize, expected", [
    (False, [["3", "1", "0"], ["0", "2", "0"], ["1", "0", "0"]]),
    (True, [["75%", "25%", "0%"], ["0%", "100%", "0%"], ["100%", "0%", "0%"]]),
])
def test_confusion_figure_counts_or_row_percentages(normalize, expected):
    from deepfeat.evaluation import confusion_figure

    y_true, y_pred = [0, 0, 0, 0, 1, 1, 2], [0, 0, 0, 1, 1, 1, 0]
    ax = confusion_figure(y_true, y_pred, ["dog", "rain", "sea"], title="toy", normalize=normalize).axes[0]
    cells = sorted(ax.texts, key=lambda t: (t.get_position()[1], t.get_position()[0]))  # row 0 first (image rows)
    assert [[t.get_text() for t in cells[i * 3:(i + 1) * 3]] for i in range(3)] == expected
    assert ax.get_title() == "toy" + (", row-normalised" if normalize else "")
