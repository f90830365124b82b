"""``deepfeat fuse`` on the command line: explicit scores files, --group, methods, errors."""
from __future__ import annotations

import json

import pytest

from deepfeat.cli.main import main
from deepfeat.scores import read_scores

from .test_fusion import _corrupt, complementary_systems, synthetic_system


def deepfeat(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture
def results_dir(tmp_path):
    root = tmp_path / "results" / "synthetic"
    for s in complementary_systems() + [synthetic_system("svm-vgg16-none", (1, 3), seed=4, weights="none")]:
        s.write(root / s.system / "scores.h5")
    return root


def test_fuse_explicit_files_into_the_default_run_dir(results_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    paths = [results_dir / "svm-vgg16-imagenet" / "scores.h5", results_dir / "crnn" / "scores.h5"]
    assert deepfeat("fuse", *paths, "--fold", 5) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "results" / "synthetic" / "fusion-stacking-crnn+vgg16-imagenet"
    assert f"wrote {run_dir.relative_to(tmp_path)}" in out and "devel" in out and "test" in out
    assert read_scores(run_dir / "scores.h5").system == "fusion-stacking-crnn+vgg16-imagenet"


@pytest.mark.parametrize("methods, expected", [
    (["-m", "mean", "-m", "vote"], ["fusion-untrained-mean", "fusion-untrained-vote"]),
    (["-m", "all"], ["fusion-untrained-stacking", "fusion-untrained-mean", "fusion-untrained-vote"]),
])
def test_fuse_a_group_with_several_methods(results_dir, methods, expected, capsys):
    assert deepfeat("fuse", "--group", "untrained", results_dir, *methods, "-q") == 0
    lines = capsys.readouterr().out.splitlines()  # -q: one result line per run
    assert set(expected) <= {line.split(":")[0] for line in lines} and all(" test accuracy " in line for line in lines)
    for system in expected:
        metrics = json.loads((results_dir / system / "metrics.json").read_text())
        assert sorted(metrics["systems"]) == ["svm-resnet50-none", "svm-vgg16-none"]
        assert metrics["fusion"]["group"] == "untrained"


def test_fuse_json_output(results_dir, tmp_path, capsys):
    paths = [results_dir / name / "scores.h5" for name in ("svm-vgg16-imagenet", "svm-resnet50-none")]
    assert deepfeat("fuse", *paths, "-m", "mean", "--normalise", "softmax", "-o", tmp_path / "run", "--json") == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["method"] == "mean" and metrics["fusion"]["params"] == {"normalise": "softmax"}
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["run_dir"] == str(tmp_path / "run")


def test_stacking_options_reach_the_model(results_dir, tmp_path, capsys):
    paths = [results_dir / name / "scores.h5" for name in ("svm-vgg16-imagenet", "crnn")]
    assert deepfeat("fuse", *paths, "--c-grid", "0.5", "--svm", "linearsvc", "-o", tmp_path / "run", "--json") == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["best_C"] == 0.5 and "kind='linearsvc'" in metrics["estimator"]


@pytest.mark.parametrize("args, message", [
    (["-m", "all", "-o", "{tmp}/run"], "-o names one run but 4 methods"),
    (["--fold", "3"], "not --fold 3"),
    (["--c-grid", "0,1"], "C grid needs positive"),
])
def test_bad_options_are_one_line_errors(results_dir, tmp_path, capsys, args, message):
    paths = [results_dir / name / "scores.h5" for name in ("svm-vgg16-imagenet", "crnn")]
    assert deepfeat("fuse", *paths, *[a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err and err.count("\n") == 1


def test_group_among_explicit_files(results_dir, tmp_path, capsys):
    files = [results_dir / name / "scores.h5" for name in ("svm-vgg16-imagenet", "svm-vgg16-none", "svm-resnet50-none")]
    assert deepfeat("fuse", "--group", "untrained", *files, "-o", tmp_path / "run", "--json") == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["system"] == "fusion-untrained-stacking"
    assert sorted(metrics["systems"]) == ["svm-resnet50-none", "svm-vgg16-none"]


def test_a_folder_without_group_is_an_error(results_dir, capsys):
    assert deepfeat("fuse", results_dir) == 2
    assert "a folder; pass scores.h5 files" in capsys.readouterr().err


def test_group_with_too_few_systems(results_dir, capsys):
    assert deepfeat("fuse", "--group", "image+audio", results_dir, "--fold", 5) == 0  # 3 image CNNs, no audio: fine
    assert deepfeat("fuse", "--group", "imagenet", results_dir) == 2
    assert "needs at least two" in capsys.readouterr().err


def test_mismatched_scores_files_name_both(results_dir, tmp_path, capsys):
    a = results_dir / "svm-vgg16-imagenet" / "scores.h5"
    b = _corrupt(read_scores(results_dir / "crnn" / "scores.h5"), "labels").write(tmp_path / "other" / "scores.h5")
    assert deepfeat("fuse", a, b) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and str(a) in err and str(b) in err


def test_not_a_scores_file(results_dir, tmp_path, capsys):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"nope")
    assert deepfeat("fuse", results_dir / "crnn" / "scores.h5", bogus) == 2
    assert str(bogus) in capsys.readouterr().err
