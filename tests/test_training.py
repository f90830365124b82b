"""deepfeat.training: the engine (schedules, early stopping, checkpoints, exact resume, seeds) and
the classifier base (inner validation split without leakage, save/load)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from deepfeat.errors import ConfigError
from deepfeat.training import engine as engine_module
from deepfeat.training.config import TrainConfig
from deepfeat.training.classifier import validation_split
from deepfeat.training.engine import Task, train


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """One torch thread for every test here (conftest.one_torch_thread)."""


def blobs(n=120, dim=6, classes=3, seed=0):
    g = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = g.normal(size=(classes, dim)) * 2.0
    X = centres[y] + g.normal(size=(n, dim))
    return X.astype(np.float32), y


class LinearTask(Task):
    """Softmax regression with dropout on its inputs (randomness in every step), and validation."""

    def __init__(self, X, y, X_val=None, y_val=None):
        self.module = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(X.shape[1], int(y.max()) + 1))
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.val = None if X_val is None else (torch.from_numpy(X_val), torch.from_numpy(y_val))

    def batches(self, epoch, batch_size):
        order = torch.randperm(len(self.y))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            yield self.X[idx], self.y[idx]

    def loss(self, batch):
        x, y = batch
        return F.cross_entropy(self.module(x), y)

    def validate(self):
        if self.val is None:
            return {}
        logits = self.module(self.val[0])
        return {"accuracy": float((logits.argmax(1) == self.val[1]).float().mean()),
                "loss": float(F.cross_entropy(logits, self.val[1]))}


def _fit(config, checkpoint=None, seed=0, validation=False, **kw):
    X, y = blobs()
    torch.manual_seed(seed)  # the module's initialisation
    task = LinearTask(X[:90], y[:90], X[90:], y[90:]) if validation else LinearTask(X, y)
    result = train(task, config, checkpoint=checkpoint, **kw)
    return task.module, result


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


CONFIG = TrainConfig(epochs=6, batch_size=16, learning_rate=0.05)


def test_training_lowers_the_loss_and_records_each_epoch():
    _, result = _fit(CONFIG)
    losses = [r["loss"] for r in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0] and all(r["seconds"] > 0 for r in result.history)


def test_training_is_deterministic_and_the_seed_matters():
    a, _ = _fit(CONFIG)
    b, _ = _fit(CONFIG)
    c, _ = _fit(TrainConfig(epochs=6, batch_size=16, learning_rate=0.05, seed=1))
    assert _same(a, b) and not _same(a, c)


def test_training_leaves_the_global_rng_alone():
    X, y = blobs()
    task = LinearTask(X, y)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(task, CONFIG)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("schedule,warmup", [("constant", 0), ("cosine", 0), ("cosine", 2)])
def test_learning_rate_schedules(schedule, warmup):
    config = TrainConfig(epochs=6, batch_size=16, learning_rate=0.1, schedule=schedule, warmup_epochs=warmup)
    lrs = [r["lr"] for r in _fit(config)[1].history]
    if schedule == "constant":
        assert lrs == [pytest.approx(0.1)] * 6
    else:
        assert lrs[warmup] == pytest.approx(0.1) and lrs[-1] < 0.02  # peak after warm-up, decays to ~0
        assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup + 1]))  # warm-up rises


def test_early_stopping_keeps_the_best_epoch():
    config = TrainConfig(epochs=60, batch_size=16, learning_rate=0.5, patience=3, monitor="loss", schedule="constant")
    module, result = _fit(config, validation=True)
    assert result.stopped_early and len(result.history) < 60
    losses = [r["val_loss"] for r in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1 and len(losses) - result.best_epoch == 3
    X, y = blobs()
    with torch.no_grad():
        kept = F.cross_entropy(module.eval()(torch.from_numpy(X[90:])), torch.from_numpy(y[90:]))
    assert float(kept) == pytest.approx(min(losses), rel=1e-5)  # the best epoch's weights, not the last


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_after", [1, 4])
@pytest.mark.parametrize("validation", [False, True])
def test_resumed_training_ends_identical(tmp_path, monkeypatch, stop_after, validation):
    config = TrainConfig(epochs=6, batch_size=16, learning_rate=0.05, schedule="cosine", warmup_epochs=1,
                         patience=10 if validation else None)
    reference, ref_result = _fit(config, validation=validation)
    real_save, saved = engine_module.save_checkpoint, []

    def save_then_die(path, state):
        real_save(path, state)
        saved.append(state["epoch"])
        if len(saved) == stop_after:
            raise Interrupt

    monkeypatch.setattr(engine_module, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupt):
        _fit(config, checkpoint=tmp_path / "ckpt.pt", validation=validation)
    monkeypatch.setattr(engine_module, "save_checkpoint", real_save)
    resumed, result = _fit(config, checkpoint=tmp_path / "ckpt.pt", seed=99, validation=validation)
    assert result.resumed_from == stop_after and _same(resumed, reference)
    assert [r["loss"] for r in result.history] == [r["loss"] for r in ref_result.history]


def test_finished_checkpoint_is_loaded_not_retrained(tmp_path):
    first, _ = _fit(CONFIG, checkpoint=tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["epoch"] == 6 and "optimizer" not in state  # a finished training keeps only its weights
    again, result = _fit(CONFIG, checkpoint=tmp_path / "c.pt", seed=5)
    assert result.resumed_from == 6 and _same(first, again) and not again.training


@pytest.mark.parametrize("change", [dict(learning_rate=0.01), dict(epochs=7), dict(seed=3), dict(optimizer="sgd")])
def test_a_checkpoint_of_another_training_is_refused(tmp_path, change):
    _fit(CONFIG, checkpoint=tmp_path / "c.pt")
    other = TrainConfig(**{**CONFIG.to_dict(), **change})
    with pytest.raises(ConfigError, match="different training"):
        _fit(other, checkpoint=tmp_path / "c.pt")


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(optimizer="lamb"), dict(schedule="step"), dict(patience=0),
                                 dict(precision="int8"), dict(learning_rate=0)])
def test_bad_training_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


@pytest.mark.parametrize("fraction", [0.2, 0.25])
def test_validation_split_holds_out_whole_clips_stratified(fraction):
    y = np.repeat(np.arange(4), 30)
    clips = np.arange(len(y)) // 3  # three rows (windows) per clip
    train_rows, val_rows = validation_split(y, clips, fraction, seed=0)
    assert not set(train_rows) & set(val_rows) and len(train_rows) + len(val_rows) == len(y)
    assert not set(clips[train_rows]) & set(clips[val_rows])  # a clip is on one side only
    assert len(val_rows) == pytest.approx(fraction * len(y), rel=0.3)
    per_class = np.bincount(y[val_rows], minlength=4)
    assert per_class.max() - per_class.min() <= 3 and (per_class % 3 == 0).all()  # stratified, by whole clips


def test_validation_split_is_empty_when_classes_are_too_small():
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    assert len(validation_split(y, None, 0.25, seed=0)[1]) == 0 and len(validation_split(y, None, 0.0, 0)[1]) == 0
