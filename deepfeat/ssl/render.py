"""Clipped dB spectrograms → network inputs in torch, batched on the training device: the steps of
the ``fast`` renderer (:mod:`deepfeat.render`) — [0, 1] scaling, resize (bilinear, antialiased
when shrinking, low bands at the bottom), 8-bit levels, colour-map lookup (or one resolution per
channel for ``mel3``) — then the network's input normalisation. The images agree with
:func:`deepfeat.render.render_fast`'s within a few levels (tested): Pillow and torch resize round
differently.

This is the small torch renderer pre-training needs (views are made in the spectrogram domain and
rendered every step); the GPU front end of ``extract`` has one of its own, and the two are meant to
become one. Shapes: planes [B, n_mels, frames] (dB), images [B, 3, H, W] float32.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ..config import PlotConfig
from ..render import colormap_lut


@lru_cache(maxsize=16)
def _lut(name: str, device: torch.device) -> torch.Tensor:
    """The colour map's lookup table, float32 [256, 3] in 0…255, on ``device``."""
    return torch.from_numpy(colormap_lut(name)).float().to(device)


def unit(db: torch.Tensor, clip_db: float) -> torch.Tensor:
    """dB in [clip_db, 0] → [0, 1] (values outside are clipped)."""
    return ((db - clip_db) / -clip_db).clamp(0.0, 1.0)


def resize(planes: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Planes [B, h, w] → [B, H, W], flipped so that row 0 is the highest band."""
    x = planes.flip(1)[:, None]
    if interpolation == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest-exact")[:, 0]
    return F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[:, 0]


def levels(unit_planes: torch.Tensor) -> torch.Tensor:
    """[0, 1] → 8-bit levels 0…255 as float (rounded as the ``fast`` renderer rounds)."""
    return torch.round(unit_planes * 255.0).clamp(0.0, 255.0)


def render_levels(planes: list[torch.Tensor], plot: PlotConfig) -> torch.Tensor:
    """Clipped dB planes (one; three for ``mel3``) → images [B, 3, H, W] in levels 0…255."""
    if plot.colormap == "mel3":
        return torch.stack([levels(resize(unit(p, plot.mel.clip_db), plot.size, plot.interpolation))
                            for p in planes], dim=1)
    index = levels(resize(unit(planes[0], plot.mel.clip_db), plot.size, plot.interpolation)).long()
    return _lut(plot.colormap, index.device)[index].permute(0, 3, 1, 2)


def render(planes: list[torch.Tensor], plot: PlotConfig, mean, std) -> torch.Tensor:
    """Clipped dB planes → the network's normalised inputs [B, 3, H, W] (as
    :meth:`~deepfeat.extractors.image_cnn.ImageCNNExtractor.embed` normalises uint8 images)."""
    images = render_levels(planes, plot) / 255.0
    device = images.device
    mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return (images - mean) / std
