"""The CRNN as a scikit-learn classifier, so the fold protocol drives it like any other stage."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted, column_or_1d

from ..augment import AugmentConfig
from ..errors import ConfigError, StoreError
from ..io import write_json
from .config import ARCHITECTURES, CRNNArchitecture, TrainingConfig
from .model import CRNN
from .train import predict_proba, train_crnn


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
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 2:
        return X[:, None, :, None]
    if X.ndim == 3:
        return X[:, None]
    if X.ndim == 4:
        return X
    raise ValueError(f"CRNN inputs must be 2-, 3- or 4-D ([N, n_mels(, frames)] or [N, V, n_mels, frames]), "
                     f"got shape {X.shape}")


class CRNNClassifier(ClassifierMixin, BaseEstimator):
    """The CRNN (:mod:`deepfeat.crnn.model`) trained on log-mel spectrograms.

    Parameters
    ----------
    architecture : str, dict or CRNNArchitecture
        ``esc`` or ``dcase`` (:data:`~deepfeat.crnn.model.ARCHITECTURES`), or a custom one.
    epochs, batch_size, learning_rate, betas, seed
        Training (:class:`~deepfeat.crnn.train.TrainingConfig`).
    augment : AugmentConfig, optional
        Augmentations; waveform ones need X with augmented copies (X[:, 1:]).
    device : str, optional
        ``cpu``, ``cuda`` … (default: CUDA when available).
    progress : bool
        A progress bar per training.
    frontend : dict, optional
        How the inputs were made (mel settings, clip duration); recorded with the saved model.

    ``fit(X, y, checkpoint=None)``: X as :func:`as_versions` reads it; a checkpoint file makes
    the training resumable (the same data and parameters resume it, others are refused).
    Attributes: ``classes_``, ``module_`` (the trained :class:`~deepfeat.crnn.model.CRNN`, CPU,
    eval mode), ``history_`` (per epoch: loss, seconds), ``summary_``.
    """

    def __init__(self, architecture="esc", epochs: int = 100, batch_size: int = 64, learning_rate: float = 1e-3,
                 betas=(0.9, 0.999), seed: int = 0, augment: AugmentConfig | None = None,
                 device: str | None = None, progress: bool = False, frontend: dict | None = None):
        self.architecture, self.epochs, self.batch_size = architecture, epochs, batch_size
        self.learning_rate, self.betas, self.seed, self.augment = learning_rate, betas, seed, augment
        self.device, self.progress, self.frontend = device, progress, frontend

    def training_config(self) -> TrainingConfig:
        """The :class:`TrainingConfig` these parameters describe."""
        return TrainingConfig(architecture=architecture_of(self.architecture), epochs=self.epochs,
                              batch_size=self.batch_size, learning_rate=self.learning_rate, betas=self.betas,
                              seed=self.seed, augment=self.augment or AugmentConfig())

    def fit(self, X, y, checkpoint: str | Path | None = None):
        config = self.training_config()
        versions = self._inputs(X, reset=True)
        y = column_or_1d(y, warn=True)
        check_consistent_length(versions, y)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"CRNNClassifier needs at least 2 classes, got {len(self.classes_)} class")
        mels = torch.from_numpy(np.ascontiguousarray(versions.transpose(1, 0, 2, 3)))  # [V, N, n_mels, frames]
        identity = {"data_sha256": _fingerprint(versions, y_index), "classes": [str(c) for c in self.classes_]}
        result = train_crnn(mels, y_index, len(self.classes_), config, checkpoint=checkpoint, identity=identity,
                            device=self.device, progress=self.progress,
                            desc=f"crnn {Path(checkpoint).stem}" if checkpoint else "crnn")
        self.module_ = result.model.cpu().eval()
        self.history_ = result.history
        self.summary_ = {"epochs": self.epochs, "augmentation": config.augment.names(),
                         "parameters": sum(p.numel() for p in self.module_.parameters())}
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities float32 [N, n_classes] of the clips (X[:, 0] of 4-D inputs)."""
        check_is_fitted(self)
        plain = torch.from_numpy(np.ascontiguousarray(self._inputs(X, reset=False)[:, 0]))
        from ..extractors.base import pick_device

        device = pick_device(self.device)
        proba = predict_proba(self.module_.to(device), plain, self.batch_size, device)
        self.module_.cpu()
        return proba

    def _inputs(self, X, reset: bool) -> np.ndarray:
        """Checked float32 inputs [N, V, n_mels, frames]; ``n_features_in_`` counts mel bands."""
        versions = as_versions(check_array(X, allow_nd=True, dtype=np.float32))
        if reset:
            self.n_features_in_ = versions.shape[2]
        elif versions.shape[2] != self.n_features_in_:
            raise ValueError(f"X has {versions.shape[2]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input (mel bands).")
        return versions

    def predict(self, X):
        """The most probable class."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    # --- a saved model is a state dict and its description, never a pickle ----------------------
    def save(self, run_dir: str | Path) -> Path:
        """``model.pt`` (state dict) and ``model.json`` (what rebuilds it) in ``run_dir``."""
        from ..io import atomic_path

        check_is_fitted(self)
        run_dir = Path(run_dir)
        with atomic_path(run_dir / "model.pt") as tmp:
            torch.save({k: v.detach().cpu() for k, v in self.module_.state_dict().items()}, tmp)
        info = {"model": "crnn", "classes": [str(c) for c in self.classes_],
                "architecture": dataclasses.asdict(self.module_.architecture), "n_mels": int(self.module_.band_mean.shape[0]),
                "n_features_in": int(self.n_features_in_), "batch_size": self.batch_size,
                "frontend": self.frontend}
        write_json(run_dir / "model.json", info)
        return run_dir / "model.pt"

    @classmethod
    def load(cls, run_dir: str | Path) -> "CRNNClassifier":
        """The fitted classifier saved in ``run_dir`` by :meth:`save` (weights loaded safely)."""
        from ..weights import load_state_dict

        run_dir = Path(run_dir)
        info_path = run_dir / "model.json"
        if not info_path.is_file():
            raise StoreError(f"{info_path}: missing; point at a finished `deepfeat crnn` run folder")
        info = json.loads(info_path.read_text())
        model = cls(architecture=info["architecture"], batch_size=info["batch_size"], frontend=info.get("frontend"))
        model.module_ = CRNN(info["n_mels"], len(info["classes"]), architecture_of(info["architecture"]))
        model.module_.load_state_dict(load_state_dict(run_dir / "model.pt"))
        model.module_.eval()
        model.classes_ = np.asarray(info["classes"], dtype=object)
        model.n_features_in_ = info["n_features_in"]
        return model


def _fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    """sha256 of the training data: a checkpoint resumes only the training of the same data."""
    h = hashlib.sha256()
    h.update(str(X.shape).encode())
    h.update(np.ascontiguousarray(X).view(np.uint8).reshape(-1))
    h.update(np.asarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()
