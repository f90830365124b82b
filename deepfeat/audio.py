"""Audio loading: decode, mix to mono, resample, pad or crop, cut into windows.

All durations are in seconds and all rates in Hz. Decoding uses libsndfile (``soundfile``:
wav, flac, ogg, mp3 with libsndfile ≥ 1.1) and falls back to librosa/audioread for other
containers; resampling uses soxr (high quality) once per clip.

A file that decodes to fewer frames than its header declares (cut short by a failed copy or
download) is returned as decoded with a :class:`TruncatedAudioWarning`; :func:`truncation`
states the check. :func:`native_rates` reads every file's rate from its header alone.
"""
from __future__ import annotations

import struct
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError


class TruncatedAudioWarning(UserWarning):
    """A file decoded to fewer frames than its header declares; its message names the file and
    both lengths (seconds)."""


def load_audio(path: str | Path, sample_rate: int | None = None,
               channel: int | None = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 in [-1, 1]; resample to ``sample_rate`` Hz if given.

    ``channel`` (0-based) keeps that channel only; None averages every channel. Returns
    ``(samples, rate)``. Raises :class:`AudioError` naming the file when it cannot be decoded,
    lacks the channel, holds no samples, or contains non-finite values. Warns
    (:class:`TruncatedAudioWarning`) when the file is cut short (:func:`truncation`).
    """
    samples, rate, short = decode_audio(path, sample_rate, channel)
    if short:
        warnings.warn(TruncatedAudioWarning(short), stacklevel=2)
    return samples, rate


def decode_audio(path: str | Path, sample_rate: int | None = None,
                 channel: int | None = None) -> tuple[np.ndarray, int, str | None]:
    """:func:`load_audio` that returns why the file is cut short (None: whole) instead of warning:
    ``(samples, rate, short)``. For threads decoding side by side (the ``warnings`` module's
    capture is process-wide: one thread's warning can land in another's record)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file; check the path or the label file that names it")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-export or remove it")
    short = None
    try:
        with sf.SoundFile(str(path)) as f:
            data, rate = f.read(dtype="float32", always_2d=True), f.samplerate
            short = truncation(path, f, len(data))
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
    if not 0 < rate < 10_000_000:
        raise AudioError(f"{path}: declares a sample rate of {rate} Hz; the header is corrupt: re-export the file")
    if sample_rate is not None and rate != sample_rate:
        n = data.size
        data = resample(data, rate, sample_rate)
        if data.size == 0:
            raise AudioError(f"{path}: {n} sample(s) at {rate} Hz give no sample at {sample_rate} Hz; the clip is "
                             "too short: re-export or remove it")
        rate = sample_rate
    return np.ascontiguousarray(data, dtype=np.float32), int(rate), short


def _pick_channel(data: np.ndarray, channel: int | None, path: Path) -> np.ndarray:
    """[samples, channels] → [samples]: one channel, or the mean of all."""
    if channel is None:
        return data.mean(axis=1)
    if not 0 <= channel < data.shape[1]:
        raise AudioError(f"{path}: has {data.shape[1]} channel(s), no channel {channel}; read it with --channels mix")
    return data[:, channel]


#: Bytes per sample of the uncompressed sample formats (libsndfile subtypes) whose frame count a
#: RIFF ``data`` chunk size gives.
_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
                 "ULAW": 1, "ALAW": 1}
#: Byte order of the chunk sizes of each chunked container (its first four bytes).
_CHUNKED = {b"RIFF": "<", b"RIFX": ">", b"FORM": ">"}


def truncation(path: str | Path, f: sf.SoundFile, decoded: int) -> str | None:
    """Why the open file ``f`` (``path``), of which ``decoded`` frames were read, is cut short;
    None when it is whole or its length is unknown.

    The declared length is the ``data`` chunk size of a WAV (RIFF) file, the ``COMM`` frame count
    of an AIFF file, else libsndfile's count from the header (FLAC STREAMINFO, MP3 Xing/Info; MP3
    counts without such a header are estimates, so MP3 may fall 2 % short). An Ogg file has no
    declared length: it is cut short when its last page lacks the end-of-stream flag.
    """
    rate = f.samplerate or 1
    if f.format == "OGG":
        if _ogg_finished(path) is False:
            return (f"{path}: cut short: its last Ogg page is not the end of the stream (decoded "
                    f"{decoded / rate:.2f} s); re-export or remove it")
        return None
    declared = _header_frames(path, f) or f.frames
    slack = 0.02 * declared if f.format in ("MP3", "MPEG") else 0
    if declared > 0 and decoded < declared - slack:
        return (f"{path}: cut short: decoded {decoded / rate:.2f} s of the {declared / rate:.2f} s its header "
                "declares; re-export or remove it")
    return None


def _header_frames(path: str | Path, f: sf.SoundFile) -> int | None:
    """Frames declared by a WAV ``data`` chunk (uncompressed samples) or an AIFF ``COMM`` chunk;
    None for other files, or when the header gives no usable count."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            order = _CHUNKED.get(head[:4])
            for _ in range(64 if order and len(head) == 12 else 0):
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                name, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
                if name == b"data" and f.subtype in _SAMPLE_BYTES and f.channels > 0:
                    return None if size in (0, 0xFFFFFFFF) else size // (_SAMPLE_BYTES[f.subtype] * f.channels)
                if name == b"COMM":
                    return struct.unpack(">I", fh.read(6)[2:])[0]
                fh.seek(size + (size & 1), 1)
    except (OSError, struct.error):
        pass
    return None


def _ogg_finished(path: str | Path) -> bool | None:
    """Whether the last Ogg page of ``path`` carries the end-of-stream flag (None: no page found)."""
    with open(path, "rb") as fh:
        fh.seek(max(0, Path(path).stat().st_size - 65536))
        tail = fh.read()
    page = tail.rfind(b"OggS\x00")
    if page < 0 or page + 5 >= len(tail):
        return None
    return bool(tail[page + 5] & 0x04)


def _header_values(paths: Iterable[str | Path], read) -> list:
    """``read(soundfile.info(path))`` for each file; 0 for a file libsndfile cannot read (known
    only once decoded: :func:`load_audio` reports it then)."""
    values = []
    for path in paths:
        try:
            values.append(read(sf.info(str(path))))
        except Exception:  # noqa: BLE001 - unreadable here; load_audio reports it when the clip is decoded
            values.append(0)
    return values


def native_rates(paths: Iterable[str | Path]) -> np.ndarray:
    """Sample rate (Hz) of each file as its header states it, int64 [N]; 0 for a file libsndfile
    cannot read (its rate is known only once decoded). Reads headers only (``soundfile.info``)."""
    return np.asarray(_header_values(paths, lambda info: int(info.samplerate)), dtype=np.int64)


def native_durations(paths: Iterable[str | Path]) -> np.ndarray:
    """Duration (seconds) of each file as its header states it, float64 [N]; 0 for a file
    libsndfile cannot read. Reads headers only."""
    return np.asarray(_header_values(paths, lambda info: float(info.duration)), dtype=np.float64)


def low_rate_summary(rates: np.ndarray, top: float) -> str | None:
    """``"12 of 400 files are sampled at 8000 Hz (10), 16000 Hz (2)"`` for the files whose native
    ``rates`` [N] (Hz; 0: unknown) cannot hold frequencies up to ``top`` Hz; None if every known
    rate can."""
    low = rates[(rates > 0) & (rates < 2 * top)]
    if low.size == 0:
        return None
    counts = ", ".join(f"{r} Hz ({n})" for r, n in zip(*np.unique(low, return_counts=True)))
    return f"{low.size} of {len(rates)} files are sampled at {counts}"


def auto_fmax(rates: np.ndarray, sample_rate: int) -> float | None:
    """``--fmax auto``: the lowest Nyquist frequency (Hz) among the native ``rates`` [N] (0:
    unknown, ignored), or None (the analysis Nyquist, ``sample_rate / 2``) when no file is sampled
    below ``sample_rate``. Raises :class:`AudioError` when no rate is known."""
    known = rates[rates > 0]
    if known.size == 0:
        raise AudioError("--fmax auto: no audio file's sample rate could be read from its header; pass --fmax in Hz")
    lowest = float(known.min()) / 2
    return lowest if lowest < sample_rate / 2 else None


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
