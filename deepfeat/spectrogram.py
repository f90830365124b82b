"""Mel spectrograms in dB, clipped below a floor; the multi-resolution ``mel3`` stack.

The STFT is librosa's (:func:`librosa.stft`: periodic Hann window zero-padded to the FFT size,
centred frames, zero padding, ``numpy.fft``), computed here with numpy alone to the same bits:
importing ``librosa.stft`` imports numba and ``scipy.signal``, a large part of a command's start-up.
The mel filterbank is librosa's (Slaney), made once per setting and librosa version and kept in
deepfeat's cache folder (:func:`deepfeat.io.cached_array`).
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from scipy import sparse

from .config import MEL3_RESOLUTIONS, MelConfig

_MIN_FFT = 2048  # samples; keeps 128 mel bands non-empty for short windows
_AMIN = 1e-10  # power floor before the logarithm


def fft_size(window_samples: int) -> int:
    """FFT length in samples for a window: the window itself, zero-padded to at least 2048."""
    return max(int(window_samples), _MIN_FFT)


def _filterbank_file(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None):
    from importlib.metadata import version

    from .io import cache_dir

    return cache_dir("mel", f"librosa-{version('librosa')}") / f"{sample_rate}-{n_fft}-{n_mels}-{fmin!r}-{fmax!r}.npy"


def _make_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Empty filters detected")
        bank = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return bank.astype(np.float32)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> sparse.csr_matrix:
    """librosa's (Slaney) mel filterbank as a sparse matrix [n_mels, n_fft // 2 + 1], built once.

    Each FFT bin feeds at most two triangular filters, so the sparse product does a small fraction
    of the work of the dense one ``librosa.feature.melspectrogram`` computes (which also rebuilds
    the bank every call); ``make bench`` reports the resulting mel time per clip.
    """
    from .io import cached_array

    bank = cached_array(_filterbank_file(sample_rate, n_fft, n_mels, fmin, fmax),
                        lambda: _make_filterbank(sample_rate, n_fft, n_mels, fmin, fmax),
                        (n_mels, n_fft // 2 + 1), np.float32)
    return sparse.csr_matrix(bank)


@lru_cache(maxsize=16)
def stft_window(win: int, n_fft: int) -> np.ndarray:
    """librosa's STFT window: periodic Hann of ``win`` samples (float64, as ``scipy.signal.get_window``
    computes it), zero-padded on both sides to ``n_fft``."""
    hann = (0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, win + 1)))[:-1]
    left = (n_fft - win) // 2
    return np.pad(hann, (left, n_fft - win - left))


_STFT_BLOCK = 64  #: frames transformed at a time (their float64 copies stay in cache)


def stft_power(samples: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    """Power spectrogram [n_fft // 2 + 1, frames] (float32) of mono float32 ``samples``: the squared
    magnitude of ``librosa.stft(samples, n_fft=n_fft, hop_length=hop, win_length=win, center=True)``."""
    padded = np.pad(np.asarray(samples, dtype=np.float32), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = stft_window(win, n_fft)
    spec = np.empty((n_fft // 2 + 1, len(frames)), np.complex64)
    for start in range(0, len(frames), _STFT_BLOCK):
        spec[:, start:start + _STFT_BLOCK] = np.fft.rfft(frames[start:start + _STFT_BLOCK] * window, axis=-1).T
    return np.square(spec.real) + np.square(spec.imag)


def mel_power(samples: np.ndarray, mel: MelConfig, window: float | None = None, hop: float | None = None) -> np.ndarray:
    """Mel power spectrogram [n_mels, frames] of mono ``samples`` at ``mel.sample_rate`` Hz.

    Equal (to float32 precision) to ``librosa.feature.melspectrogram`` with a Hann window of
    ``window`` seconds, ``hop`` seconds, centred frames and ``fft_size(window)`` FFT points.
    """
    window = mel.window if window is None else window
    hop = mel.hop if hop is None else hop
    win = max(2, int(round(window * mel.sample_rate)))
    step = max(1, int(round(hop * mel.sample_rate)))
    n_fft = fft_size(win)
    power = stft_power(samples, n_fft, step, win)
    return np.asarray(mel_filterbank(mel.sample_rate, n_fft, mel.n_mels, mel.fmin, mel.fmax) @ power,
                      dtype=np.float32)


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
