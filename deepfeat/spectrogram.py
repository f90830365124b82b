"""Mel spectrograms in dB, clipped below a floor; the multi-resolution ``mel3`` stack."""
from __future__ import annotations

import warnings

import librosa
import numpy as np

from .config import MEL3_RESOLUTIONS, MelConfig

_MIN_FFT = 2048  # samples; keeps 128 mel bands non-empty for short windows
_AMIN = 1e-10  # power floor before the logarithm


def fft_size(window_samples: int) -> int:
    """FFT length in samples for a window: the window itself, zero-padded to at least 2048."""
    return max(int(window_samples), _MIN_FFT)


def mel_power(samples: np.ndarray, mel: MelConfig, window: float | None = None, hop: float | None = None) -> np.ndarray:
    """Mel power spectrogram [n_mels, frames] of mono ``samples`` at ``mel.sample_rate`` Hz."""
    window = mel.window if window is None else window
    hop = mel.hop if hop is None else hop
    win = max(2, int(round(window * mel.sample_rate)))
    step = max(1, int(round(hop * mel.sample_rate)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Empty filters detected")
        return librosa.feature.melspectrogram(
            y=samples, sr=mel.sample_rate, n_fft=fft_size(win), hop_length=step, win_length=win,
            window="hann", center=True, power=2.0, n_mels=mel.n_mels, fmin=mel.fmin, fmax=mel.fmax,
        ).astype(np.float32)


def power_to_clipped_db(power: np.ndarray, clip_db: float) -> np.ndarray:
    """Power → dB with the maximum at 0 dB, floored at ``clip_db`` (negative dB).

    A silent input (no power above 1e-10) maps to the floor everywhere, never to -inf or NaN.
    """
    peak = float(power.max(initial=0.0))
    if peak <= _AMIN:
        return np.full(power.shape, clip_db, dtype=np.float32)
    db = 10.0 * np.log10(np.maximum(power, _AMIN) / peak)
    return np.maximum(db, clip_db).astype(np.float32)


def log_mel(samples: np.ndarray, mel: MelConfig, window: float | None = None, hop: float | None = None) -> np.ndarray:
    """Clipped log-mel spectrogram [n_mels, frames] in dB, in [mel.clip_db, 0]."""
    return power_to_clipped_db(mel_power(samples, mel, window, hop), mel.clip_db)


def mel3_stack(samples: np.ndarray, mel: MelConfig) -> list[np.ndarray]:
    """Three clipped log-mels at 25/10, 50/25 and 100/50 ms window/hop (one per image channel)."""
    return [log_mel(samples, mel, window, hop) for window, hop in MEL3_RESOLUTIONS]
