import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from deepfeat.augment import AugmentConfig, WaveformAugmentation
from deepfeat.config import MelConfig
from deepfeat.crnn import (ARCHITECTURES, CRNN, CRNN_TRAINING, CRNNArchitecture, CRNNClassifier, conv_block, load_crnn,
                           run_crnn, system_name)
from deepfeat.training.config import TrainConfig
from deepfeat.datasets import load_manifest
from deepfeat.errors import ConfigError, StoreError
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
def one_thread(one_torch_thread):
    """One torch thread for every test here (conftest.one_torch_thread)."""


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- model

@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("batch,frames,classes", [(2, 126, 10), (3, 64, 50)])
def test_crnn_gives_one_logit_per_class(name, batch, frames, classes):
    model = CRNN(128, classes, ARCHITECTURES[name]).eval()
    out = model(torch.rand(batch, 128, frames) * -80)
    assert out.shape == (batch, classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,block_p,sequence_p", [("esc-paper", 0.3, 0.0), ("esc", 0.0, 0.3)])
def test_esc_architectures_are_the_papers_up_to_dropout_placement(name, block_p, sequence_p):
    a = ARCHITECTURES[name]
    assert len(a.channels) == 4 and set(a.kernels) == {(3, 3)}
    assert (a.gru_units, a.gru_layers, a.dropout) == (256, 2, 0.3)
    model = CRNN(128, 10, a)
    assert isinstance(model.gru, nn.GRU) and model.gru.num_layers == 2 and model.gru.hidden_size == 256
    for block in model.blocks:
        assert [type(m) for m in block] == [nn.ZeroPad2d, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ELU, nn.Dropout]
        assert block[1].kernel_size == (3, 3) and block[5].p == block_p
    assert model.sequence_dropout.p == sequence_p and model.dropout.p == 0.3


@pytest.fixture(scope="module")
def short_clips(tmp_path_factory):
    """Short low-rate clips (0.15-1 s at 8 kHz) padded to 5 s at 16 kHz: mostly silence."""
    from deepfeat.demo import write_short_clips_dataset

    root = write_short_clips_dataset(tmp_path_factory.mktemp("short") / "short", clips_per_class=16)
    manifest = load_manifest(root)
    mel = MelConfig(sample_rate=16000, n_mels=64, window=0.08, hop=0.04, clip_db=-80.0)
    cache = ensure_mel_cache(tmp_path_factory.mktemp("m") / "m.h5", manifest, mel, 5.0, workers=1, progress=False)
    names = np.array(manifest.label_names, dtype=object)
    return read_mels(cache, [ORIGINAL]).transpose(1, 0, 2, 3), names[manifest.label_indices()]


def _eval_and_batch_accuracy(model, X, y):
    """Accuracy on the training clips in eval mode, and with batch statistics (dropout off)."""
    evaluated = np.mean(model.predict(X) == y)
    module = model.module_.train()
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    with torch.no_grad():
        batch = np.mean(model.classes_[module(torch.from_numpy(X[:, 0])).argmax(1).numpy()] == y)
    return evaluated, batch


@pytest.mark.slow
def test_eval_mode_keeps_the_accuracy_of_training_on_short_padded_clips(short_clips):
    """The published dropout placement loses accuracy in eval mode after a short training (the
    variance shift of dropout feeding batch norm, and running statistics lagging the weights);
    deepfeat's default (no dropout between batch norms, recalibrated statistics) does not."""
    X, y = short_clips
    config = TrainConfig(**{**CRNN_TRAINING.to_dict(), "epochs": 5})
    paper = CRNNClassifier(architecture="esc-paper", recalibrate_bn=False, training=config).fit(X, y)
    fixed = CRNNClassifier(training=config).fit(X, y)
    paper_eval, paper_batch = _eval_and_batch_accuracy(paper, X, y)
    fixed_eval, fixed_batch = _eval_and_batch_accuracy(fixed, X, y)
    assert abs(fixed_eval - fixed_batch) <= 0.05 and fixed_eval >= 0.6
    assert paper_batch - paper_eval >= 0.1 or paper_eval < fixed_eval - 0.1  # the regression this guards


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
    assert system_name(CRNNClassifier(architecture=arch, augment=augment)) == expected


def test_system_name_says_a_schedule_other_than_the_default():
    import dataclasses

    from deepfeat.crnn import CRNN_TRAINING

    cosine = dataclasses.replace(CRNN_TRAINING, schedule="cosine")
    augment = AugmentConfig.from_names(["mixup"])
    assert system_name(CRNNClassifier(augment=augment, training=cosine)) == "crnn-aug-cosine"


# ----------------------------------------------------------------------------- training

def _classifier(epochs=4, augment=None, **training):
    config = TrainConfig(**{**CRNN_TRAINING.to_dict(), "epochs": epochs, "batch_size": 8, **training})
    return CRNNClassifier(architecture=TINY, training=config, augment=augment)


def _X(data, augment):
    mels, labels = data
    versions = mels if augment is not None and augment.enabled else mels[:1]
    return versions.numpy().transpose(1, 0, 2, 3), labels


@pytest.mark.parametrize("augment", [None, AugmentConfig.from_names(["all"])])
def test_training_is_deterministic(data, augment):
    X, y = _X(data, augment)
    a, b = _classifier(augment=augment).fit(X, y), _classifier(augment=augment).fit(X, y)
    c = _classifier(augment=augment, seed=1).fit(X, y)
    assert _same_state(a.module_.state_dict(), b.module_.state_dict())
    assert not _same_state(a.module_.state_dict(), c.module_.state_dict())
    assert [r["loss"] for r in a.history_] == [r["loss"] for r in b.history_]


def test_training_lowers_the_loss_and_validates_on_held_out_clips(data):
    X, y = _X(data, None)
    model = CRNNClassifier(architecture=TINY, training=TrainConfig(epochs=12, batch_size=8, learning_rate=3e-3),
                           validation_fraction=0.2).fit(X, y)
    assert len(model.history_) == 12 and model.history_[-1]["loss"] < model.history_[0]["loss"]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in model.history_)
    assert 1 <= model.best_epoch_ <= 12 and len(model.validation_rows_) == 5  # one clip per class


@pytest.mark.parametrize("augment", [None, AugmentConfig.from_names(["noise", "specaugment", "patch", "mixup"])])
def test_resumed_training_ends_identical(data, tmp_path, monkeypatch, augment):
    from deepfeat.training import engine as engine_module

    X, y = _X(data, augment)
    reference = _classifier(augment=augment).fit(X, y)
    real_save, saved = engine_module.save_checkpoint, []

    def save_then_die(path, state):
        real_save(path, state)
        saved.append(state["epoch"])
        if len(saved) == 2:
            raise Interrupt

    monkeypatch.setattr(engine_module, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupt):
        _classifier(augment=augment).fit(X, y, checkpoint=tmp_path / "run.pt")
    monkeypatch.setattr(engine_module, "save_checkpoint", real_save)
    resumed = _classifier(augment=augment).fit(X, y, checkpoint=tmp_path / "run.pt")
    assert _same_state(resumed.module_.state_dict(), reference.module_.state_dict())
    assert [r["loss"] for r in resumed.history_] == [r["loss"] for r in reference.history_]


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("change", [dict(learning_rate=1e-2), dict(epochs=3), dict(seed=7)])
def test_resume_with_another_config_is_refused(data, tmp_path, change):
    X, y = _X(data, None)
    _classifier(epochs=2).fit(X, y, checkpoint=tmp_path / "run.pt")
    with pytest.raises(ConfigError, match="different training"):
        _classifier(**{"epochs": 2, **change}).fit(X, y, checkpoint=tmp_path / "run.pt")


def test_resume_with_other_augmentation_or_data_is_refused(data, tmp_path):
    X, y = _X(data, None)
    _classifier(epochs=2).fit(X, y, checkpoint=tmp_path / "run.pt")
    with pytest.raises(ConfigError, match="different training"):
        _classifier(epochs=2, augment=AugmentConfig(spec_augment=True)).fit(X, y, checkpoint=tmp_path / "run.pt")
    with pytest.raises(ConfigError, match="different training"):
        _classifier(epochs=2).fit(X[:, :, ::-1], y, checkpoint=tmp_path / "run.pt")


def test_predict_proba_gives_distributions_whatever_the_batch(data):
    X, y = _X(data, None)
    model = _classifier(epochs=1).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (len(y), 5) and proba.dtype == np.float32
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)
    assert np.allclose(proba[:7], model.predict_proba(X[:7]), atol=1e-6)


# ----------------------------------------------------------------------------- protocol

@pytest.fixture(scope="module")
def run(manifest, cached, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("crnn") / "run"
    classifier = _classifier(epochs=2, augment=AugmentConfig(noise_snr=(5.0,), spec_augment=True))
    metrics = run_crnn(manifest, run_dir, test_fold=5, classifier=classifier, mel=MEL, duration=1.0, mel_cache=cached,
                       workers=1, progress=False)
    return run_dir, metrics, classifier


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
    again = run_crnn(manifest, run_dir, test_fold=5, classifier=config, mel=MEL, duration=1.0, mel_cache=cached,
                     workers=1, progress=False)
    assert again["test_accuracy"] == metrics["test_accuracy"] and again["devel_accuracy"] == metrics["devel_accuracy"]
    assert sum(again["timings"]["fit_seconds"].values()) < sum(metrics["timings"]["fit_seconds"].values())


def test_rerun_with_another_config_is_refused(run, manifest, cached):
    run_dir, _, config = run
    with pytest.raises(StoreError, match=r"run: holds a run of other inputs or settings \(params.training.epochs: 2 -> 3\)"):
        run_crnn(manifest, run_dir, test_fold=5, classifier=_classifier(epochs=3, augment=config.augment), mel=MEL,
                 duration=1.0, mel_cache=cached, workers=1, progress=False)


@pytest.mark.parametrize("fold", [0, 9])
def test_missing_test_fold_is_a_config_error(manifest, tmp_path, fold):
    with pytest.raises(ConfigError, match="fold"):
        run_crnn(manifest, tmp_path / "run", test_fold=fold, classifier=_classifier(), mel=MEL, duration=1.0,
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
    import click

    from deepfeat.crnn.config import CRNN_MEL

    defaults = {p.name: p.get_default(click.Context(crnn)) for p in crnn.params}  # read lazily from the library
    assert (defaults["window"], defaults["hop"], defaults["n_mels"], defaults["sample_rate"], defaults["clip_db"]) == (
        CRNN_MEL.window, CRNN_MEL.hop, CRNN_MEL.n_mels, CRNN_MEL.sample_rate, CRNN_MEL.clip_db)
    config = CRNN_TRAINING
    assert defaults["duration"] == "auto"  # deepfeat.crnn.auto_duration: from the clips' lengths
    assert (defaults["epochs"], defaults["batch_size"], defaults["learning_rate"], defaults["seed"]) == (
        config.epochs, config.batch_size, config.learning_rate, config.seed)


@pytest.mark.parametrize("lengths, expected", [
    ([0.3] * 19 + [0.42], 0.3),   # 95th percentile 0.306 s: within 10 ms of 0.3 s
    ([0.33] * 19 + [0.5], 0.4),   # 0.338 s -> rounded up to 0.4 s
    ([5.001] * 20, 5.0),          # an encoder's padding adds no 0.1 s
])
def test_auto_duration_is_the_95th_percentile_of_the_clip_lengths(tmp_path, lengths, expected):
    """Short clips are not padded to 5 s: ``--duration auto`` follows the data (headers only)."""
    import soundfile as sf

    from deepfeat.crnn import auto_duration
    from deepfeat.datasets import load_manifest

    for i, seconds in enumerate(lengths):
        (tmp_path / "digit" if i % 2 else tmp_path / "word").mkdir(exist_ok=True)
        sf.write(tmp_path / ("digit" if i % 2 else "word") / f"c{i}.wav", np.zeros(int(seconds * 8000)), 8000)
    assert auto_duration(load_manifest(tmp_path)) == pytest.approx(expected)
