"""Data augmentation for the CRNN (the set compared in the QUACLRS study).

Two kinds, applied at different times:

* **waveform** transforms (time stretch, pitch shift, additive Gaussian noise) change the audio, so
  each one is run once per clip before the mel spectrogram is taken; :mod:`deepfeat.crnn` caches the
  resulting mel copies and, every epoch, swaps a training clip for one of its copies at random.
  Stretching and shifting use :func:`librosa.effects.time_stretch` / :func:`librosa.effects.pitch_shift`.
* **batch** transforms (SpecAugment time/frequency masks, patch replacement, MixUp) act on a
  mini-batch of standardised mel spectrograms ``x [B, n_mels, frames]`` with soft targets
  ``y [B, classes]`` in torch, drawing from torch's global generator (seeded by the training loop).

Every choice can be switched on or off per run through :class:`AugmentConfig`.
"""
from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import AUGMENTATION_NAMES
from .errors import ConfigError

if TYPE_CHECKING:
    import torch

# The QUACLRS settings: stretch factors, semitone shifts, SNRs (dB).
PAPER_TIME_STRETCH = (0.8, 1.2)
PAPER_PITCH_SHIFT = (-2.0, 2.0)
PAPER_NOISE_SNR = (5.0, 15.0)

# Names accepted by AugmentConfig.from_names (and ``deepfeat crnn --augment``).


# ----------------------------------------------------------------------------- waveform transforms

def time_stretch(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times as fast without changing pitch (0.8: 25 % longer, 1.2: shorter)."""
    import librosa

    return librosa.effects.time_stretch(samples, rate=factor).astype(np.float32, copy=False)


def pitch_shift(samples: np.ndarray, rate: int, semitones: float) -> np.ndarray:
    """Shift the pitch by ``semitones`` (±) at the same duration; ``rate`` in Hz."""
    import librosa

    return librosa.effects.pitch_shift(samples, sr=rate, n_steps=semitones).astype(np.float32, copy=False)


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` dB below the clip's mean power (silence stays silent)."""
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    if power == 0.0:
        return samples.astype(np.float32, copy=True)
    noise = rng.standard_normal(samples.size) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (samples + noise).astype(np.float32)


@dataclass(frozen=True)
class WaveformAugmentation:
    """One waveform transform with its parameter: a stretch factor, semitones, or an SNR in dB."""

    kind: str  #: "time_stretch", "pitch_shift" or "noise"
    value: float

    def __post_init__(self):
        if self.kind not in ("time_stretch", "pitch_shift", "noise"):
            raise ConfigError(f"unknown waveform augmentation {self.kind!r}; use time_stretch, pitch_shift or noise")
        if self.kind == "time_stretch" and self.value <= 0:
            raise ConfigError(f"time-stretch factor must be positive, got {self.value}")

    @property
    def name(self) -> str:
        """Stable name, also the dataset name in the mel cache: ``time_stretch_0.8``, ``noise_5dB``."""
        return f"noise_{self.value:g}dB" if self.kind == "noise" else f"{self.kind}_{self.value:g}"

    def apply(self, samples: np.ndarray, rate: int, clip_id: str) -> np.ndarray:
        """Transform one clip (mono float32 at ``rate`` Hz); the noise is seeded by the clip id."""
        if self.kind == "time_stretch":
            return time_stretch(samples, self.value)
        if self.kind == "pitch_shift":
            return pitch_shift(samples, rate, self.value)
        rng = np.random.default_rng(zlib.crc32(f"{self.name}/{clip_id}".encode()))
        return add_noise(samples, self.value, rng)


# ----------------------------------------------------------------------------- batch transforms

def _band_masks(n: int, batch: int, count: int, max_width: int, device) -> torch.Tensor:
    """Bool [batch, n]: ``count`` bands per row, widths uniform in 0..max_width, uniform start."""
    import torch

    widths = torch.randint(0, min(max_width, n) + 1, (batch, count), device=device)
    starts = (torch.rand(batch, count, device=device) * (n - widths + 1)).long()
    pos = torch.arange(n, device=device)[None, None, :]
    inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
    return inside.any(dim=1)


def spec_augment(x: torch.Tensor, time_masks: int = 2, freq_masks: int = 2, max_width: int = 20,
                 fill: float = 0.0) -> torch.Tensor:
    """SpecAugment masking (Park et al. 2019) of standardised mels ``x [B, n_mels, frames]``.

    Each example gets ``freq_masks`` bands of 0..``max_width`` mel bins and ``time_masks`` bands of
    0..``max_width`` frames set to ``fill`` (0: the training mean after standardisation).
    """
    batch, n_freq, n_time = x.shape
    mask = _band_masks(n_freq, batch, freq_masks, max_width, x.device)[:, :, None]
    mask = mask | _band_masks(n_time, batch, time_masks, max_width, x.device)[:, None, :]
    return x.masked_fill(mask, fill)


def patch_replace(x: torch.Tensor, y: torch.Tensor, max_width: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace a random patch of each example with the same patch of another example in the batch.

    The patch spans 0..``max_width`` mel bins × 0..``max_width`` frames at a random place; the
    donor is a random permutation of the batch. Targets are mixed in proportion to the replaced
    area (as in CutMix), so ``y`` rows stay distributions.
    """
    import torch

    batch, n_freq, n_time = x.shape
    donor = torch.randperm(batch, device=x.device)
    freq = _band_masks(n_freq, batch, 1, max_width, x.device)
    time = _band_masks(n_time, batch, 1, max_width, x.device)
    mask = freq[:, :, None] & time[:, None, :]
    share = mask.flatten(1).float().mean(dim=1, keepdim=True)
    return torch.where(mask, x[donor], x), (1 - share) * y + share * y[donor]


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp (Zhang et al. 2018): convex combinations of example pairs and of their targets.

    ``x`` is [B, ...] (spectrograms, images or activations), ``y`` [B, classes].

    One weight per example, λ ~ Beta(alpha, alpha); the partner is a random permutation of the batch.
    """
    import torch

    batch = x.shape[0]
    lam = torch.distributions.Beta(alpha, alpha).sample((batch,)).to(x.device, x.dtype)
    partner = torch.randperm(batch, device=x.device)
    weight = lam.view(batch, *([1] * (x.ndim - 1)))
    mixed = weight * x + (1 - weight) * x[partner]
    return mixed, lam[:, None] * y + (1 - lam[:, None]) * y[partner]


# ----------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations a training run uses (all off by default)."""

    time_stretch: tuple[float, ...] = ()  #: stretch factors, e.g. (0.8, 1.2)
    pitch_shift: tuple[float, ...] = ()  #: semitones, e.g. (-2, 2)
    noise_snr: tuple[float, ...] = ()  #: signal-to-noise ratios in dB, e.g. (5, 15)
    waveform_probability: float = 0.5  #: per clip and epoch: chance of training on an augmented copy
    spec_augment: bool = False
    time_masks: int = 2
    freq_masks: int = 2
    mask_width: int = 20  #: largest mask (and replaced patch) in frames or mel bins
    patch_replace: bool = False
    mixup_alpha: float = 0.0  #: Beta(α, α) of MixUp; 0 = off

    def __post_init__(self):
        object.__setattr__(self, "time_stretch", tuple(float(v) for v in self.time_stretch))
        object.__setattr__(self, "pitch_shift", tuple(float(v) for v in self.pitch_shift))
        object.__setattr__(self, "noise_snr", tuple(float(v) for v in self.noise_snr))
        self.waveform()  # validates the values
        if not 0.0 <= self.waveform_probability <= 1.0:
            raise ConfigError(f"waveform_probability must be in [0, 1], got {self.waveform_probability}")
        if self.mixup_alpha < 0:
            raise ConfigError(f"mixup alpha must be >= 0, got {self.mixup_alpha}")
        if min(self.time_masks, self.freq_masks, self.mask_width) < 0:
            raise ConfigError("mask counts and width must be >= 0")

    @classmethod
    def from_names(cls, names, **overrides) -> "AugmentConfig":
        """Switch on named augmentations with the QUACLRS settings.

        ``names``: iterable of ``stretch`` (0.8×, 1.2×), ``pitch`` (±2 semitones), ``noise`` (5 and
        15 dB SNR), ``specaugment`` (2 time + 2 frequency masks, width ≤ 20), ``patch`` (patch
        replacement), ``mixup`` (α = 0.2); ``all`` for every one, ``none`` or nothing for none.
        """
        chosen = {n.strip().lower() for n in names if n.strip()}
        if "all" in chosen:
            chosen = (chosen - {"all"}) | set(AUGMENTATION_NAMES)
        chosen.discard("none")
        unknown = chosen - set(AUGMENTATION_NAMES)
        if unknown:
            raise ConfigError(f"unknown augmentation(s) {', '.join(sorted(unknown))}; "
                              f"choose from {', '.join(AUGMENTATION_NAMES)}, all or none")
        settings = dict(
            time_stretch=PAPER_TIME_STRETCH if "stretch" in chosen else (),
            pitch_shift=PAPER_PITCH_SHIFT if "pitch" in chosen else (),
            noise_snr=PAPER_NOISE_SNR if "noise" in chosen else (),
            spec_augment="specaugment" in chosen,
            patch_replace="patch" in chosen,
            mixup_alpha=0.2 if "mixup" in chosen else 0.0,
        )
        return cls(**{**settings, **overrides})

    def waveform(self) -> list[WaveformAugmentation]:
        """The waveform transforms, in a fixed order (their mel copies are cached under these names)."""
        return ([WaveformAugmentation("time_stretch", v) for v in self.time_stretch]
                + [WaveformAugmentation("pitch_shift", v) for v in self.pitch_shift]
                + [WaveformAugmentation("noise", v) for v in self.noise_snr])

    @property
    def enabled(self) -> bool:
        return bool(self.waveform() or self.spec_augment or self.patch_replace or self.mixup_alpha > 0)

    def names(self) -> list[str]:
        """Short names of what is on (for run names and summaries)."""
        on = {"stretch": self.time_stretch, "pitch": self.pitch_shift, "noise": self.noise_snr,
              "specaugment": self.spec_augment, "patch": self.patch_replace, "mixup": self.mixup_alpha > 0}
        return [name for name in AUGMENTATION_NAMES if on[name]]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def augment_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the batch transforms that are on: masks, then patch replacement, then MixUp."""
        if self.spec_augment:
            x = spec_augment(x, self.time_masks, self.freq_masks, self.mask_width)
        if self.patch_replace:
            x, y = patch_replace(x, y, self.mask_width)
        if self.mixup_alpha > 0:
            x, y = mixup(x, y, self.mixup_alpha)
        return x, y
