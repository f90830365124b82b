"""Audio loading: decode, mix to mono, resample, pad or crop, cut into windows.

All durations are in seconds and all rates in Hz. Decoding uses libsndfile (``soundfile``:
wav, flac, ogg, mp3 with libsndfile ≥ 1.1) and falls back to librosa/audioread for other
containers; resampling uses soxr (high quality) once per clip.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError


def load_audio(path: str | Path, sample_rate: int | None = None,
               channel: int | None = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 in [-1, 1]; resample to ``sample_rate`` Hz if given.

    ``channel`` (0-based) keeps that channel only; None averages every channel. Returns
    ``(samples, rate)``. Raises :class:`AudioError` naming the file when it cannot be decoded,
    lacks the channel, holds no samples, or contains non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file; check the path or the label file that names it")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-export or remove it")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as sf_error:  # noqa: BLE001 - try the slower generic decoder before giving up
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, rate = librosa.load(str(path), sr=None, mono=False)
            data = np.atleast_2d(data).T  # [samples, channels]
        except Exception:  # noqa: BLE001
            raise AudioError(
                f"{path}: cannot decode audio ({str(sf_error).splitlines()[0]}); "
                "the file is corrupt, truncated or not audio: re-encode it (e.g. to wav) or remove it"
            ) from None
    data = _pick_channel(data, channel, path)
    if data.size == 0:
        raise AudioError(f"{path}: decodes to 0 samples; re-export or remove it")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: contains NaN or infinite samples; re-encode it")
    if sample_rate is not None and rate != sample_rate:
        data = resample(data, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def _pick_channel(data: np.ndarray, channel: int | None, path: Path) -> np.ndarray:
    """[samples, channels] → [samples]: one channel, or the mean of all."""
    if channel is None:
        return data.mean(axis=1)
    if not 0 <= channel < data.shape[1]:
        raise AudioError(f"{path}: has {data.shape[1]} channel(s), no channel {channel}; read it with --channels mix")
    return data[:, channel]


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample mono ``samples`` from ``rate_in`` to ``rate_out`` Hz with soxr (HQ)."""
    if rate_in == rate_out:
        return samples
    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def fix_length(samples: np.ndarray, rate: int, duration: float | None) -> np.ndarray:
    """Zero-pad at the end or crop to ``duration`` seconds (``None`` keeps the clip as is)."""
    if duration is None:
        return samples
    n = int(round(duration * rate))
    if samples.size >= n:
        return samples[:n]
    return np.pad(samples, (0, n - samples.size))


def frame_windows(samples: np.ndarray, rate: int, window: float, hop: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut into windows of ``window`` seconds every ``hop`` seconds (DeepSpectrum's ``-t``).

    Returns ``(windows [n, window*rate], starts [n] in seconds)``. A clip shorter than one
    window gives one zero-padded window; the last partial window is zero-padded.
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive seconds, got {window}, {hop}")
    win, step = int(round(window * rate)), int(round(hop * rate))
    n = 1 if samples.size <= win else 1 + int(np.ceil((samples.size - win) / step))
    padded = np.pad(samples, (0, max(0, (n - 1) * step + win - samples.size)))
    idx = np.arange(n)[:, None] * step + np.arange(win)[None, :]
    return padded[idx], np.arange(n) * step / rate


def segments(samples: np.ndarray, rate: int, duration: float | None = None,
             segment: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad/crop to ``duration`` then cut into ``segment = (window, hop)`` seconds windows.

    Returns ``(segments [n, samples], starts [n] seconds)``; without ``segment``, the whole clip
    is the one segment starting at 0.
    """
    samples = fix_length(samples, rate, duration)
    if segment:
        return frame_windows(samples, rate, *segment)
    return samples[None], np.zeros(1)
