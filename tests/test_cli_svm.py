import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepfeat.cli.main import main
from deepfeat.scores import read_scores

from .helpers import blobs, write_store


def run(argv, capsys):
    """Run ``deepfeat ARGV``; returns (exit status, stdout, stderr)."""
    try:
        main(argv)
        status = 0
    except SystemExit as e:
        status = e.code or 0
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture(scope="module")
def separable_store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("stores") / "toy.h5", blobs(n_classes=3, seed=0))


def test_svm_writes_a_run_and_prints_a_summary(separable_store, tmp_path, capsys):
    status, out, _ = run(["svm", str(separable_store), "--fold", "5", "-o", str(tmp_path / "run"), "-j", "1"], capsys)
    assert status == 0
    assert out.splitlines()[0].startswith("svm-toynet-none (test fold 5, best C")
    assert out.splitlines()[3].split() == ["test", "100.00", "100.00", "100.00"]
    run_dir = tmp_path / "run"
    for name in ("metrics.json", "report.txt", "report.json", "confusion_matrix.png", "model.joblib", "scores.h5"):
        assert (run_dir / name).is_file(), name
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["test_accuracy"] == 1.0 and m["devel_accuracy"] == 1.0 and m["folds"] == [1, 2, 3, 4, 5]
    assert len(m["store_sha256"]) == 64 and m["timings"]["total_seconds"] > 0
    for key in ("devel_macro_f1", "test_macro_f1", "test_uar", "best_C"):
        assert key in m
    scores = read_scores(run_dir / "scores.h5")
    assert scores.system == "svm-toynet-none" and scores.test_fold == 5 and len(scores.ids) == 60


def test_default_run_dir_is_results_dataset_system(separable_store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(["svm", str(separable_store), "-q"], capsys)
    run_dir = Path("results") / "toy" / "svm-toynet-none"
    assert status == 0 and out.splitlines() == [
        f"svm-toynet-none: test accuracy 100.00 % (devel 100.00 %, test fold 5) → {run_dir}"]
    assert (tmp_path / run_dir / "metrics.json").is_file()


def test_quiet_cross_validation_prints_one_line(separable_store, tmp_path, capsys):
    status, out, _ = run(["svm", str(separable_store), "--cv", "-o", str(tmp_path), "-q"], capsys)
    assert status == 0 and out.splitlines() == [
        f"svm-toynet-none: test accuracy 100.00 ± 0.00 % (devel 100.00 ± 0.00 %, 5-fold CV) → {tmp_path}"]


def test_metrics_json_scores_are_named_fractions(separable_store, tmp_path, capsys):
    """Every score in metrics.json is a fraction in [0, 1], and the file says so."""
    run(["svm", str(separable_store), "--fold", "3", "-o", str(tmp_path), "--c-grid", "1e-5,1", "-q"], capsys)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["score_units"].startswith("fraction in [0, 1]")
    scores = {k: v for k, v in m.items() if k.endswith(("_accuracy", "_macro_f1", "_uar")) and k != "devel_fold_accuracy"}
    scores.update({f"devel_fold_accuracy.{k}": v for k, v in m["devel_fold_accuracy"].items()})
    scores.update({f"cv.{row['C']}": row["accuracy"] for row in m["cv"]})
    assert len(scores) == 6 + 4 + 2 and all(0.0 <= v <= 1.0 for v in scores.values()), scores
    assert m["test_accuracy"] == 1.0


def test_json_output(separable_store, tmp_path, capsys):
    status, out, _ = run(["svm", str(separable_store), "--fold", "2", "-o", str(tmp_path), "--json", "--c-grid",
                          "0.001,0.1", "--svm", "linearsvc", "--class-weight", "balanced"], capsys)
    m = json.loads(out)
    assert status == 0 and m["test_fold"] == 2 and m["c_grid"] == [0.001, 0.1] and m["best_C"] in (0.001, 0.1)
    assert m["svm"] == "linearsvc" and m["class_weight"] == "balanced" and "LinearSVC" in m["pipeline"]


def test_cross_validation_runs_every_fold(separable_store, tmp_path, capsys):
    status, out, _ = run(["svm", str(separable_store), "--cv", "-o", str(tmp_path), "--json"], capsys)
    summary = json.loads(out)
    assert status == 0 and summary["folds"] == [1, 2, 3, 4, 5]
    assert [f["test_fold"] for f in summary["per_fold"]] == [1, 2, 3, 4, 5]
    assert summary["test_accuracy"] == 1.0 and summary["test_accuracy_std"] == 0.0
    for k in range(1, 6):
        assert json.loads((tmp_path / f"fold-{k}" / "metrics.json").read_text())["test_fold"] == k
    assert json.loads((tmp_path / "cv_metrics.json").read_text())["test_accuracy"] == 1.0


def test_cross_validation_table(separable_store, tmp_path, capsys):
    status, out, _ = run(["svm", str(separable_store), "--cv", "-o", str(tmp_path)], capsys)
    assert status == 0 and "5-fold CV" in out and "100.00 ± 0.00" in out


@pytest.mark.parametrize("per_window", [False, True])
def test_windowed_store_pools_per_clip_unless_per_window(tmp_path, capsys, per_window):
    store = write_store(tmp_path / "win.h5", blobs(n_classes=3, windows=3, seed=1))
    run_dir = tmp_path / "out"
    args = ["svm", str(store), "-o", str(run_dir), "--json"] + (["--per-window"] if per_window else [])
    status, out, _ = run(args, capsys)
    m = json.loads(out)
    scores = read_scores(run_dir / "scores.h5")
    assert status == 0 and m["unit"] == ("window" if per_window else "clip")
    assert len(scores.ids) == (180 if per_window else 60) and len(set(scores.ids)) == len(scores.ids)
    assert m["system"] == ("svm-toynet-none-per-window" if per_window else "svm-toynet-none")


def _set(path, name, fn):
    with h5py.File(path, "r+") as f:
        values = f[name][()]
        fn(values)
        f[name][...] = values


@pytest.mark.parametrize("edit,args,words", [
    (lambda p: _set(p, "features", lambda v: v.__setitem__((2, 0), np.nan)), [], "NaN/inf"),
    (lambda p: _set(p, "labels", lambda v: v.__setitem__(slice(0, 3), -1)), [], "unlabelled"),
    (lambda p: _set(p, "labels", lambda v: v.__setitem__(slice(None), 1)), [], "at least 2 classes"),
    ("empty", [], "no feature rows"),
    (None, ["--fold", "9"], "fold 9 is not in the data"),
    (None, ["--c-grid", "0,1"], "positive"),
    ("missing", [], "no such feature store"),
])
@pytest.mark.parametrize("kind", ["svc", "sgd"])
def test_bad_input_is_one_error_line(tmp_path, capsys, edit, args, words, kind):
    data = blobs(n_classes=3, seed=2)
    if edit == "empty":
        data = {**data, **{k: data[k][:0] for k in ("features", "ids", "labels", "folds")}}
    path = tmp_path / "bad.h5"
    if edit != "missing":
        write_store(path, data)
    if callable(edit):
        edit(path)
    status, out, err = run(["svm", str(path), "-o", str(tmp_path / "run"), "--svm", kind, *args], capsys)
    assert status == 2 and out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1 and words in err
    if "--c-grid" not in args:
        assert "bad.h5" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_too_many_rows_for_the_kernel_svm_points_to_linearsvc(separable_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("deepfeat.classify.MAX_KERNEL_ROWS", 50)  # the store has 60 rows
    status, _, err = run(["svm", str(separable_store), "-o", str(tmp_path)], capsys)
    assert status == 2 and "--svm linearsvc" in err and "toy.h5" in err
    status, _, _ = run(["svm", str(separable_store), "-o", str(tmp_path), "--svm", "linearsvc", "-q"], capsys)
    assert status == 0
