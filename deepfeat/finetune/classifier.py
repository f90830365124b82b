"""An image CNN fine-tuned on mel-spectrogram images, as a scikit-learn classifier trained by the
engine: the last ``train_blocks`` stages of the pretrained network and a new linear head train on
the frozen trunk's cached activations (:mod:`deepfeat.finetune.inputs`)."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_array
from torch.nn import functional as F

from ..augment import mixup
from ..evaluation import classification_metrics
from ..training.classifier import TorchClassifier, one_hot_batches
from ..training.config import TrainConfig
from ..training.engine import Task
from .config import FINETUNE_TRAINING, VALIDATION_FRACTION


class TailClassifier(torch.nn.Module):
    """Trainable stages (on trunk activations) → pooled features → dropout → linear head."""

    def __init__(self, tail: torch.nn.Module, dim: int, n_classes: int, dropout: float):
        super().__init__()
        self.tail = tail
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.tail(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


class FinetuneTask(Task):
    """Each epoch every clip is seen once, as one of its versions drawn at random (the plain image
    included); MixUp mixes pairs of the batch's trunk activations and targets (manifold MixUp when
    the trunk is frozen, input MixUp when everything trains); soft cross-entropy."""

    def __init__(self, module: TailClassifier, X, y, X_val, y_val, mixup_alpha: float, device: torch.device):
        self.module, self.mixup_alpha, self.device = module, mixup_alpha, device
        self.X, self.y = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(y)
        self.X_val, self.y_val = np.ascontiguousarray(X_val[:, 0]), y_val
        self.n_classes = module.head.out_features

    def batches(self, epoch: int, batch_size: int):
        n, versions = self.X.shape[:2]
        order = torch.randperm(n)
        version = torch.randint(0, versions, (n,))
        yield from one_hot_batches(self.X, self.y, order, version, batch_size, self.n_classes, self.device)

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        if self.mixup_alpha > 0:
            x, y = mixup(x, y, self.mixup_alpha)
        return F.cross_entropy(self.module(x).float(), y)

    def validate(self) -> dict[str, float]:
        if not len(self.y_val):
            return {}
        logits = torch.cat([self.module(torch.from_numpy(self.X_val[i:i + 128]).to(self.device)).float().cpu()
                            for i in range(0, len(self.X_val), 128)])
        metrics = classification_metrics(self.y_val, logits.argmax(dim=1).numpy(), [str(c) for c in range(self.n_classes)])
        metrics.pop("n")
        return {**metrics, "loss": float(F.cross_entropy(logits, torch.from_numpy(self.y_val)))}


class FineTunedCNN(TorchClassifier):
    """A pretrained image CNN whose last ``train_blocks`` stages and a new head are trained.

    Parameters
    ----------
    network : str
        An image CNN of the extractor registry (``deepfeat extract --list``).
    weights : str
        ``imagenet``, ``none`` (fixed-seed random initialisation) or a checkpoint path: where the
        trained stages start from (the trunk's activations were computed with the same weights).
    train_blocks : int or None
        Trainable stages at the end of the network (None: all of them); must match the trunk that
        made X.
    training : TrainConfig, optional
        Default :data:`~deepfeat.finetune.config.FINETUNE_TRAINING`.
    mixup_alpha : float
        MixUp's Beta(α, α) (0: off).
    head_dropout : float
        Dropout before the new linear head.
    validation_fraction : float
        Inner validation split of the training clips (early stopping, best epoch; 0: none).
    device, progress
        As for every trained classifier.
    frontend : dict, optional
        How the inputs were made (plot settings, image size, normalisation); recorded with the
        saved model (``deepfeat explain`` rebuilds the inputs and the frozen trunk from it).

    ``X``: trunk activations [N, V, …] (version 0 the plain image; ``predict_proba`` uses it).
    """

    family = "finetune"

    def __init__(self, network: str = "efficientnet_lite0", weights: str = "imagenet", train_blocks: int | None = 2,
                 training: TrainConfig | None = None, mixup_alpha: float = 0.2, head_dropout: float = 0.2,
                 validation_fraction: float = VALIDATION_FRACTION, device: str | None = None, progress: bool = False,
                 frontend: dict | None = None):
        self.network, self.weights, self.train_blocks, self.training = network, weights, train_blocks, training
        self.mixup_alpha, self.head_dropout, self.validation_fraction = mixup_alpha, head_dropout, validation_fraction
        self.device, self.progress, self.frontend = device, progress, frontend

    @classmethod
    def default_training(cls) -> TrainConfig:
        return FINETUNE_TRAINING

    def _inputs(self, X, reset: bool) -> np.ndarray:
        X = check_array(X, allow_nd=True, dtype=np.float32)
        X = X[:, None] if X.ndim == 2 else X  # [N, D] pooled features: one version
        if reset:
            self.n_features_in_ = int(np.prod(X.shape[2:]))
        elif int(np.prod(X.shape[2:])) != self.n_features_in_:
            raise ValueError(f"X has {int(np.prod(X.shape[2:]))} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input (per version).")
        return X

    def _staged(self):
        from ..extract import make_extractor

        return make_extractor(self.network, weights=self.weights, device="cpu").staged_network()

    def _build_module(self, input_shape, n_classes: int) -> TailClassifier:
        from .inputs import trunk_and_tail

        _, tail = trunk_and_tail(self._staged(), self.train_blocks)
        with torch.no_grad():
            dim = torch.flatten(tail.eval()(torch.zeros(1, *input_shape[1:])), 1).shape[1]
        return TailClassifier(tail, int(dim), n_classes, self.head_dropout)

    def _task(self, module, X, y, X_val, y_val, device) -> FinetuneTask:
        return FinetuneTask(module, X, y, X_val, y_val, self.mixup_alpha, device)

    def _logits(self, module, batch, device) -> torch.Tensor:
        return module(torch.from_numpy(np.ascontiguousarray(batch[:, 0])).to(device))

    def _description(self) -> dict:
        return {"network": self.network, "weights": self.weights, "train_blocks": self.train_blocks,
                "head_dropout": self.head_dropout, "batch_size": self.training_config().batch_size,
                "frontend": self.frontend}

    @classmethod
    def _from_description(cls, info: dict) -> "FineTunedCNN":
        import dataclasses

        config = dataclasses.replace(cls.default_training(), batch_size=info["batch_size"])
        # the architecture is rebuilt without its pretrained weights: the saved state dict replaces them
        return cls(network=info["network"], weights="none", train_blocks=info["train_blocks"], training=config,
                   head_dropout=info["head_dropout"], frontend=info.get("frontend"))

    @classmethod
    def load(cls, run_dir) -> "FineTunedCNN":
        """The fitted classifier saved in ``run_dir`` (its ``weights`` as trained from)."""
        import json
        from pathlib import Path

        model = super().load(run_dir)
        model.weights = json.loads((Path(run_dir) / "model.json").read_text())["weights"]
        return model
