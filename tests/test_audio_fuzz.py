"""Property-based fuzzing of the audio loader (issue 14): random byte strings and WAV files with
random but well-formed headers end in decoded audio or a one-line :class:`AudioError` naming the
file, never in another exception. Sized to run in well under a minute."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfeat.audio import load_audio
from deepfeat.errors import AudioError

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_load(folder: Path, data: bytes, suffix: str, sample_rate: int | None = None) -> None:
    """``load_audio`` on a file holding ``data``: audio that honours the loader's promises, or one
    AudioError line naming the file."""
    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a TruncatedAudioWarning is a fine outcome too
            samples, rate = load_audio(path, sample_rate)
    except AudioError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert samples.dtype == np.float32 and samples.ndim == 1 and samples.size > 0
    assert np.all(np.isfinite(samples)) and rate > 0
    if sample_rate is not None:
        assert rate == sample_rate


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".wav", ".ogg", ".flac", ".mp3", ".bin"]))
def test_random_bytes(folder, data, suffix):
    check_load(folder, data, suffix)


def riff(fmt: bytes, payload: bytes, data_size: int | None, extra: bytes) -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    chunks += b"data" + struct.pack("<I", len(payload) if data_size is None else data_size) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


@st.composite
def wav_files(draw) -> bytes:
    """A RIFF/WAVE file: a ``fmt`` chunk whose fields are either consistent (PCM or float samples
    that libsndfile decodes) or random, an optional extra chunk, and a ``data`` chunk whose
    declared size may lie (cut short, or longer than declared)."""
    if draw(st.booleans()):
        tag, bits = draw(st.sampled_from([(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64)]))
        channels = draw(st.integers(1, 8))
        rate = draw(st.sampled_from([8000, 16000, 44100, 48000]) | st.integers(1, 400000))
        align = channels * bits // 8
    else:
        tag = draw(st.sampled_from([1, 3, 6, 7, 0xFFFE]) | st.integers(0, 0xFFFF))
        channels = draw(st.integers(0, 0xFFFF))
        rate = draw(st.integers(0, 2**32 - 1))
        bits = draw(st.integers(0, 0xFFFF))
        align = draw(st.integers(0, 0xFFFF))
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    if tag == 0xFFFE:
        fmt += struct.pack("<HHI", 22, bits, 0) + draw(st.binary(min_size=16, max_size=16))
    payload = draw(st.binary(max_size=4096))
    data_size = draw(st.none() | st.integers(0, 2**32 - 1))
    extra = draw(st.just(b"") | st.binary(max_size=64).map(lambda b: b"LIST" + struct.pack("<I", len(b)) + b))
    return riff(fmt, payload, data_size, extra)


@settings(FUZZ, max_examples=400)
@given(data=wav_files(), resample_to=st.sampled_from([None, 16000]))
def test_random_wav_headers(folder, data, resample_to):
    check_load(folder, data, ".wav", resample_to)


def test_the_wav_builder_makes_decodable_files(folder):
    """The WAV files are real ones: their plausible corner decodes (16-bit PCM mono, honest size)."""
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    payload = (np.sin(np.arange(1600) / 5) * 8000).astype("<i2").tobytes()
    (folder / "plain.wav").write_bytes(riff(fmt, payload, None, b""))
    samples, rate = load_audio(folder / "plain.wav")
    assert rate == 16000 and samples.shape == (1600,)
