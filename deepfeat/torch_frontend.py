"""The image front end in torch, batched on the network's device: the GPU path of ``extract``.

On CUDA, worker processes only decode and resample; the main process stacks clips of equal
length and computes STFT → mel power → clipped dB → [0, 1] → resize → 8-bit colour lookup on the
GPU, in the same steps as the CPU front end (:mod:`deepfeat.spectrogram`, the ``fast`` renderer of
:mod:`deepfeat.render`), so a GPU run is not bound by mel plotting on the CPU. The images agree
with the CPU renderer's within a few grey levels (tested on CPU tensors): FFT and resize
round differently. Shapes: audio [B, samples], images uint8 [B, H, W, 3].
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from .config import MEL3_RESOLUTIONS, MelConfig, PlotConfig
from .render import colormap_lut
from .spectrogram import _AMIN, fft_size, mel_filterbank

@lru_cache(maxsize=16)
def _filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None,
                device: torch.device) -> torch.Tensor:
    """:func:`~deepfeat.spectrogram.mel_filterbank` as a dense float32 tensor on ``device``."""
    bank = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).toarray()
    return torch.from_numpy(bank).to(device)


@lru_cache(maxsize=16)
def _hann(length: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(length, periodic=True, dtype=torch.float32, device=device)


@lru_cache(maxsize=32)
def _lut(name: str, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(colormap_lut(name)).to(device)


def mel_power(audio: torch.Tensor, mel: MelConfig, window: float | None = None,
              hop: float | None = None) -> torch.Tensor:
    """Mel power spectrograms [B, n_mels, frames] of float32 audio [B, samples] at ``mel.sample_rate``.

    The same STFT as :func:`deepfeat.spectrogram.mel_power`: periodic Hann window of ``window``
    seconds zero-padded to ``fft_size`` points, centred frames with zero padding, ``hop`` seconds.
    """
    window = mel.window if window is None else window
    hop = mel.hop if hop is None else hop
    win = max(2, int(round(window * mel.sample_rate)))
    step = max(1, int(round(hop * mel.sample_rate)))
    n_fft = fft_size(win)
    spec = torch.stft(audio.float(), n_fft=n_fft, hop_length=step, win_length=win, window=_hann(win, audio.device),
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    bank = _filterbank(mel.sample_rate, n_fft, mel.n_mels, mel.fmin, mel.fmax, audio.device)
    return torch.matmul(bank, power)


def unit_db(power: torch.Tensor, clip_db: float) -> torch.Tensor:
    """Power [B, h, w] → dB below each clip's maximum, floored at ``clip_db``, mapped to [0, 1]
    (as :func:`~deepfeat.spectrogram.power_to_clipped_db`; a silent clip maps to 0 everywhere)."""
    peak = power.amax(dim=(1, 2), keepdim=True)
    db = 10.0 * torch.log10(power.clamp_min(_AMIN) / peak.clamp_min(_AMIN))
    db = torch.where(peak > _AMIN, db.clamp_min(clip_db), torch.full_like(db, clip_db))
    return ((db - clip_db) / -clip_db).clamp(0.0, 1.0)


@lru_cache(maxsize=32)
def _nearest_index(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """Source index of each output pixel as Pillow's nearest-neighbour resize picks it: the pixel
    under the output pixel's centre, stepped by adding the scale in double precision as Pillow's
    affine transform does (so ties land on the same side)."""
    scale, position, index = n_in / n_out, 0.5 * n_in / n_out, []
    for _ in range(n_out):
        index.append(min(n_in - 1, int(position)))
        position += scale
    return torch.tensor(index, device=device)


def resize(planes: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Planes [B, h, w] → [B, H, W], flipped so row 0 is the highest band, as Pillow resizes:
    bilinear (antialiased when shrinking) or nearest neighbour."""
    planes = planes.flip(1)
    if interpolation == "nearest":
        rows = _nearest_index(planes.shape[1], size[0], planes.device)
        cols = _nearest_index(planes.shape[2], size[1], planes.device)
        return planes[:, rows][:, :, cols]
    return F.interpolate(planes[:, None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[:, 0]


def _levels(unit: torch.Tensor) -> torch.Tensor:
    """[0, 1] → 8-bit levels (rounded half to even, as numpy rounds)."""
    return torch.round(unit * 255.0).clamp(0, 255).to(torch.uint8)


def images(audio: torch.Tensor, plot: PlotConfig) -> torch.Tensor:
    """Float32 audio [B, samples] (on any device) → the ``fast`` renderer's images uint8 [B, H, W, 3].

    Parameters
    ----------
    audio : torch.Tensor
        Equal-length clips at ``plot.mel.sample_rate`` Hz.
    plot : PlotConfig
        Any colour map or ``mel3``; the ``matplotlib`` renderer has no torch counterpart.
    """
    if plot.renderer != "fast":
        raise ValueError("the torch front end draws the fast renderer's images only")
    mel = plot.mel
    if plot.colormap == "mel3":
        planes = [resize(unit_db(mel_power(audio, mel, w, h), mel.clip_db), plot.size, plot.interpolation)
                  for w, h in MEL3_RESOLUTIONS]
        return _levels(torch.stack(planes, dim=-1))
    unit = resize(unit_db(mel_power(audio, mel), mel.clip_db), plot.size, plot.interpolation)
    return _lut(plot.colormap, audio.device)[_levels(unit).long()]
