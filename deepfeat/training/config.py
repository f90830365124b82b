"""How a network is trained: :class:`TrainConfig`, the one configuration object of the training
engine (plain dataclasses, no torch import: the command line reads its defaults from here)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained (everything but the data and the task's own settings)."""

    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"  #: adamw | adam | sgd (momentum 0.9)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2  #: decoupled (AdamW) or L2 (Adam, SGD)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"  #: constant | cosine (to 0, after linear warm-up) | plateau (ReduceLROnPlateau)
    warmup_epochs: int = 0
    patience: int | None = None  #: early stopping: epochs without a better monitored value (None: never stop)
    monitor: str = "accuracy"  #: validation metric for early stopping, the plateau schedule and the best epoch
    grad_clip: float | None = None  #: maximum gradient norm (None: no clipping)
    precision: str = "auto"  #: auto: bf16 (or fp16) autocast on CUDA, fp32 on CPU
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0 or self.weight_decay < 0:
            raise ConfigError("epochs and batch size must be >= 1, the learning rate > 0 and weight decay >= 0")
        for name, value, allowed in (("optimizer", self.optimizer, OPTIMIZERS), ("schedule", self.schedule, SCHEDULES),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 epochs (or None), got {self.patience}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
