"""What configures ``deepfeat pretrain`` and the study by default: plain dataclasses, no torch
import (the command line reads its defaults and choices from here)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError
from ..training.config import TrainConfig

#: The self-supervised methods, each built from lightly's losses and heads (:mod:`.methods`).
METHODS = ("simclr", "moco", "byol", "dino", "barlow", "swav")
DEFAULT_BACKBONE = "resnet18"
DEFAULT_SIZE = (128, 128)  #: image (height, width) in pixels: small enough for CPU pre-training
DEFAULT_DURATION = 5.0  #: seconds every clip is padded or cropped to before its spectrogram is cached
#: The collapse guard warns when the std of the L2-normalised embeddings falls below this
#: fraction of 1/sqrt(d), the value of embeddings spread evenly over the unit sphere.
COLLAPSE_FRACTION = 0.1

#: How a backbone pre-trains by default: AdamW, linear warm-up then cosine decay. On ESC-10's 320
#: development clips a batch of 64 gives 5 steps an epoch.
PRETRAIN_TRAINING = TrainConfig(epochs=100, batch_size=64, optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4,
                                schedule="cosine", warmup_epochs=5)


@dataclass(frozen=True)
class ViewConfig:
    """How the two views of a clip are drawn from its cached log-mel spectrogram (dB); every
    transform acts on the spectrogram before it is rendered (:mod:`deepfeat.ssl.views`).

    Probabilities are per view; ranges are drawn uniformly."""

    crop: tuple[float, float] = (0.6, 1.0)  #: fraction of the clip's frames a view keeps (then stretched to the image)
    pitch_bins: int = 4  #: largest shift along the mel axis, bins (a small pitch shift)
    gain_db: float = 6.0  #: largest level change, dB, at each end of a linear fade across the view
    noise_snr: tuple[float, float] = (5.0, 30.0)  #: SNR of the added noise, dB
    noise_p: float = 0.5
    mix: float = 0.4  #: largest weight of another clip mixed in (power domain)
    mix_p: float = 0.5
    time_masks: int = 2  #: SpecAugment bands of frames set to the floor
    freq_masks: int = 2  #: SpecAugment bands of mel bins set to the floor
    mask_fraction: float = 0.1  #: widest mask, as a fraction of the frames (time) or bins (frequency)

    def __post_init__(self):
        object.__setattr__(self, "crop", tuple(float(c) for c in self.crop))
        object.__setattr__(self, "noise_snr", tuple(float(s) for s in self.noise_snr))
        if not 0.0 < self.crop[0] <= self.crop[1] <= 1.0:
            raise ConfigError(f"crop must be fractions 0 < low <= high <= 1, got {self.crop}")
        for name in ("noise_p", "mix_p", "mix", "mask_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if min(self.pitch_bins, self.time_masks, self.freq_masks) < 0 or self.gain_db < 0:
            raise ConfigError("pitch_bins, time_masks, freq_masks and gain_db must be >= 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MethodConfig:
    """Sizes of the heads, momentum, temperatures, memory bank and prototypes: lightly's example
    settings scaled down for small data and CPU budgets."""

    hidden_dim: int = 512  #: projection and prediction heads' hidden layer
    out_dim: int = 128  #: projection output (SimCLR, MoCo, BYOL, SwaV)
    barlow_dim: int = 1024  #: Barlow Twins' projection (hidden and output)
    dino_dim: int = 1024  #: DINO's output (prototype logits)
    simclr_temperature: float = 0.5  #: NT-Xent of SimCLR (lightly's default)
    moco_temperature: float = 0.1  #: NT-Xent of MoCo v2
    momentum: tuple[float, float] = (0.99, 1.0)  #: momentum encoders (MoCo, BYOL, DINO): cosine schedule from, to
    memory_bank: int = 4096  #: MoCo's negatives (at most the training clips)
    prototypes: int = 64  #: SwaV's prototypes (frozen during the first epoch)
    swav_queue: int = 512  #: SwaV's queue of past features, used from the second epoch (at most the training clips; 0: none)

    def __post_init__(self):
        object.__setattr__(self, "momentum", tuple(float(m) for m in self.momentum))
        if min(self.hidden_dim, self.out_dim, self.barlow_dim, self.dino_dim, self.prototypes) < 1:
            raise ConfigError("head sizes and prototypes must be >= 1")
        if min(self.simclr_temperature, self.moco_temperature) <= 0:
            raise ConfigError("temperatures must be > 0")
        if not 0.0 <= self.momentum[0] <= self.momentum[1] <= 1.0 or min(self.memory_bank, self.swav_queue) < 0:
            raise ConfigError("momentum must be 0 <= from <= to <= 1; memory bank and queue >= 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"unknown self-supervised method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def embedding_dim(method: str, method_config: dict) -> int:
    """Size of the embedding the collapse guard measures (the one the method's loss compares):
    Barlow Twins' projection, DINO's prototype logits, else the projection output."""
    key = {"barlow": "barlow_dim", "dino": "dino_dim"}.get(method, "out_dim")
    return int(method_config[key])
