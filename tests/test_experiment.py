"""deepfeat.experiment: the end-to-end driver and its skipping of finished stages.

Extraction, CRNN training and fine-tuning are replaced by fakes that write what those stages write (a feature
store; a run folder) from the demo manifest, so the test is fast; svm, fuse and report run for
real."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from deepfeat.datasets import load_manifest
from deepfeat.errors import ConfigError, DeepfeatError
from deepfeat.evaluation import classification_metrics, write_run
from deepfeat.experiment import (
    Experiment, FeatureSpec, Stages, crnn_expected, finetune_classifier, run_experiment,
)
from deepfeat.scores import Scores, read_scores
from deepfeat.store import StoreWriter

FEATURES = (FeatureSpec("efficientnet_lite0", "imagenet"), FeatureSpec("densenet121", "none"),
            FeatureSpec("resnet50", "none"), FeatureSpec("birdnet"))


class FakeStages(Stages):
    """`extract` and `crnn` faked, the other stages real; every call recorded as [stage, detail...]."""

    def __init__(self, data, exp: Experiment):
        super().__init__(exp)
        self.manifest = load_manifest(data)
        self.calls: list[list[str]] = []

    def extract(self, spec, store):
        self.calls.append(["extract", spec.network])
        if not store.exists():
            self.write_store(store, spec.network, spec.weights)

    def svm(self, store, run_dir):
        self.calls.append(["svm", str(store)])
        super().svm(store, run_dir)

    def crnn(self, run_dir):
        self.calls.append(["crnn"])
        self.write_crnn(run_dir)

    def finetune(self, spec, run_dir):
        self.calls.append(["finetune", spec.network])
        classifier, augment = finetune_classifier(self.exp, spec)
        config = {"network": classifier.network, "weights": classifier.weights,
                  "train_blocks": classifier.train_blocks, "ensemble": self.exp.finetune_ensemble,
                  "augmentation": augment.names(), "mixup_alpha": classifier.mixup_alpha,
                  "training": classifier.training_config().to_dict()}
        self.write_trained(run_dir, run_dir.name, config, {"model": "finetune", **config}, seed=2)

    def fuse(self, paths, method, group, run_dir):
        self.calls.append(["fuse", group, method])
        super().fuse(paths, method, group, run_dir)

    def report(self, results_dir):
        self.calls.append(["report", str(results_dir)])
        super().report(results_dir)

    def write_store(self, path, network: str, weights: str | None, seed: int = 0):
        m = self.manifest
        labels, folds = m.label_indices(), m.folds()
        rng = np.random.default_rng(abs(hash((network, seed))) % 2**32)
        features = np.eye(len(m.label_names), 8)[labels] * 3.0 + rng.normal(size=(len(m), 8))
        kind = "audio" if network == "birdnet" else "image"
        weights = weights or "birdnet_v2.4"
        extractor = {"network": network, "kind": kind, "weights": weights, "plot": {"colormap": "magma"}}
        config = {"extractor": extractor, "dataset": {"name": m.name, "manifest_sha256": m.fingerprint()}}
        writer = StoreWriter(path, config, m.label_names, len(m), overwrite=True,
                             attrs={"network": network, "weights": weights, "dataset": m.name})
        writer.commit(features, m.ids(), labels, folds, clips_done=len(m))
        writer.finish({"extract_seconds": 1.5, "device": "cpu"})

    def write_crnn(self, run_dir):
        system, expected = crnn_expected(self.exp)
        config = {**expected, "dataset": self.manifest.name}
        self.write_trained(run_dir, system, {"config": config}, config, seed=1)

    def write_trained(self, run_dir, system: str, provenance: dict, score_config: dict, seed: int):
        """A trained system's run folder: noisy one-hot scores, ``provenance`` in metrics.json."""
        m, exp = self.manifest, self.exp
        labels, folds = m.label_indices(), m.folds()
        scores = np.eye(len(m.label_names))[labels] + np.random.default_rng(seed).normal(size=(len(m), len(m.label_names)))
        test = folds == exp.fold
        pred = scores.argmax(axis=1)
        metrics = {"dataset": m.name, "test_fold": exp.fold, "devel_accuracy": float((pred == labels)[~test].mean()),
                   **{f"test_{k}": v
                      for k, v in classification_metrics(labels[test], pred[test], m.label_names).items()},
                   **provenance}
        run_scores = Scores(system, m.ids(), folds, labels, m.label_names, scores, exp.fold, "probability",
                            score_config)
        write_run(run_dir, system=system, metrics=metrics, scores=run_scores, y_true_test=labels[test],
                  y_pred_test=pred[test], label_names=m.label_names)


def _experiment(data, root, finetune=()) -> tuple[Experiment, FakeStages]:
    exp = Experiment(data, fold=5, features=FEATURES, crnn_epochs=2, methods=("stacking", "mean"),
                     features_dir=root / "features", results_root=root / "results", finetune=finetune,
                     finetune_epochs=2)
    return exp, FakeStages(data, exp)


@pytest.fixture(scope="module")
def first_run(demo_dir, tmp_path_factory):
    """One complete run (module-wide): (root folder, the runner's calls, the printed lines)."""
    root = tmp_path_factory.mktemp("paper")
    exp, runner = _experiment(demo_dir, root)
    lines = []
    run_experiment(exp, stages=runner, echo=lines.append)
    return root, runner.calls, lines


@pytest.fixture
def finished(first_run, demo_dir, tmp_path):
    """A copy of the finished run's features and results (moved: stores and scores at new paths)."""
    root = first_run[0]
    for name in ("features", "results"):
        shutil.copytree(root / name, tmp_path / name)
    return _experiment(demo_dir, tmp_path)


@pytest.fixture
def experiment(demo_dir, tmp_path):
    return _experiment(demo_dir, tmp_path)


def _stages(calls) -> list[str]:
    return [c[0] for c in calls]


def test_first_run_does_every_stage_and_writes_the_table(first_run):
    root, calls, lines = first_run
    results_dir = root / "results" / "demo"
    stages = _stages(calls)
    assert stages.count("extract") == 4 and stages.count("svm") == 4 and stages.count("crnn") == 1
    # groups: imagenet has one system (skipped); untrained, image, crnn+image, image+audio, all: 2 methods each
    assert stages.count("fuse") == 12 and stages[-1] == "report"
    assert any("skip group imagenet" in line for line in lines)
    readme = (results_dir / "README.md").read_text()
    assert readme.count("| `svm-") == 4 and readme.count("| `fusion-") == 12 and "| `crnn` |" in readme
    assert [c[1] for c in calls if c[0] == "report"] == [str(results_dir)]


def test_rerun_skips_finished_stages(finished):
    exp, runner = finished
    lines = []
    run_experiment(exp, stages=runner, echo=lines.append)
    assert _stages(runner.calls) == ["extract"] * 4 + ["report"]
    assert sum("skip" in line for line in lines) >= 4 + 1 + 10


def test_a_changed_store_reruns_its_svm_and_the_fusions_using_it(finished):
    exp, runner = finished
    store = FEATURES[2].store(exp.features_dir, "demo")
    runner.write_store(store, "resnet50", "none", seed=1)  # as if re-extracted
    with pytest.raises(DeepfeatError, match="svm-resnet50-none: holds a run of other inputs.*--overwrite"):
        run_experiment(exp, stages=runner, echo=lambda _: None)  # the old run is not replaced silently
    runner.calls.clear()
    exp.overwrite = True
    lines = []
    run_experiment(exp, stages=runner, echo=lines.append)
    svm_calls = [c for c in runner.calls if c[0] == "svm"]
    assert [c[1] for c in svm_calls] == [str(store)]
    assert any(line.startswith("+ deepfeat svm") and line.endswith("--overwrite") for line in lines)
    fused_groups = sorted({c[1] for c in runner.calls if c[0] == "fuse"})
    assert fused_groups == ["all", "crnn+image", "image", "image+audio", "untrained"]  # every group holds resnet50


def test_a_stage_interrupted_before_its_metrics_reruns_without_overwrite(finished):
    exp, runner = finished
    run_dir = exp.results_root / "demo" / "svm-resnet50-none"
    (run_dir / "metrics.json").unlink()  # killed after scores.h5, before metrics.json: same inputs again
    run_experiment(exp, stages=runner, echo=lambda _: None)
    assert [c[0] for c in runner.calls if c[0] == "svm"] == ["svm"] and (run_dir / "metrics.json").is_file()


def test_changed_crnn_settings_rerun_the_crnn_and_its_fusions(finished):
    exp, runner = finished
    exp.crnn_epochs, exp.overwrite = 3, True  # the fusions of the old CRNN scores are replaced
    run_experiment(exp, stages=runner, echo=lambda _: None)
    assert _stages(runner.calls).count("crnn") == 1 and _stages(runner.calls).count("svm") == 0
    assert sorted({c[1] for c in runner.calls if c[0] == "fuse"}) == ["all", "crnn+image"]


def test_dry_run_runs_nothing(experiment):
    exp, runner = experiment
    lines = []
    run_experiment(exp, stages=runner, echo=lines.append, dry_run=True)
    assert runner.calls == []
    assert sum(line.startswith("+ deepfeat extract") for line in lines) == 4
    assert any(line.startswith("+ deepfeat crnn") for line in lines)


def test_a_failing_stage_stops_the_run_with_its_error(experiment):
    exp, runner = experiment

    def failing(spec, store):
        raise DeepfeatError(f"{store}: cannot extract")

    runner.extract = failing
    lines = []
    with pytest.raises(DeepfeatError, match="efficientnet_lite0-imagenet.h5: cannot extract"):
        run_experiment(exp, stages=runner, echo=lines.append)
    assert lines[-1].startswith("+ deepfeat extract") and " -n efficientnet_lite0 " in lines[-1]


@pytest.mark.parametrize("text, spec, store", [
    ("densenet121:none", FeatureSpec("densenet121", "none"), "esc10-densenet121-none.h5"),
    ("birdnet", FeatureSpec("birdnet", None), "esc10-birdnet.h5"),
    ("vgg16:/ckpt/v.pt", FeatureSpec("vgg16", "/ckpt/v.pt"), "esc10-vgg16-v.h5"),
])
def test_feature_spec_parse(text, spec, store, tmp_path):
    assert FeatureSpec.parse(text) == spec
    assert spec.store(tmp_path, "esc10") == tmp_path / store


def test_feature_spec_needs_a_network():
    with pytest.raises(ConfigError, match="NETWORK:WEIGHTS"):
        FeatureSpec.parse(":none")


def test_paper_command_dry_run(demo_dir, tmp_path):
    from click.testing import CliRunner

    from deepfeat.cli.paper import paper

    result = CliRunner().invoke(paper, [str(demo_dir), "-n", "densenet121:none", "-n", "birdnet", "--crnn-epochs", "0",
                                        "--features-dir", str(tmp_path / "f"), "--results", str(tmp_path / "r"),
                                        "--dry-run"])
    assert result.exit_code == 0, result.output
    extracts = [line for line in result.output.splitlines() if line.startswith("+ deepfeat extract")]
    assert [line.split(" -o ")[1].split()[0] for line in extracts] == [
        str(tmp_path / "f" / "demo-densenet121-none.h5"), str(tmp_path / "f" / "demo-birdnet.h5")]
    assert "+ deepfeat crnn" not in result.output and not (tmp_path / "f").exists()


def test_runs_from_elsewhere_are_not_fused_but_noted(finished):
    exp, runner = finished
    results_dir = exp.results_root / "demo"
    stale = results_dir / "svm-vgg19-imagenet"
    shutil.copytree(results_dir / "svm-efficientnet_lite0-imagenet", stale)
    s = read_scores(stale / "scores.h5")
    s.system = "svm-vgg19-imagenet"
    s.write(stale / "scores.h5")
    lines = []
    run_experiment(exp, stages=runner, echo=lines.append)
    assert "fuse" not in _stages(runner.calls)  # the imagenet group still has one system of this experiment
    assert any(f"note: {stale} is not part of this experiment" in line for line in lines)


def test_finetuned_systems_run_once_join_their_fusions_and_rerun_when_changed(demo_dir, tmp_path):
    exp, runner = _experiment(demo_dir, tmp_path, finetune=("efficientnet_lite0:imagenet",))
    exp.features = (FEATURES[0], FEATURES[3])  # Lite0 (ImageNet) and BirdNET
    lines = []
    run_experiment(exp, stages=runner, echo=lines.append)
    assert _stages(runner.calls).count("finetune") == 1
    assert any(line.startswith("+ deepfeat finetune") and "--epochs 2" in line for line in lines)
    assert (exp.results_root / "demo" / "finetune-efficientnet_lite0-imagenet" / "metrics.json").is_file()
    assert {"finetuned+audio", "all"} <= {c[1] for c in runner.calls if c[0] == "fuse"}
    row = next(r for r in (exp.results_root / "demo" / "README.md").read_text().splitlines() if "`finetune-" in r)
    assert "fine-tuned CNN" in row and "last 2 stages, 2 epochs, augment: specaugment, mixup" in row

    runner.calls.clear()
    run_experiment(exp, stages=runner, echo=lines.append)
    assert "finetune" not in _stages(runner.calls) and "fuse" not in _stages(runner.calls)

    exp.finetune_epochs, exp.overwrite = 3, True
    run_experiment(exp, stages=runner, echo=lambda _: None)
    assert _stages(runner.calls).count("finetune") == 1
