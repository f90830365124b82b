"""The CRNN as a scikit-learn classifier trained by the engine, so the fold protocol drives it
like any other stage."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.nn import functional as F
from sklearn.utils.validation import check_array

from ..augment import AugmentConfig
from ..errors import ConfigError
from ..evaluation import classification_metrics
from ..training.classifier import TorchClassifier, one_hot_batches
from ..training.engine import Task, TrainConfig, recalibrate_batch_norm
from .config import ARCHITECTURES, CRNNArchitecture, CRNN_TRAINING
from .model import CRNN


def architecture_of(value) -> CRNNArchitecture:
    """An architecture by name (a key of :data:`ARCHITECTURES`), dict or object."""
    if isinstance(value, CRNNArchitecture):
        return value
    if isinstance(value, dict):
        return CRNNArchitecture.from_dict(value)
    if value not in ARCHITECTURES:
        raise ConfigError(f"unknown CRNN architecture {value!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[value]


def as_versions(X) -> np.ndarray:
    """Inputs as float32 [N, V, n_mels, frames]: X[:, 0] the clips' log-mels (dB), X[:, 1:] their
    waveform-augmented copies. 3-D X is [N, n_mels, frames]; 2-D X is one frame per row [N, n_mels]."""
    X = check_array(X, allow_nd=True, dtype=np.float32)
    if X.ndim == 2:
        return X[:, None, :, None]
    if X.ndim == 3:
        return X[:, None]
    if X.ndim == 4:
        return X
    raise ValueError(f"CRNN inputs must be 2-, 3- or 4-D ([N, n_mels(, frames)] or [N, V, n_mels, frames]), "
                     f"got shape {X.shape}")


class CRNNTask(Task):
    """Training of a CRNN on mels [N, V, n_mels, frames]: each epoch every clip is replaced by one
    of its waveform-augmented copies with probability ``augment.waveform_probability``, then the
    batch transforms of ``augment`` (SpecAugment, patch replacement, MixUp) act on standardised
    mels; cross-entropy on (soft) targets."""

    def __init__(self, module: CRNN, X, y, X_val, y_val, augment: AugmentConfig, device: torch.device):
        self.module, self.augment, self.device = module, augment, device
        self.X, self.y = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(y)
        self.X_val, self.y_val = np.ascontiguousarray(X_val[:, 0]), y_val
        plain = self.X[:, 0]
        module.set_standardization(plain.mean(dim=(0, 2)), plain.std(dim=(0, 2)))
        self.n_classes = module.classifier.out_features

    def batches(self, epoch: int, batch_size: int):
        n, versions = self.X.shape[:2]
        order = torch.randperm(n)
        version = torch.zeros(n, dtype=torch.long)
        if versions > 1:
            swap = torch.rand(n) < self.augment.waveform_probability
            version = torch.where(swap, torch.randint(1, versions, (n,)), version)
        yield from one_hot_batches(self.X, self.y, order, version, batch_size, self.n_classes, self.device)

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        x, y = self.augment.augment_batch(self.module.standardize(x), y)
        return F.cross_entropy(self.module.classify(x).float(), y)

    def validate(self) -> dict[str, float]:
        if not len(self.y_val):
            return {}
        logits = torch.cat([self.module(torch.from_numpy(self.X_val[i:i + 256]).to(self.device)).float().cpu()
                            for i in range(0, len(self.X_val), 256)])
        names = [str(c) for c in range(self.n_classes)]
        metrics = classification_metrics(self.y_val, logits.argmax(dim=1).numpy(), names)
        metrics.pop("n")
        return {**metrics, "loss": float(F.cross_entropy(logits, torch.from_numpy(self.y_val)))}


class CRNNClassifier(TorchClassifier):
    """The CRNN (:mod:`deepfeat.crnn.model`) trained on log-mel spectrograms.

    Parameters
    ----------
    architecture : str, dict or CRNNArchitecture
        ``esc`` or ``dcase`` (:data:`~deepfeat.crnn.config.ARCHITECTURES`), or a custom one.
    training : TrainConfig, optional
        Default :data:`~deepfeat.crnn.config.CRNN_TRAINING`.
    augment : AugmentConfig, optional
        Augmentations; waveform ones need X with augmented copies (X[:, 1:]).
    validation_fraction : float
        Inner validation split of the training clips for early stopping and the best epoch (0: none).
    recalibrate_bn : bool
        After training, re-estimate the batch-norm statistics on the training clips with dropout
        off (:func:`~deepfeat.training.engine.recalibrate_batch_norm`): the running statistics
        otherwise lag behind weights that change fast in short trainings.
    device : str, optional
        ``cpu``, ``cuda`` … (default: CUDA when available).
    progress : bool
        A progress bar per training.
    frontend : dict, optional
        How the inputs were made (mel settings, clip duration); recorded with the saved model.

    X as :func:`as_versions` reads it. ``n_features_in_`` counts mel bands.
    """

    family = "crnn"

    def __init__(self, architecture="esc", training: TrainConfig | None = None, augment: AugmentConfig | None = None,
                 validation_fraction: float = 0.0, recalibrate_bn: bool = True, device: str | None = None,
                 progress: bool = False, frontend: dict | None = None):
        self.architecture, self.training, self.augment = architecture, training, augment
        self.validation_fraction, self.recalibrate_bn = validation_fraction, recalibrate_bn
        self.device, self.progress, self.frontend = device, progress, frontend

    @classmethod
    def default_training(cls) -> TrainConfig:
        return CRNN_TRAINING

    def _inputs(self, X, reset: bool) -> np.ndarray:
        versions = as_versions(X)
        if reset:
            self.n_features_in_ = versions.shape[2]
        elif versions.shape[2] != self.n_features_in_:
            raise ValueError(f"X has {versions.shape[2]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input (mel bands).")
        return versions

    def _build_module(self, input_shape, n_classes: int) -> CRNN:
        return CRNN(input_shape[-2], n_classes, architecture_of(self.architecture))

    def _task(self, module, X, y, X_val, y_val, device) -> CRNNTask:
        return CRNNTask(module, X, y, X_val, y_val, self.augment or AugmentConfig(), device)

    def _after_training(self, task: CRNNTask) -> None:
        if self.recalibrate_bn:
            plain, batch = task.X[:, 0], self.training_config().batch_size
            recalibrate_batch_norm(task.module, (plain[i:i + batch].to(task.device) for i in range(0, len(plain), batch)))

    def _logits(self, module, batch, device) -> torch.Tensor:
        return module(torch.from_numpy(np.ascontiguousarray(batch[:, 0])).to(device))

    def _description(self) -> dict:
        return {"architecture": dataclasses.asdict(architecture_of(self.architecture)), "frontend": self.frontend,
                "batch_size": self.training_config().batch_size}

    @classmethod
    def _from_description(cls, info: dict) -> "CRNNClassifier":
        config = dataclasses.replace(cls.default_training(), batch_size=info["batch_size"])
        return cls(architecture=info["architecture"], training=config, frontend=info.get("frontend"))
