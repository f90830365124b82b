import json
import warnings

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from deepfeat.augment import AugmentConfig, WaveformAugmentation
from deepfeat.config import MelConfig
from deepfeat.crnn import (ARCHITECTURES, CRNN, CRNNArchitecture, TrainingConfig, conv_block, load_crnn, predict_proba,
                           run_crnn, system_name, train_crnn)
from deepfeat.crnn import train as train_module
from deepfeat.datasets import load_manifest
from deepfeat.errors import ConfigError
from deepfeat.mel_cache import ORIGINAL, ensure_mel_cache, read_mels
from deepfeat.scores import read_scores

RATE = 16000
MEL = MelConfig(sample_rate=RATE, n_mels=32, window=0.05, hop=0.025, clip_db=-80.0)
TINY = CRNNArchitecture(channels=(4, 8), kernels=((3, 3), (3, 3)), pools=((4, 2), (4, 2)), gru_units=16)
NOISE = WaveformAugmentation("noise", 5.0)


@pytest.fixture(scope="module")
def manifest(demo_dir):
    return load_manifest(demo_dir)


@pytest.fixture(scope="module")
def cached(manifest, tmp_path_factory):
    """Mel cache of the demo set: plain and 5 dB-noise copies, 1 s clips."""
    path = tmp_path_factory.mktemp("mels") / "mels.h5"
    ensure_mel_cache(path, manifest, MEL, 1.0, [NOISE], workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def data(cached, manifest):
    return torch.from_numpy(read_mels(cached, [ORIGINAL, NOISE.name])), manifest.label_indices()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and spin-waiting threads crawl on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- model

@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("batch,frames,classes", [(2, 126, 10), (3, 64, 50)])
def test_crnn_gives_one_logit_per_class(name, batch, frames, classes):
    model = CRNN(128, classes, ARCHITECTURES[name]).eval()
    out = model(torch.rand(batch, 128, frames) * -80)
    assert out.shape == (batch, classes) and torch.isfinite(out).all()


def test_esc_architecture_is_the_papers():
    a = ARCHITECTURES["esc"]
    assert len(a.channels) == 4 and set(a.kernels) == {(3, 3)}
    assert (a.gru_units, a.gru_layers, a.dropout) == (256, 2, 0.3)
    model = CRNN(128, 10, a)
    assert isinstance(model.gru, nn.GRU) and model.gru.num_layers == 2 and model.gru.hidden_size == 256
    for block in model.blocks:
        assert [type(m) for m in block] == [nn.ZeroPad2d, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ELU, nn.Dropout]
        assert block[1].kernel_size == (3, 3) and block[5].p == 0.3


def test_dcase_architecture_folds_128_bands_into_one():
    a = ARCHITECTURES["dcase"]
    assert a.kernels == ((5, 5), (4, 4), (3, 3)) and a.pools[2] == (32, 2)
    assert a.output_size(128, 100) == (1, 12)


@pytest.mark.parametrize("kernel", [(3, 3), (4, 4), (5, 2)])
def test_same_padding_keeps_the_size(kernel):
    block = conv_block(1, 2, kernel, (1, 1), dropout=0.0)
    assert block(torch.randn(2, 1, 13, 10)).shape == (2, 2, 13, 10)
    reference = nn.Conv2d(1, 2, kernel, padding="same")
    reference.load_state_dict(block[1].state_dict())
    x = torch.randn(2, 1, 13, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch notes that even kernels need a padded copy
        expected = reference(x)
    assert torch.allclose(block[1](block[0](x)), expected, atol=1e-6)


@pytest.mark.parametrize("pool", [(2, 2), (4, 1), (1, 3)])
def test_pooling_before_elu_equals_the_papers_order(pool):
    torch.manual_seed(0)
    block = conv_block(2, 4, (3, 3), pool, dropout=0.0).train()
    paper = nn.Sequential(block[0], block[1], block[2], nn.ELU(), nn.MaxPool2d(pool))
    x = torch.randn(3, 2, 16, 18, requires_grad=True)
    out = block(x)
    out.square().sum().backward()
    grad_ours, x.grad = x.grad.clone(), None
    ref = paper(x)
    ref.square().sum().backward()
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(grad_ours, x.grad, atol=1e-5)


@pytest.mark.parametrize("n_mels,arch", [(16, ARCHITECTURES["dcase"]), (8, ARCHITECTURES["esc"])])
def test_too_few_bands_for_the_pooling_is_a_config_error(n_mels, arch):
    with pytest.raises(ConfigError, match="mel bands"):
        CRNN(n_mels, 3, arch)


@pytest.mark.parametrize("kwargs", [dict(channels=(4,), kernels=((3, 3),), pools=()),
                                    dict(channels=(), kernels=(), pools=()),
                                    dict(channels=(4,), kernels=((3, 3),), pools=((2, 2),), dropout=1.0)])
def test_bad_architecture_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        CRNNArchitecture(**kwargs)


def test_standardization_is_per_band_and_saved_with_the_model():
    model = CRNN(32, 3, TINY)
    x = torch.randn(10, 32, 20) * torch.linspace(1, 5, 32)[:, None] - torch.linspace(10, 70, 32)[:, None]
    model.set_standardization(x.mean(dim=(0, 2)), x.std(dim=(0, 2)))
    z = model.standardize(x)
    assert torch.allclose(z.mean(dim=(0, 2)), torch.zeros(32), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2)), torch.ones(32), atol=1e-4)
    assert {"band_mean", "band_std"} <= set(model.state_dict())


@pytest.mark.parametrize("arch,augment,expected", [
    (ARCHITECTURES["esc"], AugmentConfig(), "crnn"),
    (ARCHITECTURES["esc"], AugmentConfig.from_names(["mixup"]), "crnn-aug"),
    (ARCHITECTURES["dcase"], AugmentConfig(), "crnn-dcase"), (TINY, AugmentConfig(), "crnn-custom")])
def test_system_name(arch, augment, expected):
    assert system_name(TrainingConfig(architecture=arch, augment=augment)) == expected


# ----------------------------------------------------------------------------- training

def _config(**kw):
    return TrainingConfig(**{"architecture": TINY, "epochs": 4, "batch_size": 8, **kw})


@pytest.mark.parametrize("augment", [AugmentConfig(), AugmentConfig.from_names(["all"])])
def test_training_is_deterministic(data, augment):
    mels, labels = data
    versions = mels if augment.enabled else mels[:1]
    a = train_crnn(versions, labels, 5, _config(augment=augment), progress=False)
    b = train_crnn(versions, labels, 5, _config(augment=augment), progress=False)
    c = train_crnn(versions, labels, 5, _config(augment=augment, seed=1), progress=False)
    assert _same_state(a.model.state_dict(), b.model.state_dict())
    assert not _same_state(a.model.state_dict(), c.model.state_dict())
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]


def test_training_leaves_the_global_rng_alone(data):
    mels, labels = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_crnn(mels[:1], labels, 5, _config(epochs=1), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_training_lowers_the_loss_and_records_validation(data):
    mels, labels = data
    val = (mels[0][:5], labels[:5])
    result = train_crnn(mels[:1], labels, 5, _config(epochs=12, learning_rate=3e-3), validation=val, progress=False)
    assert len(result.history) == 12
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 and r["seconds"] > 0 for r in result.history)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("augment", [AugmentConfig(),
                                     AugmentConfig.from_names(["noise", "specaugment", "patch", "mixup"])])
@pytest.mark.parametrize("stop_after", [1, 3])
def test_resumed_training_ends_identical(data, tmp_path, monkeypatch, augment, stop_after):
    mels, labels = data
    versions = mels if augment.enabled else mels[:1]
    config = _config(augment=augment)
    reference = train_crnn(versions, labels, 5, config, progress=False)

    ckpt = tmp_path / "run.pt"
    real_save, saved = train_module._save_checkpoint, []

    def save_then_die(path, state):
        real_save(path, state)
        saved.append(state["epoch"])
        if len(saved) == stop_after:
            raise Interrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_die)
    with pytest.raises(Interrupt):
        train_crnn(versions, labels, 5, config, checkpoint=ckpt, progress=False)
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    resumed = train_crnn(versions, labels, 5, config, checkpoint=ckpt, progress=False)
    assert resumed.resumed_from == stop_after
    assert _same_state(resumed.model.state_dict(), reference.model.state_dict())
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]


def test_finished_checkpoint_is_loaded_not_retrained(data, tmp_path):
    mels, labels = data
    ckpt = tmp_path / "run.pt"
    first = train_crnn(mels[:1], labels, 5, _config(epochs=2), checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and "optimizer" not in state  # a finished run keeps only its weights
    again = train_crnn(mels[:1], labels, 5, _config(epochs=2), checkpoint=ckpt, progress=False)
    assert again.resumed_from == 2 and not again.model.training
    assert _same_state(first.model.state_dict(), again.model.state_dict())


@pytest.mark.parametrize("change", [dict(learning_rate=1e-2), dict(epochs=3), dict(seed=7),
                                    dict(augment=AugmentConfig(spec_augment=True))])
def test_resume_with_another_config_is_refused(data, tmp_path, change):
    mels, labels = data
    ckpt = tmp_path / "run.pt"
    train_crnn(mels[:1], labels, 5, _config(epochs=2), checkpoint=ckpt, progress=False)
    with pytest.raises(ConfigError, match="different configuration"):
        train_crnn(mels[:1], labels, 5, _config(**{"epochs": 2, **change}), checkpoint=ckpt, progress=False)


def test_predict_proba_gives_distributions(data):
    mels, labels = data
    model = train_crnn(mels[:1], labels, 5, _config(epochs=1), progress=False).model
    proba = predict_proba(model, mels[0], batch_size=7)
    assert proba.shape == (len(labels), 5) and proba.dtype == np.float32
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)
    assert np.allclose(proba, predict_proba(model, mels[0], batch_size=64), atol=1e-6)


# ----------------------------------------------------------------------------- protocol

@pytest.fixture(scope="module")
def run(manifest, cached, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("crnn") / "run"
    config = _config(epochs=2, augment=AugmentConfig(noise_snr=(5.0,), spec_augment=True))
    metrics = run_crnn(manifest, run_dir, test_fold=5, config=config, mel=MEL, duration=1.0, mel_cache=cached,
                       workers=1, progress=False)
    return run_dir, metrics, config


def test_run_writes_a_complete_run_directory(run):
    run_dir, metrics, _ = run
    for name in ("metrics.json", "scores.h5", "confusion_matrix.png", "report.txt", "model.pt", "model.json",
                 "training.json", "checkpoints/final.pt", "checkpoints/oof-fold1.pt"):
        assert (run_dir / name).is_file(), name
    written = json.loads((run_dir / "metrics.json").read_text())
    for key in ("devel_accuracy", "test_accuracy", "devel_macro_f1", "test_macro_f1", "test_uar", "folds", "timings",
                "epochs", "augmentation", "test_fold", "development_folds"):
        assert key in written, key
    assert written["system"] == "crnn-custom-aug" == metrics["system"]
    assert written["development_folds"] == [1, 2, 3, 4] and written["test_fold"] == 5
    assert written["augmentation"] == ["noise", "specaugment"] and written["epochs"] == 2
    histories = json.loads((run_dir / "training.json").read_text())
    assert sorted(histories) == ["final", "oof-fold1", "oof-fold2", "oof-fold3", "oof-fold4"]
    assert all(len(h) == 2 and h[-1]["epoch"] == 2 for h in histories.values())


def test_scores_file_round_trips_and_matches_the_metrics(run, manifest):
    run_dir, metrics, _ = run
    scores = read_scores(run_dir / "scores.h5")
    assert scores.score_kind == "probability" and scores.test_fold == 5 and scores.system == metrics["system"]
    assert list(scores.ids) == manifest.ids() and scores.label_names == manifest.label_names
    assert np.array_equal(scores.labels, manifest.label_indices()) and np.array_equal(scores.folds, manifest.folds())
    assert np.allclose(scores.scores.sum(1), 1.0, atol=1e-5) and (scores.scores >= 0).all()
    pred = scores.scores.argmax(1)
    test = scores.test_mask
    assert metrics["test_accuracy"] == pytest.approx(np.mean(pred[test] == scores.labels[test]))
    per_fold = [np.mean(pred[scores.folds == k] == scores.labels[scores.folds == k]) for k in (1, 2, 3, 4)]
    assert metrics["devel_accuracy"] == pytest.approx(np.mean(per_fold))


def test_saved_model_reproduces_the_test_scores(run, cached):
    run_dir, _, _ = run
    model = load_crnn(run_dir)
    scores = read_scores(run_dir / "scores.h5")
    mels = read_mels(cached, [ORIGINAL])[0]
    proba = model.predict_proba(mels[scores.test_mask])
    assert np.allclose(proba, scores.scores[scores.test_mask], atol=1e-6)
    assert list(model.classes_) == scores.label_names and model.frontend["mel"]["n_mels"] == MEL.n_mels
    assert list(model.predict(mels[scores.test_mask])) == [scores.label_names[i]
                                                          for i in scores.scores[scores.test_mask].argmax(1)]


def test_rerun_reuses_the_finished_trainings(run, manifest, cached):
    run_dir, metrics, config = run
    again = run_crnn(manifest, run_dir, test_fold=5, config=config, mel=MEL, duration=1.0, mel_cache=cached,
                     workers=1, progress=False)
    assert again["test_accuracy"] == metrics["test_accuracy"] and again["devel_accuracy"] == metrics["devel_accuracy"]
    assert sum(again["timings"]["fit_seconds"].values()) < sum(metrics["timings"]["fit_seconds"].values())


def test_rerun_with_another_config_is_refused(run, manifest, cached):
    run_dir, _, config = run
    with pytest.raises(ConfigError, match="different configuration"):
        run_crnn(manifest, run_dir, test_fold=5, config=_config(epochs=3, augment=config.augment), mel=MEL,
                 duration=1.0, mel_cache=cached, workers=1, progress=False)


@pytest.mark.parametrize("fold", [0, 9])
def test_missing_test_fold_is_a_config_error(manifest, tmp_path, fold):
    with pytest.raises(ConfigError, match="fold"):
        run_crnn(manifest, tmp_path / "run", test_fold=fold, config=_config(), mel=MEL, duration=1.0,
                 mel_cache=tmp_path / "m.h5", workers=1, progress=False)


def test_cli_trains_and_reports(demo_dir, tmp_path, capsys):
    from deepfeat.cli.main import main

    out = tmp_path / "run"
    args = ["crnn", str(demo_dir), "--fold", "5", "-o", str(out), "--epochs", "1", "-sr", str(RATE), "--n-mels", "32",
            "--window", "0.05", "--hop", "0.025", "--duration", "1", "--mel-cache", str(tmp_path / "m.h5"),
            "--workers", "1", "--augment", "specaugment,mixup", "-q", "--json"]
    main(args)
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["system"] == "crnn-aug" and metrics["epochs"] == 1
    assert metrics["augmentation"] == ["specaugment", "mixup"]
    assert read_scores(out / "scores.h5").score_kind == "probability"


@pytest.mark.parametrize("bad", [["--augment", "wobble"], ["--clip-db", "10"]])
def test_cli_bad_option_is_a_one_line_error(demo_dir, tmp_path, capsys, bad):
    from deepfeat.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["crnn", str(demo_dir), "-o", str(tmp_path / "run"), "--mel-cache", str(tmp_path / "m.h5"), *bad])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("Error: ")


def test_cli_defaults_are_the_library_defaults():
    from deepfeat.cli.crnn import crnn
    from deepfeat.crnn.config import CRNN_MEL, DEFAULT_DURATION

    import click

    defaults = {p.name: p.get_default(click.Context(crnn)) for p in crnn.params}  # read lazily from the library
    assert (defaults["window"], defaults["hop"], defaults["n_mels"], defaults["sample_rate"], defaults["clip_db"]) == (
        CRNN_MEL.window, CRNN_MEL.hop, CRNN_MEL.n_mels, CRNN_MEL.sample_rate, CRNN_MEL.clip_db)
    config = TrainingConfig()
    assert defaults["duration"] == DEFAULT_DURATION
    assert (defaults["epochs"], defaults["batch_size"], defaults["learning_rate"], defaults["seed"]) == (
        config.epochs, config.batch_size, config.learning_rate, config.seed)
