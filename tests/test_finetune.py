"""deepfeat.finetune: staged networks, cached versions, the fine-tuned classifier, ensembles and
the fold protocol end to end (tiny images, few epochs)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepfeat.augment import AugmentConfig
from deepfeat.config import PlotConfig
from deepfeat.datasets import load_manifest
from deepfeat.errors import ConfigError, StoreError
from deepfeat.extract import make_extractor
from deepfeat.finetune import FineTunedCNN, run_finetune, trunk_and_tail, version_images
from deepfeat.scores import read_scores
from deepfeat.training.config import TrainConfig
from deepfeat.training.ensemble import SeedEnsemble

from .conftest import tone

SMALL = dict(network="efficientnet_lite0", weights="none")


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """One torch thread for every test here (conftest.one_torch_thread)."""


def _check_stages(network: str, pixels: int) -> None:
    extractor = make_extractor(network, weights="none")
    staged = extractor.staged_network()
    reference = extractor.select_layer(extractor.load_network()).eval()
    x = torch.randn(1, 3, pixels, pixels)
    with torch.no_grad():
        expected = reference(x)
        expected = torch.flatten(expected["features"] if isinstance(expected, dict) else expected, 1)
        assert torch.equal(staged.features(x), expected)


@pytest.mark.parametrize("network", ["efficientnet_lite0", "resnet18", "mobilenet_v2"])
def test_stages_compose_to_the_extractors_default_layer(network):
    _check_stages(network, 64)


@pytest.mark.slow
@pytest.mark.parametrize("network", ["vgg16", "alexnet", "densenet121", "efficientnet_b0", "convnext_tiny",
                                     "inception_v3", "resnet50"])
def test_stages_of_every_other_family(network):
    _check_stages(network, 120 if network == "inception_v3" else 96)


@pytest.mark.parametrize("k", [0, 1, 3, None])
def test_trunk_then_tail_is_the_whole_network(k):
    staged = make_extractor(**SMALL).staged_network()
    trunk, tail = trunk_and_tail(staged, k)
    trainable = len(staged.stages) if k is None else k
    assert len(tail) == (trainable + 1 if trainable else 0) and len(trunk) == len(staged.stages) - trainable + (k == 0)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(torch.flatten(tail(trunk(x)), 1), staged.features(x))


@pytest.mark.parametrize("k", [-1, 99])
def test_impossible_trainable_stages_are_a_config_error(k):
    with pytest.raises(ConfigError, match="train-blocks"):
        trunk_and_tail(make_extractor(**SMALL).staged_network(), k)


def test_versions_are_plain_waveform_and_masked_copies_deterministically():
    plot = PlotConfig(size=(32, 48))
    samples = tone(440.0, 1.0, rate=plot.mel.sample_rate) + 0.01 * np.random.default_rng(0).normal(size=44100)
    augment = AugmentConfig(noise_snr=(5.0,), spec_augment=True, time_masks=1, freq_masks=1, mask_width=10)
    images = version_images(samples.astype(np.float32), plot, augment, masked_copies=2)
    assert images.shape == (4, 32, 48, 3) and images.dtype == np.uint8
    again = version_images(samples.astype(np.float32), plot, augment, masked_copies=2)
    assert np.array_equal(images, again)
    from deepfeat.render import spectrogram_image

    assert np.array_equal(images[0], spectrogram_image(samples.astype(np.float32), plot))
    assert all(not np.array_equal(images[0], images[i]) for i in (1, 2, 3))


def _random_trunk(train_blocks=1):
    from deepfeat.finetune.run import trunk_extractor

    classifier = FineTunedCNN(**SMALL, train_blocks=train_blocks)
    return trunk_extractor(classifier, PlotConfig(), AugmentConfig(), 0, "cpu", (48, 64))


def test_calibrated_random_trunk_has_activations_of_unit_scale():
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 64, 3), dtype=np.uint8)
    trunk = _random_trunk()
    trunk.load()
    raw = float(trunk.activations(images).std())
    assert raw < 1e-4 and "batch_norm" not in trunk.config()["trunk"]  # vanished under the initial statistics
    trunk.calibrate(images, {"folds": [1]})
    trunk.load()
    assert 0.1 < float(trunk.activations(images).std()) < 10
    recorded = trunk.config()["trunk"]["batch_norm"]
    assert recorded["folds"] == [1] and recorded["images"] == 8
    other = _random_trunk()
    other.calibrate(images[:4], {"folds": [1]})
    assert other.config()["trunk"]["batch_norm"]["sha256"] != recorded["sha256"]  # the store knows the difference


def test_a_trunk_without_batch_norm_is_not_calibrated():
    trunk = _random_trunk(train_blocks=None)  # everything trains: the trunk is empty
    trunk.calibrate(np.zeros((2, 48, 64, 3), np.uint8), {"folds": [1]})
    assert trunk.calibration is None and "batch_norm" not in trunk.config()["trunk"]


def test_trunk_calibration_reads_development_clips_only(demo_dir, monkeypatch):
    import deepfeat.audio
    from deepfeat.finetune import calibrate_trunk

    manifest = load_manifest(demo_dir)
    fold_of = {str(c.path): c.fold for c in manifest.clips}
    read, load_audio = [], deepfeat.audio.load_audio
    monkeypatch.setattr(deepfeat.audio, "load_audio", lambda path, *a, **k: read.append(str(path)) or load_audio(path, *a, **k))
    trunk = _random_trunk()
    calibrate_trunk(manifest, trunk, test_fold=5)
    assert sorted({fold_of[p] for p in read}) == [1, 2, 3, 4] and len(read) == sum(f != 5 for f in fold_of.values())
    assert trunk.calibration["folds"] == [1, 2, 3, 4] and trunk.norm_statistics


def test_saved_statistics_rebuild_the_calibrated_trunk(tmp_path):
    from deepfeat.finetune import frozen_trunk
    from deepfeat.finetune.inputs import save_statistics, statistics_record

    images = np.random.default_rng(1).integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    trunk = _random_trunk()
    trunk.calibrate(images, {"folds": [1, 2]})
    trunk.load()
    save_statistics(trunk, tmp_path)
    frontend = {"batch_norm": statistics_record(trunk)}
    rebuilt = frozen_trunk(trunk.base.staged_network(), 1, frontend, tmp_path)
    with torch.no_grad():
        x = trunk._inputs(images)
        assert torch.allclose(rebuilt(x), trunk.activations(images), atol=1e-4)
    (tmp_path / frontend["batch_norm"]["file"]).unlink()
    with pytest.raises(StoreError, match="batch-norm statistics"):
        frozen_trunk(trunk.base.staged_network(), 1, frontend, tmp_path)


def _activations(n_per_class=8, classes=3, versions=2, seed=0):
    """Random trunk activations of Lite0's last MBConv block input ([192, 2, 2]) with a class signal."""
    g = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    X = g.normal(size=(len(y), versions, 192, 2, 2)).astype(np.float32)
    X[np.arange(len(y)), :, y * 10] += 4.0  # a channel per class
    return X, np.array([f"c{c}" for c in y], dtype=object)


def _classifier(**kw):
    training = TrainConfig(epochs=kw.pop("epochs", 4), batch_size=8, learning_rate=3e-3)
    return FineTunedCNN(**SMALL, train_blocks=2, training=training, **kw)


def test_fine_tuned_cnn_learns_and_is_deterministic():
    X, y = _activations()
    a = _classifier(epochs=10).fit(X, y)
    b = _classifier(epochs=10).fit(X, y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert np.mean(a.predict(X) == y) > 0.8 and list(a.classes_) == ["c0", "c1", "c2"]
    assert a.history_[-1]["loss"] < a.history_[0]["loss"]


def test_validation_clips_are_held_out_of_training_rows():
    X, y = _activations(n_per_class=10)
    clips = np.arange(len(y)) // 2  # two rows per clip
    model = _classifier(validation_fraction=0.2).fit(X, y, clips=clips)
    held = model.validation_rows_
    assert len(held) and not set(clips[held]) & set(np.delete(clips, held))
    assert all("val_accuracy" in r for r in model.history_)


def test_ensemble_probabilities_are_the_mean_of_its_members():
    X, y = _activations()
    ensemble = SeedEnsemble(_classifier(), n_members=3).fit(X, y)
    members = [m.predict_proba(X) for m in ensemble.estimators_]
    assert np.allclose(ensemble.predict_proba(X), np.mean(members, axis=0))
    assert [m.training.seed for m in ensemble.estimators_] == [0, 1, 2]
    assert not np.allclose(members[0], members[1])  # members differ only by their seed


def test_saved_model_predicts_the_same(tmp_path):
    X, y = _activations()
    model = _classifier().fit(X, y)
    model.save(tmp_path)
    again = FineTunedCNN.load(tmp_path)
    assert np.allclose(again.predict_proba(X), model.predict_proba(X), atol=1e-6) and again.weights == "none"
    assert json.loads((tmp_path / "model.json").read_text())["model"] == "finetune"


@pytest.mark.slow
def test_protocol_end_to_end_with_an_ensemble(demo_dir, tmp_path):
    classifier = FineTunedCNN(**SMALL, train_blocks=1, training=TrainConfig(epochs=2, batch_size=8))
    run_dir = tmp_path / "run"
    args = dict(test_fold=5, classifier=classifier, size=(48, 64), ensemble=2, cache=tmp_path / "acts.h5",
                augment=AugmentConfig(spec_augment=True), workers=0, progress=False)
    metrics = run_finetune(load_manifest(demo_dir), run_dir, **args)
    assert metrics["versions"] == 3 and len(metrics["members"]) == 2 and metrics["ensemble"] == 2
    assert metrics["trunk_batch_norm"]["folds"] == [1, 2, 3, 4]  # random weights: calibrated on development clips
    assert (run_dir / "trunk_batch_norm.pt").is_file()
    scores = read_scores(run_dir / "scores.h5")
    assert scores.score_kind == "probability" and scores.config["model"] == "finetune"
    assert (run_dir / "member-0" / "model.pt").is_file() and (run_dir / "checkpoints" / "final-m1.pt").is_file()
    from deepfeat.fusion.groups import system_info

    assert system_info(scores).family == "finetune"
    again = run_finetune(load_manifest(demo_dir), run_dir, **args)
    assert again["test_accuracy"] == metrics["test_accuracy"]  # resumed from the finished checkpoints
