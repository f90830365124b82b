"""Audio files cut short (issue 14, case 4) and native sample rates (case 6) as the loader and
the header reader see them."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from deepfeat import audio
from deepfeat.audio import load_audio
from deepfeat.errors import AudioError

RATE = 16000


def noise(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    x = 0.1 * np.random.default_rng(0).standard_normal((int(seconds * rate), channels)).astype(np.float32)
    return x[:, 0] if channels == 1 else x


def cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


FORMATS = [("wav", "WAV", "PCM_16"), ("wav", "WAV", "FLOAT"), ("wav", "WAVEX", "PCM_24"), ("aiff", "AIFF", "PCM_16"),
           ("ogg", "OGG", "VORBIS"), ("opus", "OGG", "OPUS"), ("mp3", "MP3", "MPEG_LAYER_III")]


@pytest.mark.parametrize("ext,fmt,subtype", FORMATS)
@pytest.mark.parametrize("channels", [1, 2])
def test_a_file_cut_in_half_warns_naming_it_and_both_lengths(tmp_path, ext, fmt, subtype, channels):
    path = tmp_path / f"clip.{ext}"
    sf.write(path, noise(4.0, channels=channels), RATE, format=fmt, subtype=subtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole file: no warning
        whole, _ = load_audio(path)
    assert len(whole) == 4 * RATE
    with pytest.warns(UserWarning, match="cut short") as caught:
        samples, rate = load_audio(cut_in_half(path))
    assert caught[0].category.__name__ == "TruncatedAudioWarning"
    message = str(caught[0].message)
    assert str(path) in message and "cut short" in message and "\n" not in message
    assert rate == RATE and 0 < len(samples) < 3 * RATE  # what could be decoded is returned
    if fmt != "OGG":  # Ogg files declare no length: the missing end-of-stream page says they were cut
        assert "of the 4.00 s its header declares" in message


def test_a_few_missing_bytes_at_the_end_of_a_wav_are_noticed(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(path, noise(1.0), RATE, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.warns(UserWarning, match=r"cut short: decoded 0.99 s of the 1.00 s"):
        load_audio(path)


def test_a_wav_whose_header_gives_no_length_is_not_reported(tmp_path):
    """Streaming writers leave the data size 0 or 0xFFFFFFFF: no declared length, no warning."""
    path = tmp_path / "stream.wav"
    sf.write(path, noise(1.0), RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4:at + 8] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_audio(path)[0]) == RATE


def test_a_flac_cut_short_is_undecodable(tmp_path):
    path = tmp_path / "t.flac"
    sf.write(path, noise(2.0), RATE)
    with pytest.raises(AudioError, match="t.flac: cannot decode audio"):
        load_audio(cut_in_half(path))


def test_native_rates_come_from_the_headers(tmp_path):
    paths = []
    for i, rate in enumerate((8000, 16000, 44100)):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], noise(0.5, rate), rate)
    paths.append(tmp_path / "text.wav")
    paths[-1].write_text("not audio")
    assert audio.native_rates(paths).tolist() == [8000, 16000, 44100, 0]


@pytest.mark.parametrize("rates,top,expected", [
    ([8000, 8000, 16000, 44100], 22050.0, "3 of 4 files are sampled at 8000 Hz (2), 16000 Hz (1)"),
    ([44100, 48000, 0], 22050.0, None),  # 0: unknown, not counted as low
    ([44100, 44100], 24000.0, "2 of 2 files are sampled at 44100 Hz (2)"),  # below a 48 kHz model
    ([8000, 16000], 4000.0, None),  # mel bands that stop at 4 kHz see all of an 8 kHz clip
])
def test_low_rate_summary_counts_each_rate(rates, top, expected):
    assert audio.low_rate_summary(np.array(rates), top) == expected


@pytest.mark.parametrize("rates,rate,expected", [
    ([8000, 16000, 44100], 44100, 4000.0),
    ([44100, 48000], 44100, None),  # nothing sampled below the analysis rate: the default (Nyquist)
    ([0, 22050], 44100, 11025.0),
])
def test_auto_fmax_is_the_lowest_native_nyquist(rates, rate, expected):
    assert audio.auto_fmax(np.array(rates), rate) == expected


def test_auto_fmax_needs_one_readable_header():
    with pytest.raises(AudioError, match="--fmax auto: no audio file's sample rate"):
        audio.auto_fmax(np.array([0, 0]), 44100)
