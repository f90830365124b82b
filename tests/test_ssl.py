"""deepfeat.ssl: self-supervised pre-training (``deepfeat pretrain``) on tiny synthetic audio: each
of the six methods trains, learns on an easy batch, resumes exactly, never reads the test fold,
loads into extract and finetune, and bad input ends in one line."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from deepfeat.config import MelConfig, PlotConfig
from deepfeat.datasets import load_manifest
from deepfeat.errors import ConfigError
from deepfeat.ssl.config import METHODS, MethodConfig, ViewConfig
from deepfeat.ssl.run import pretrain, pretrain_info, training_checkpoint, with_training

SIZE = (32, 32)
PLOT = PlotConfig(size=SIZE, duration=1.0, mel=MelConfig(sample_rate=16000, n_mels=32))
#: lightly's heads, scaled down so that a step takes milliseconds
TINY = MethodConfig(hidden_dim=64, out_dim=32, barlow_dim=64, dino_dim=64, prototypes=8, memory_bank=16, swav_queue=16)
TWO_EPOCHS = with_training(None, epochs=2, batch_size=8, warmup_epochs=0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pretrain(demo_dir, out, method="simclr", **kw):
    args = dict(method=method, backbone="resnet18", test_fold=5, plot=PLOT, size=SIZE, training=TWO_EPOCHS,
                method_config=TINY, workers=0, cache_dir=out.parent / "cache", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's weight_norm deprecation inside lightly's DINO head
        return pretrain(load_manifest(demo_dir), out, **{**args, **kw})


def _state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def simclr_ckpt(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssl") / "simclr.pt"
    return out, _pretrain(demo_dir, out)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_and_writes_a_described_weights_file(method, demo_dir, tmp_path):
    info = _pretrain(demo_dir, tmp_path / f"{method}.pt", method=method)
    history = info["history"]
    assert len(history) == 2 and all(np.isfinite(r["loss"]) for r in history)
    assert all(r["val_embedding_std"] > 0 for r in history)  # the collapse guard's value, per epoch
    assert info["method"] == method and info["backbone"] == "resnet18" and info["epochs"] == 2
    manifest = load_manifest(demo_dir)
    development = dataclasses.replace(manifest, clips=tuple(c for c in manifest.clips if c.fold != 5),
                                      evaluation_folds=())
    assert info["data"]["manifest_sha256"] == development.fingerprint() and info["data"]["held_out_folds"] == [5]
    assert info["data"]["n_clips"] == 20 and info["steps_per_epoch"] == 2
    assert pretrain_info(tmp_path / f"{method}.pt")["method"] == method
    assert not training_checkpoint(tmp_path / f"{method}.pt").exists()  # removed once the weights are written
    # only the backbone is saved, in torchvision's key layout
    assert set(_state(tmp_path / f"{method}.pt")) == set(__import__("torchvision").models.resnet18().state_dict())


@pytest.mark.parametrize("method", METHODS)
def test_loss_decreases_on_an_easy_batch(method):
    """One fixed batch, its second view the first plus a little noise, in-batch negatives only
    (no memory bank or queue): ten Adam steps lower every method's loss clearly."""
    from deepfeat.extract import make_extractor
    from deepfeat.ssl.methods import Backbone, build_method

    torch.manual_seed(0)
    extractor = make_extractor("resnet18", weights="none", plot=PLOT, size=SIZE, device="cpu")
    net = extractor.load_network()
    config = MethodConfig(hidden_dim=64, out_dim=32, barlow_dim=64, dino_dim=64, prototypes=8, memory_bank=0,
                          swav_queue=0)
    module = build_method(method, Backbone(net, extractor.split(net), 512), config, n_clips=8, steps_per_epoch=1,
                          epochs=10).train()
    x0 = torch.randn(8, 3, *SIZE)
    x1 = x0 + 0.1 * torch.randn_like(x0)
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(10):
        loss = module.loss(x0, x1, step=step, epoch=step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.after_step(step)
        losses.append(float(loss.detach()))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < losses[0] - 0.1, losses


@pytest.mark.parametrize("method", [pytest.param(m, marks=[] if m in ("moco", "swav") else pytest.mark.slow)
                                    for m in METHODS])
def test_resume_after_interruption_gives_identical_weights(method, demo_dir, tmp_path, monkeypatch):
    """Killed after the first epoch's checkpoint, rerun: the same weights as an uninterrupted run
    (memory banks, queues, momentum encoders and random state all resumed)."""
    from deepfeat.ssl.task import PretrainTask

    whole = _pretrain(demo_dir, tmp_path / "whole.pt", method=method)
    validate = PretrainTask.validate
    calls = []

    def killed_in_epoch_two(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return validate(self)

    monkeypatch.setattr(PretrainTask, "validate", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _pretrain(demo_dir, tmp_path / "resumed.pt", method=method)
    assert training_checkpoint(tmp_path / "resumed.pt").exists() and not (tmp_path / "resumed.pt").exists()
    monkeypatch.setattr(PretrainTask, "validate", validate)
    resumed = _pretrain(demo_dir, tmp_path / "resumed.pt", method=method)
    a, b = _state(tmp_path / "whole.pt"), _state(tmp_path / "resumed.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in whole["history"]]


def test_the_test_fold_is_never_read(demo_dir, tmp_path, monkeypatch):
    import deepfeat.mel_cache as mel_cache

    read = []
    load_audio = mel_cache.load_audio

    def recording(path, *args, **kwargs):
        read.append(str(path))
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr(mel_cache, "load_audio", recording)
    manifest = load_manifest(demo_dir)
    info = _pretrain(demo_dir, tmp_path / "p.pt", training=with_training(TWO_EPOCHS, epochs=1))
    assert sorted(read) == sorted(str(c.path) for c in manifest.clips if c.fold != 5)
    assert info["data"]["n_clips"] == 20 and len(manifest) == 25
    read.clear()
    _pretrain(demo_dir, tmp_path / "q.pt", test_fold=2, training=with_training(TWO_EPOCHS, epochs=1))
    assert sorted(read) == sorted(str(c.path) for c in manifest.clips if c.fold != 2)


def test_the_weights_load_into_extract_and_finetune(simclr_ckpt, demo_dir, tmp_path):
    from deepfeat.augment import AugmentConfig
    from deepfeat.extract import extract_features, make_extractor
    from deepfeat.finetune import FineTunedCNN
    from deepfeat.finetune.run import trunk_extractor
    from deepfeat.api import load_features

    path, info = simclr_ckpt
    saved = _state(path)
    extractor = make_extractor("resnet18", weights=str(path), plot=PLOT, size=SIZE, device="cpu")
    net = extractor.load_network()
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    assert extractor.weights_sha256 == info["sha256"]
    store = extract_features(load_manifest(demo_dir), extractor, tmp_path / "probe.h5", workers=0, progress=False)
    features = load_features(store)
    assert features.features.shape == (25, 512) and np.isfinite(features.features).all()
    # fine-tuning starts from the same weights (its trunk and its trainable tail)
    reference = __import__("torchvision").models.resnet18()
    reference.load_state_dict(saved)
    expected = [stage.state_dict() for stage in extractor.split(reference).stages]
    staged = FineTunedCNN(network="resnet18", weights=str(path))._staged()
    for stage, want in zip(staged.stages, expected, strict=True):
        assert all(torch.equal(v, want[k]) for k, v in stage.state_dict().items())
    trunk = trunk_extractor(FineTunedCNN(network="resnet18", weights=str(path), train_blocks=1), PLOT,
                            AugmentConfig(), 0, "cpu", SIZE)
    trunk.load()
    assert trunk.weights_sha256 == info["sha256"]


def test_a_rerun_returns_the_finished_file_and_another_pretraining_is_refused(simclr_ckpt, demo_dir):
    path, info = simclr_ckpt
    mtime = path.stat().st_mtime_ns
    again = _pretrain(demo_dir, path)
    assert again["sha256"] == info["sha256"] and path.stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="--overwrite"):
        _pretrain(demo_dir, path, method="byol")
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("method", METHODS)
def test_the_report_knows_each_methods_embedding_size(method):
    from deepfeat.ssl.config import embedding_dim
    from deepfeat.ssl.methods import Backbone, build_method

    backbone = Backbone(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16)), None, 16)
    backbone.forward = lambda x: backbone.net(x)
    module = build_method(method, backbone, TINY, n_clips=8, steps_per_epoch=1, epochs=1).train()
    assert module.online(torch.randn(4, 12)).shape[1] == embedding_dim(method, TINY.to_dict())


def test_collapse_guard_warns_on_collapsed_embeddings():
    from deepfeat.ssl.task import CollapseWarning, check_collapse, embedding_std

    spread = torch.nn.functional.normalize(torch.randn(256, 64), dim=1)
    assert abs(embedding_std(spread) - 1 / 8) < 0.02  # about 1/sqrt(d)
    collapsed = torch.ones(256, 64) + 1e-4 * torch.randn(256, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not check_collapse(embedding_std(spread), 64)
    with pytest.warns(CollapseWarning, match="collapsing"):
        assert check_collapse(embedding_std(collapsed), 64, epoch=3)


def test_views_keep_shape_and_range_and_differ():
    from deepfeat.ssl.views import draw_view

    torch.manual_seed(0)
    planes = [torch.rand(4, 32, 50) * -60.0]
    a, b = draw_view(planes, ViewConfig(), -60.0)[0], draw_view(planes, ViewConfig(), -60.0)[0]
    assert a.shape == planes[0].shape and a.min() >= -60.0 and a.max() <= 0.0
    assert not torch.equal(a, b)
    quiet = ViewConfig(crop=(1.0, 1.0), pitch_bins=0, gain_db=0.0, noise_p=0.0, mix_p=0.0, time_masks=0, freq_masks=0)
    clean = [(p - p.amax(dim=(1, 2), keepdim=True)).clamp_min(-60.0) for p in planes]
    assert torch.allclose(draw_view(clean, quiet, -60.0)[0], clean[0], atol=1e-3)  # no transform: the clip itself


def test_cli_pretrain_writes_a_weights_file_extract_reads(demo_dir, tmp_path, capsys):
    from deepfeat.cli.main import main

    out = tmp_path / "cli.pt"
    common = ["-sr", "16000", "--n-mels", "32", "--duration", "1", "--size", "32", "32"]
    main(["pretrain", str(demo_dir), "-n", "resnet18", "--method", "barlow", "-o", str(out), "--epochs", "1",
          "--batch-size", "8", "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "-q", *common])
    line = capsys.readouterr().out
    assert line.startswith(f"wrote {out}: barlow resnet18, 20 clips of") and "fold 5 held out" in line
    main(["extract", str(demo_dir), "-n", "resnet18", "-w", str(out), "-o", str(tmp_path / "x.h5"), "--workers", "0",
          "-q", *common])
    assert (tmp_path / "x.h5").is_file()


BAD = {
    "unknown method": ["--method", "mae"],
    "audio model as backbone": ["-n", "panns_cnn14"],
    "missing fold": ["--fold", "9"],
    "plateau schedule": ["--schedule", "plateau"],
    "missing weights": ["-w", "{tmp}/nothing.pt"],
    "not a weights file": ["-w", "{tmp}/junk.pt"],
    "zero epochs": ["--epochs", "0"],
    "output of another pre-training": ["-o", "{other}"],
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_ends_in_one_line(name, demo_dir, simclr_ckpt, tmp_path, capsys):
    from deepfeat.cli.main import main

    (tmp_path / "junk.pt").write_text("not a checkpoint")
    extra = [a.format(tmp=tmp_path, other=simclr_ckpt[0]) for a in BAD[name]]
    args = ["pretrain", str(demo_dir), "-o", str(tmp_path / "out.pt"), "--workers", "0", "-q", "-sr", "16000",
            "--duration", "1", "--size", "32", "32", "--method", "byol", "--epochs", "1", *extra]
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err, err
    if err.startswith("Error: "):
        assert err.count("\n") == 1, err
    else:  # click's usage errors
        assert "Usage:" in err and "Error:" in err, err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.slow
def test_cli_finetune_from_the_pretrained_weights(simclr_ckpt, demo_dir, tmp_path, capsys):
    import json

    from deepfeat.cli.main import main

    path, info = simclr_ckpt
    main(["finetune", str(demo_dir), "-n", "resnet18", "-w", str(path), "--size", "32", "32", "--epochs", "1",
          "--batch-size", "8", "-o", str(tmp_path / "ft"), "--workers", "0", "-q", "-sr", "16000", "--duration", "1"])
    run = (tmp_path / "ft" / "run.json").read_text()
    assert f'"weights_sha256": "{info["sha256"]}"' in run  # the resolver checksummed the file it loaded
    assert json.loads((tmp_path / "ft" / "metrics.json").read_text())["weights"] == str(path)


def test_a_plain_folder_of_audio_is_read_whole(demo_dir, tmp_path):
    import shutil

    folder = tmp_path / "plain"
    folder.mkdir()
    for clip in load_manifest(demo_dir).clips[:8]:
        shutil.copy(clip.path, folder / clip.path.name)
    info = _pretrain(folder, tmp_path / "plain.pt", training=with_training(TWO_EPOCHS, epochs=1))
    assert info["data"]["n_clips"] == 8 and info["data"]["held_out_folds"] == []


class _QuickStages:
    """The study's stages replaced by stand-ins that record their calls (no training)."""

    def __init__(self):
        self.calls = []

    def pretrain(self, manifest, start):
        from pathlib import Path

        Path(start.weights).write_bytes(start.method.encode())
        self.calls.append(("pretrain", start.name))
        history = [{"loss": 5.0, "val_embedding_std": 0.1}, {"loss": 4.0, "val_embedding_std": 0.09}]
        return {"method": start.method, "epochs": 2, "train_seconds": 60.0, "mel_seconds": 3.0, "device": "cpu",
                "history": history, "data": {"n_clips": 20}, "method_config": TINY.to_dict(), "sha256": start.method * 4}

    def _metrics(self, start, evaluation):
        accuracy = {"random": 0.5, "simclr": 0.6, "byol": 0.4}[start.name] + (0.1 if evaluation == "finetune" else 0)
        self.calls.append((evaluation, start.name))
        return {"devel_accuracy": accuracy, "test_accuracy": accuracy, "n_test": 5, "development_folds": [1, 2, 3, 4],
                "timings": {"total_seconds": 2.0}}

    def probe(self, manifest, start, store, run_dir, overwrite):
        return self._metrics(start, "probe")

    def finetune(self, manifest, start, run_dir, overwrite):
        import json

        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "training.json").write_text(json.dumps({"final": [{"seconds": 30.0}, {"seconds": 30.0}]}))
        return self._metrics(start, "finetune")


def test_study_table_rows_and_rerun(demo_dir, tmp_path):
    from deepfeat.ssl.study import Study, run_study

    study = Study(demo_dir, methods=("simclr", "byol"), size=SIZE, reference=None, out=tmp_path / "out",
                  work=tmp_path / "work", progress=False, command="deepfeat ssl-study DEMO")
    stages = _QuickStages()
    readme = run_study(study, stages=stages, echo=lambda line: None)
    assert stages.calls == [("probe", "random"), ("finetune", "random"), ("pretrain", "simclr"), ("probe", "simclr"),
                            ("finetune", "simclr"), ("pretrain", "byol"), ("probe", "byol"), ("finetune", "byol")]
    text = readme.read_text()
    assert "| simclr | resnet18 | 2 epochs on 20 clips, 1.0 min (cpu) | 60.0 | 60.0 | +10.0 |" in text
    assert "| byol | resnet18 |" in text and "-10.0" in text and "| 5 → 4 |" in text
    assert "linear probe: best method simclr at 60.0 % test accuracy vs 50.0 %" in text
    # 3 probes of 2 s, 3 fine-tunes of 60 s, 2 pre-trainings of 63 s
    assert "Made by `deepfeat ssl-study DEMO`" in text and "compute, all rows: 5.2 min" in text
    assert "fold 5 is left out" in text and (tmp_path / "out" / "test_accuracy.png").is_file()
    stages.calls.clear()
    run_study(study, stages=stages, echo=lambda line: None)  # finished rows are skipped
    assert [c for c in stages.calls if c[0] != "pretrain"] == []


def test_random_init_fine_tune_rows_say_their_trunk_is_calibrated(demo_dir, tmp_path):
    """Rows made before the random trunk's batch norm was calibrated are not taken as finished."""
    from deepfeat.ssl.study import Start, Study, _row_identity

    study = Study(demo_dir, methods=("simclr",), size=SIZE, reference=None, out=tmp_path / "out", work=tmp_path / "w")
    manifest = study.manifest()
    random, simclr = Start("random", "resnet18", "none"), Start("simclr", "resnet18", "w.pt", "simclr")
    assert _row_identity(study, manifest, random, "finetune", None)["trunk_batch_norm"] == "calibrated"
    assert "trunk_batch_norm" not in _row_identity(study, manifest, simclr, "finetune", "ab")
    assert "trunk_batch_norm" not in _row_identity(study, manifest, random, "probe", None)


def test_cli_loads_neither_torch_nor_lightly_for_help():
    import subprocess
    import sys

    code = ("import sys\nfrom deepfeat.cli.main import main\nfor c in ('pretrain', 'ssl-study'):\n"
            "    try:\n        main([c, '--help'])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'lightly', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
