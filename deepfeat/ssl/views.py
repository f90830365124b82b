"""Views of a clip for self-supervised pre-training, made for spectrograms, not photos.

Every transform acts on the clip's cached log-mel spectrogram (dB re. its maximum, clipped at the
floor ``clip_db``) in torch, batched on the training device, before the view is rendered to an
image (:mod:`deepfeat.ssl.render`); no STFT is computed during training. In order:

1. **mixing with another clip** of the batch (power domain, weight up to ``mix``), as BYOL for
   Audio mixes a clip with others (Niizumi et al. 2021);
2. **noise at a random SNR**: noise power at ``snr`` dB below the clip's mean power, drawn
   per bin from an exponential distribution (the periodogram of white noise);
3. back to dB re. the new maximum, clipped at the floor — what the front end would compute;
4. **random time crop and shift**: a random fraction (``crop``) of the frames at a random start,
   stretched back to the full length (the time half of BYOL-A's random resized crop);
5. **small pitch shift**: the spectrogram moved up or down by up to ``pitch_bins`` mel bins
   (the floor fills in); on the mel scale's logarithmic part (above ~1 kHz) a constant bin shift
   is a constant pitch shift;
6. **gain**: a level change fading linearly from one random gain to another across the view
   (BYOL-A's random linear fader), then clipped to [floor, 0 dB] as the image's range is;
7. **time and frequency masking** (SpecAugment): bands of frames and of mel bins set to the floor.

Not used, on purpose: **flips** (a frequency flip puts low bands on top: a spectrum no sound has;
a time flip turns decays into attacks, and environmental sounds are not time-symmetric) and
**colour jitter** (the colour map encodes level: a hue or saturation change makes a colour mean
another dB value, and brightness/contrast jitter is what the gain and the floor already do, in dB,
before the colour map; a ``mel3`` image's channels are resolutions, not colours). Random
resized crops along frequency are replaced by the small bin shift: stretching the mel axis moves
harmonics apart, which no natural pitch change does.

The same draw applies to every plane of a ``mel3`` clip (time in fractions of the clip). All
randomness comes from torch's global generator (seeded and restored by the training engine).
Shapes: planes [B, n_mels, frames] float32 (dB).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ViewConfig

_AMIN = 1e-10  #: power floor before the logarithm (as :mod:`deepfeat.spectrogram`)


def _uniform(low: float, high: float, n: int, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


def _power(db: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, db / 10.0)


def _clipped_db(power: torch.Tensor, clip_db: float) -> torch.Tensor:
    """Power [B, h, w] → dB re. each clip's maximum, floored at ``clip_db``."""
    db = 10.0 * torch.log10(power.clamp_min(_AMIN))
    return (db - db.amax(dim=(1, 2), keepdim=True)).clamp_min(clip_db)


def mix_and_noise(planes: list[torch.Tensor], config: ViewConfig, clip_db: float) -> list[torch.Tensor]:
    """Steps 1–3 of the module docstring: another clip of the batch mixed in (weight up to
    ``config.mix`` with probability ``config.mix_p``), noise at an SNR in ``config.noise_snr`` dB
    (probability ``config.noise_p``), then clipped dB again."""
    batch, device = planes[0].shape[0], planes[0].device
    partner = torch.randperm(batch, device=device)
    weight = _uniform(0.0, config.mix, batch, device) * (torch.rand(batch, device=device) < config.mix_p)
    snr = _uniform(*config.noise_snr, batch, device)
    noisy = torch.rand(batch, device=device) < config.noise_p
    out = []
    for plane in planes:
        power = _power(plane)
        w = weight.view(-1, 1, 1)
        power = (1.0 - w) * power + w * power[partner]
        level = power.mean(dim=(1, 2), keepdim=True) / torch.pow(10.0, snr.view(-1, 1, 1) / 10.0)
        noise = torch.empty_like(power).exponential_() * level
        out.append(_clipped_db(power + noise * noisy.view(-1, 1, 1), clip_db))
    return out


def crop_and_shift(planes: list[torch.Tensor], config: ViewConfig, clip_db: float) -> list[torch.Tensor]:
    """Steps 4–5: a random crop of ``config.crop`` of the frames, stretched to the full length, and
    a shift of up to ``config.pitch_bins`` mel bins (one affine resampling per plane)."""
    batch, n_mels, device = planes[0].shape[0], planes[0].shape[1], planes[0].device
    scale = _uniform(*config.crop, batch, device)
    start = torch.rand(batch, device=device) * (1.0 - scale)
    shift = torch.randint(-config.pitch_bins, config.pitch_bins + 1, (batch,), device=device).float()
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = scale  # output time u ∈ [-1, 1] reads input time scale·u + (scale − 1 + 2·start)
    theta[:, 0, 2] = scale - 1.0 + 2.0 * start
    theta[:, 1, 1] = 1.0
    theta[:, 1, 2] = -2.0 * shift / n_mels  # output bin m reads input bin m − shift: up is higher pitch
    out = []
    for plane in planes:
        x = (plane - clip_db)[:, None]  # the floor is 0, so padding with zeros fills in the floor
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0] + clip_db)
    return out


def fade(planes: list[torch.Tensor], config: ViewConfig, clip_db: float) -> list[torch.Tensor]:
    """Step 6: a gain fading linearly from one value in ±``config.gain_db`` to another across the
    view, then clipped to [clip_db, 0]."""
    batch, device = planes[0].shape[0], planes[0].device
    first = _uniform(-config.gain_db, config.gain_db, batch, device).view(-1, 1, 1)
    last = _uniform(-config.gain_db, config.gain_db, batch, device).view(-1, 1, 1)
    out = []
    for plane in planes:
        ramp = torch.linspace(0.0, 1.0, plane.shape[2], device=device).view(1, 1, -1)
        out.append((plane + first + (last - first) * ramp).clamp(clip_db, 0.0))
    return out


def _bands(batch: int, count: int, max_fraction: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(starts, widths) [batch, count] of bands as fractions of an axis: widths uniform in
    [0, max_fraction], starts uniform where the band fits."""
    widths = torch.rand(batch, count, device=device) * max_fraction
    return torch.rand(batch, count, device=device) * (1.0 - widths), widths


def _inside(starts: torch.Tensor, widths: torch.Tensor, n: int) -> torch.Tensor:
    """Bool [batch, n]: whether each of ``n`` cells (centre at (i + ½) / n) lies in any band."""
    centre = (torch.arange(n, device=starts.device) + 0.5).view(1, 1, -1) / n
    return ((centre >= starts[..., None]) & (centre < (starts + widths)[..., None])).any(dim=1)


def mask(planes: list[torch.Tensor], config: ViewConfig, clip_db: float) -> list[torch.Tensor]:
    """Step 7: ``config.time_masks`` bands of frames and ``config.freq_masks`` bands of mel bins
    (each up to ``config.mask_fraction`` of its axis) set to the floor."""
    batch, n_mels, device = planes[0].shape[0], planes[0].shape[1], planes[0].device
    freq = _inside(*_bands(batch, config.freq_masks, config.mask_fraction, device), n_mels)
    time = _bands(batch, config.time_masks, config.mask_fraction, device)
    return [plane.masked_fill(freq[:, :, None] | _inside(*time, plane.shape[2])[:, None, :], clip_db)
            for plane in planes]


def draw_view(planes: list[torch.Tensor], config: ViewConfig, clip_db: float) -> list[torch.Tensor]:
    """One random view of every clip of the batch (the module docstring's steps 1–7)."""
    planes = mix_and_noise(planes, config, clip_db)
    planes = crop_and_shift(planes, config, clip_db)
    planes = fade(planes, config, clip_db)
    return mask(planes, config, clip_db)
