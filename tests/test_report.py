"""deepfeat.report: the results table of a dataset built from real `svm` and `fuse` run folders
(small synthetic feature stores, no audio), plus a CRNN-like run."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from deepfeat.classify import run_svm
from deepfeat.errors import ConfigError
from deepfeat.evaluation import classification_metrics, write_run
from deepfeat.fusion import run_fusion, select_group
from deepfeat.report import CHART, README, accuracy_figure, chart_range, collect_runs, fusion_verdict, write_report
from deepfeat.store import StoreWriter

from .test_fusion import LABEL_NAMES, N_CLASSES, clip_table, synthetic_system

DATASET = "synthetic"
STORES = [  # network, weights, kind, classes it separates well, extraction seconds
    ("efficientnet_lite0", "imagenet", "image", (0, 1, 2), 30.0),
    ("densenet121", "none", "image", (2, 3), 40.0),
    ("resnet50", "none", "image", (3, 4), 50.0),
    ("birdnet", "birdnet_v2.4", "audio", (0, 4), 20.0),
]


def write_store(path, network, weights, kind, good, seconds, seed, dim: int = 12):
    """A complete feature store whose features separate the classes ``good`` and not the others."""
    rng = np.random.default_rng(seed)
    ids, folds, labels = clip_table()
    means = rng.normal(size=(N_CLASSES, dim)) * np.isin(np.arange(N_CLASSES), good)[:, None] * 2.0
    features = means[labels] + rng.normal(size=(len(ids), dim))
    extractor = {"network": network, "kind": kind, "weights": weights, "layer": None, "seed": 0}
    if kind == "image":
        extractor["plot"] = {"colormap": "magma"}
    config = {"extractor": extractor, "weights_sha256": None,
              "dataset": {"name": DATASET, "n_clips": len(ids), "manifest_sha256": "0" * 64}}
    writer = StoreWriter(path, config, LABEL_NAMES, len(ids), attrs={
        "network": network, "layer": "x", "weights": weights, "dataset": DATASET})
    writer.commit(features, list(ids), labels, folds, clips_done=len(ids))
    return writer.finish({"extract_seconds": seconds, "device": "cpu"})


def write_crnn_run(run_dir, seed: int = 11, system: str = "crnn"):
    """A run folder as `deepfeat crnn` writes it (scores, metrics), without training a network."""
    scores = synthetic_system(system, (1, 3), seed=seed, family="crnn")
    test = scores.test_mask
    pred = scores.scores.argmax(axis=1)
    dev_folds = [1, 2, 3, 4]
    per_fold = [classification_metrics(scores.labels[scores.folds == k], pred[scores.folds == k], LABEL_NAMES)
                for k in dev_folds]
    t = classification_metrics(scores.labels[test], pred[test], LABEL_NAMES)
    metrics = {"dataset": DATASET, "test_fold": 5, "development_folds": dev_folds,
               "devel_accuracy": float(np.mean([m["accuracy"] for m in per_fold])),
               "test_accuracy": t["accuracy"], "test_macro_f1": t["macro_f1"], "test_uar": t["uar"],
               "epochs": 3, "augmentation": ["mixup"], "n_test": int(test.sum()), "timings": {"total_seconds": 77.0}}
    write_run(run_dir, system=system, metrics=metrics, scores=scores, y_true_test=scores.labels[test],
              y_pred_test=pred[test], label_names=LABEL_NAMES)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """results/synthetic with 4 SVM runs, a CRNN run and stacking/mean fusions of two groups."""
    root = tmp_path_factory.mktemp("report")
    results_dir = root / "results" / DATASET
    for seed, (network, weights, kind, good, seconds) in enumerate(STORES):
        store = write_store(root / "features" / f"{network}.h5", network, weights, kind, good, seconds, seed)
        run_svm(store, fold=5, run_dir=results_dir / f"svm-{network}-{weights}", c_grid=(1e-2, 1e-1, 1.0), n_jobs=1)
    write_crnn_run(results_dir / "crnn")
    for group in ("untrained", "all"):
        for method in ("stacking", "mean"):
            run_fusion(select_group(results_dir, group, 5), method=method, group=group, results_dir=results_dir)
    return results_dir


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| `")]


def test_report_has_one_row_per_run_singles_then_fusions(results):
    path = write_report(results)
    assert path == results / README
    rows = _table_rows(path.read_text())
    systems = [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]
    assert systems == ["svm-efficientnet_lite0-imagenet", "svm-densenet121-none", "svm-resnet50-none",
                       "svm-birdnet-birdnet_v2.4", "crnn", "fusion-untrained-stacking", "fusion-untrained-mean",
                       "fusion-all-stacking", "fusion-all-mean"]


def test_report_cells_are_the_runs_measurements(results):
    text = write_report(results).read_text()
    rows = {re.match(r"\| `([^`]+)`", r).group(1): [c.strip() for c in r.strip("|").split("|")]
            for r in _table_rows(text)}
    for system, cells in rows.items():
        metrics = json.loads((results / system / "metrics.json").read_text())
        assert cells[5].strip("*") == f"{100 * metrics['devel_accuracy']:.1f}"
        assert cells[6].strip("*") == f"{100 * metrics['test_accuracy']:.1f}"
        assert cells[7] == f"{100 * metrics['test_macro_f1']:.1f}"
    assert rows["svm-densenet121-none"][3] == "none (random init)"
    assert rows["svm-efficientnet_lite0-imagenet"][3] == "ImageNet"
    assert rows["svm-efficientnet_lite0-imagenet"][4] == "magma"
    assert rows["svm-resnet50-none"][10] == "50 (cpu)"  # the store's extract_seconds
    assert rows["crnn"][1] == "CRNN" and rows["crnn"][10] == "–" and rows["crnn"][11] == "77.0"
    assert rows["fusion-all-stacking"][1] == "fusion" and rows["fusion-all-stacking"][9] != "–"  # stacking has a C
    assert rows["fusion-all-mean"][9] == "–"


def test_report_marks_the_best_accuracies(results):
    text = write_report(results).read_text()
    runs, _ = collect_runs(results)
    best_test = max(r.metrics["test_accuracy"] for r in runs)
    assert f"**{100 * best_test:.1f}**" in text


def test_report_writes_the_chart(results):
    write_report(results)
    png = (results / CHART).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert f"]({CHART})" in (results / README).read_text()


def test_chart_is_sorted_best_on_top_and_zoomed_to_the_data(results):
    runs, _ = collect_runs(results)
    ax = accuracy_figure(runs, "synthetic, test fold 5").axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()][::-1]  # top to bottom
    test = {r.system: 100 * r.metrics["test_accuracy"] for r in runs}
    assert sorted(labels) == sorted(test) and [test[s] for s in labels] == sorted(test.values(), reverse=True)
    low = min(min(test.values()), min(100 * r.metrics["devel_accuracy"] for r in runs))
    assert ax.get_xlim() == chart_range([low]) and ax.get_xlim()[0] <= low - 2
    assert ax.get_title().startswith("Test accuracy per system, best on top: synthetic")
    written = {t.get_text() for t in ax.texts}
    assert {f"{v:.1f}" for v in test.values()} <= written  # every bar says its value


@pytest.mark.parametrize("values, expected", [([88.8, 71.2, 93.8], (65.0, 100.0)), ([99.0, 97.5], (95.0, 100.0)),
                                              ([1.0, 50.0], (0.0, 100.0)), ([72.0], (70.0, 100.0))])
def test_chart_range(values, expected):
    assert chart_range(values) == expected


def test_audio_models_are_told_apart_without_their_scores_file(results, tmp_path):
    """A run folder without scores.h5 (e.g. a committed results/ folder) is classified from its
    metrics: BirdNET is an audio model, not an image CNN."""
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    for scores in copy.rglob("scores.h5"):
        scores.unlink()
    tuned = copy / "finetune-efficientnet_lite0-imagenet"  # a fine-tuning run's metrics name its network too
    shutil.copytree(copy / "svm-efficientnet_lite0-imagenet", tuned)
    metrics = json.loads((tuned / "metrics.json").read_text())
    metrics.update(system=tuned.name, train_blocks=2, ensemble=1, training={"epochs": 3})
    (tuned / "metrics.json").write_text(json.dumps(metrics))
    runs = collect_runs(copy)[0]
    kinds = {r.system: r.kind for r in runs if not r.is_fusion}
    assert kinds["svm-birdnet-birdnet_v2.4"] == "audio" and kinds["svm-efficientnet_lite0-imagenet"] == "image-imagenet"
    assert kinds[tuned.name] == "finetune"
    assert "| fine-tuned CNN | efficientnet_lite0 | ImageNet | last 2 stages, 3 epochs |" in write_report(copy).read_text()


def test_extraction_is_blank_when_the_store_is_gone(results, tmp_path):
    metrics_path = results / "svm-birdnet-birdnet_v2.4" / "metrics.json"
    original = metrics_path.read_text()
    try:
        metrics_path.write_text(original.replace("birdnet.h5", "gone.h5"))
        row = next(r for r in _table_rows(write_report(results).read_text()) if "svm-birdnet" in r)
        assert row.strip("|").split("|")[10].strip() == "–"
    finally:
        metrics_path.write_text(original)


@pytest.mark.parametrize("fusion_devel, fusion_test, expect", [
    (0.99, 0.99, ("beats every single system on devel", "matches or beats the best single system")),
    (0.60, 0.99, ("does not beat every single system on devel", "matches or beats")),
    (0.99, 0.10, ("beats every single system on devel", "falls below the best single system")),
])
def test_fusion_verdict(results, fusion_devel, fusion_test, expect):
    runs, _ = collect_runs(results)
    fusion = next(r for r in runs if r.is_fusion)
    for r in runs:
        if r.is_fusion and r is not fusion:
            r.metrics["devel_accuracy"] = 0.0
    fusion.metrics.update(devel_accuracy=fusion_devel, test_accuracy=fusion_test)
    text = " ".join(fusion_verdict(runs))
    for phrase in expect:
        assert phrase in text


def test_other_test_folds_are_left_out_unless_asked_for(results):
    other = results / "svm-vgg16-imagenet-fold3"
    scores = synthetic_system("svm-vgg16-imagenet", (0,), seed=5, test_fold=3)
    write_run(other, system=scores.system, metrics={"test_fold": 3, "devel_accuracy": 0.5, "test_accuracy": 0.5},
              scores=scores, y_true_test=scores.labels[:4], y_pred_test=scores.labels[:4], label_names=LABEL_NAMES)
    try:
        assert "svm-vgg16-imagenet" not in write_report(results).read_text()
        runs, fold = collect_runs(results, fold=3)
        assert fold == 3 and [r.system for r in runs] == ["svm-vgg16-imagenet"]
    finally:
        import shutil

        shutil.rmtree(other)
        write_report(results)


def test_a_nested_study_with_its_own_table_is_left_out(results):
    """The runs of e.g. ``deepfeat ssl-study`` (``results/esc10/ssl/``, which has its README) are that
    study's rows, neither the dataset table's nor a group fusion's members."""
    import shutil

    from deepfeat.fusion.groups import find_scores

    study = results / "study"
    write_crnn_run(study / "runs" / "crnn-other", seed=3, system="crnn-other")
    try:
        assert "crnn-other" in [r.system for r in collect_runs(results)[0]]  # a plain subfolder's run counts
        assert any(study in p.parents for p in find_scores(results))
        (study / "README.md").write_text("# a study of its own\n")
        assert "crnn-other" not in [r.system for r in collect_runs(results)[0]]
        assert all(study not in p.parents for p in find_scores(results))
    finally:
        shutil.rmtree(study)


def test_a_folder_without_runs_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no metrics.json"):
        write_report(tmp_path)
    with pytest.raises(ConfigError, match="no such results folder"):
        write_report(tmp_path / "missing")


def test_fusion_extraction_is_the_sum_over_its_members(results):
    text = write_report(results).read_text()
    row = next(r for r in _table_rows(text) if r.startswith("| `fusion-untrained-stacking`"))
    assert row.strip("|").split("|")[10].strip() == "Σ 90"  # densenet121 40 s + resnet50 50 s


def test_report_command(results, capsys):
    from deepfeat.cli.main import main

    main(["report", str(results)])
    assert capsys.readouterr().out.strip() == f"wrote {results / README}"
