"""The base of every classifier deepfeat trains (CRNN, fine-tuned CNN): a scikit-learn estimator
around the training engine (:mod:`deepfeat.training.engine`).

``fit(X, y, groups=None, clips=None, checkpoint=None)`` holds out an inner validation split of the
rows it is given — the training folds only, stratified by class, whole clips at a time — trains
with early stopping on it, and keeps the best epoch's weights; ``predict_proba`` runs the network
in eval mode. A saved model is a state dict (``model.pt``) and a JSON description
(``model.json``), never a pickle.
"""
from __future__ import annotations

import abc
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from ..errors import ConfigError, StoreError
from ..io import atomic_path, write_json
from .engine import Task, TrainConfig, train


def validation_split(y: np.ndarray, clips: np.ndarray | None, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of a stratified split holding out about ``fraction`` of
    the clips (all rows of a clip on one side). No validation (all rows train) when ``fraction``
    is 0 or a class has fewer clips than the split needs."""
    rows = np.arange(len(y))
    if fraction <= 0:
        return rows, rows[:0]
    from sklearn.model_selection import StratifiedGroupKFold

    groups = rows if clips is None else np.asarray(clips)
    n_splits = max(2, int(round(1.0 / fraction)))
    per_class = [np.unique(groups[y == c]).size for c in np.unique(y)]
    if min(per_class) < n_splits:
        return rows, rows[:0]
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_rows, val_rows = next(splitter.split(rows, y, groups))
    return np.sort(train_rows), np.sort(val_rows)


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 of arrays' shapes and bytes: a checkpoint resumes only the training of the same data."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.view(np.uint8).reshape(-1))
    return h.hexdigest()


def softmax_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == y).float().mean())



def one_hot_batches(X: torch.Tensor, y: torch.Tensor, order: torch.Tensor, version: torch.Tensor, batch_size: int,
                    n_classes: int, device: torch.device):
    """Mini-batches of a training task: rows ``order`` [N] in slices of ``batch_size``, each row's
    version ``version[row]`` of ``X`` [N, V, ...], with one-hot float targets [b, n_classes], on
    ``device``. The caller draws ``order`` and ``version`` (the seeded random stream is its own)."""
    from torch.nn import functional as F

    for first in range(0, len(order), batch_size):
        idx = order[first:first + batch_size]
        yield (X[idx, version[idx]].to(device, non_blocking=True),
               F.one_hot(y[idx], n_classes).float().to(device))

class TorchClassifier(ClassifierMixin, BaseEstimator, abc.ABC):
    """A network trained on ``X`` by the engine. Subclasses define the inputs and the network:

    * :meth:`_inputs` — checked array of X (sets ``n_features_in_`` when ``reset``);
    * :meth:`_build_module` — the network for inputs of shape ``input_shape`` (one row of X) and
      ``n_classes`` classes;
    * :meth:`_task` — the engine task on the training rows (and the validation rows);
    * :meth:`_logits` — a batch of inputs → class logits (eval mode);
    * :meth:`_description` — what rebuilds the network (saved in model.json).

    Shared parameters: ``training`` (:class:`~deepfeat.training.engine.TrainConfig`; None: the
    subclass's :meth:`default_training`), ``validation_fraction`` (inner validation split of the
    training rows; 0: none, train for all epochs), ``device`` and ``progress``.
    """

    #: what model.json's "model" says (the family of the system, e.g. "crnn")
    family: str = "network"

    @classmethod
    def default_training(cls) -> TrainConfig:
        return TrainConfig()

    def training_config(self) -> TrainConfig:
        config = self.training or self.default_training()
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"training must be a TrainConfig, got {type(config).__name__}")
        return config

    @abc.abstractmethod
    def _inputs(self, X, reset: bool) -> np.ndarray: ...

    @abc.abstractmethod
    def _build_module(self, input_shape: tuple[int, ...], n_classes: int) -> torch.nn.Module: ...

    @abc.abstractmethod
    def _task(self, module, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
              device: torch.device) -> Task: ...

    @abc.abstractmethod
    def _logits(self, module: torch.nn.Module, batch: np.ndarray, device: torch.device) -> torch.Tensor: ...

    def _description(self) -> dict:
        return {}

    def _after_training(self, task: Task) -> None:
        """A last step on the trained ``task.module`` (default: none)."""

    def _identity(self) -> dict:
        """What besides the data and the TrainConfig identifies a training (for checkpoints)."""
        return {k: repr(v) for k, v in sorted(self.get_params(deep=False).items())
                if k not in ("device", "progress", "training")}

    def _device(self) -> torch.device:
        from ..extractors.base import pick_device

        device = pick_device(self.device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return device

    def fit(self, X, y, clips=None, checkpoint: str | Path | None = None):
        """Train on ``X`` with labels ``y``; ``clips`` [N] keeps a clip's rows on one side of the
        inner validation split; ``checkpoint`` makes the training resumable."""
        config = self.training_config()
        X = self._inputs(X, reset=True)
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes, got {len(self.classes_)} class")
        train_rows, val_rows = validation_split(y_index, clips, self.validation_fraction, config.seed)
        device = self._device()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            module = self._build_module(X.shape[1:], len(self.classes_)).to(device)
        self.input_shape_ = tuple(int(d) for d in X.shape[1:])
        task = self._task(module, X[train_rows], y_index[train_rows], X[val_rows], y_index[val_rows], device)
        identity = {"estimator": self._identity(), "data_sha256": fingerprint(X, y_index),
                    "classes": [str(c) for c in self.classes_], "validation_rows": val_rows.tolist()}
        result = train(task, config, checkpoint=checkpoint, identity=identity, device=device, progress=self.progress,
                       desc=f"{self.family} {Path(checkpoint).stem}" if checkpoint else self.family)
        self._after_training(task)
        self.module_ = module.cpu().eval()
        self.history_, self.best_epoch_ = result.history, result.best_epoch
        self.validation_rows_ = val_rows
        self.summary_ = {"epochs_trained": len(result.history), "best_epoch": result.best_epoch,
                         "stopped_early": result.stopped_early, "n_validation": int(val_rows.size),
                         "parameters": sum(p.numel() for p in module.parameters())}
        return self

    @torch.inference_mode()
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities float32 [N, n_classes]."""
        check_is_fitted(self)
        X = self._inputs(X, reset=False)
        device = self._device()
        module = self.module_.to(device).eval()
        batch = self.training_config().batch_size
        out = [torch.softmax(self._logits(module, X[i:i + batch], device).float(), dim=1).cpu()
               for i in range(0, len(X), batch)]
        self.module_.cpu()
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, len(self.classes_)), np.float32)

    def predict(self, X):
        """The most probable class."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def save(self, run_dir: str | Path) -> Path:
        """``model.pt`` (state dict) and ``model.json`` (what rebuilds it) in ``run_dir``."""
        check_is_fitted(self)
        run_dir = Path(run_dir)
        with atomic_path(run_dir / "model.pt") as tmp:
            torch.save({k: v.detach().cpu() for k, v in self.module_.state_dict().items()}, tmp)
        write_json(run_dir / "model.json", {
            "model": self.family, "classes": [str(c) for c in self.classes_], "n_features_in": int(self.n_features_in_),
            "input_shape": list(self.input_shape_),
            "params": {k: repr(v) for k, v in self.get_params(deep=False).items()}, **self._description()})
        return run_dir / "model.pt"

    @classmethod
    def load(cls, run_dir: str | Path) -> "TorchClassifier":
        """The fitted classifier saved in ``run_dir`` by :meth:`save` (weights loaded safely)."""
        from ..weights import load_state_dict

        info_path = Path(run_dir) / "model.json"
        if not info_path.is_file():
            raise StoreError(f"{info_path}: missing; point at a finished `deepfeat {cls.family}` run folder")
        info = json.loads(info_path.read_text())
        model = cls._from_description(info)
        model.classes_ = np.asarray(info["classes"], dtype=object)
        model.n_features_in_ = info["n_features_in"]
        model.input_shape_ = tuple(info["input_shape"])
        model.module_ = model._build_module(model.input_shape_, len(model.classes_))
        model.module_.load_state_dict(load_state_dict(Path(run_dir) / "model.pt"))
        model.module_.eval()
        return model

    @classmethod
    @abc.abstractmethod
    def _from_description(cls, info: dict) -> "TorchClassifier":
        """An unfitted classifier (from model.json's contents) whose :meth:`_build_module` rebuilds the network."""
