import warnings

import librosa
import numpy as np
import pytest

from deepfeat.config import MEL3_RESOLUTIONS, MEL_PRESETS, MelConfig
from deepfeat.errors import ConfigError
from deepfeat.spectrogram import (
    fft_size, log_mel, mel3_stack, mel_filterbank, mel_power, power_to_clipped_db, stft_power,
)

from .conftest import tone

RATE = 16000


@pytest.mark.parametrize("preset", sorted(MEL_PRESETS))
@pytest.mark.parametrize("clip_db", [-30.0, -45.0, -60.0, -80.0])
def test_log_mel_range_and_shape(preset, clip_db):
    mel = MelConfig.from_preset(preset, sample_rate=RATE, clip_db=clip_db)
    x = tone(440, 1.0, RATE) + 0.01 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    db = log_mel(x, mel)
    hop = int(round(mel.hop * RATE))
    assert db.shape == (128, 1 + RATE // hop)
    assert db.dtype == np.float32
    assert db.max() == pytest.approx(0.0) and db.min() >= clip_db
    assert (db == clip_db).any() or clip_db < -60  # the floor is reached for strong clipping


@pytest.mark.parametrize("freq", [250.0, 1000.0, 4000.0])
def test_tone_peaks_in_the_matching_mel_band(freq):
    mel = MelConfig.from_preset("fine", sample_rate=RATE, n_mels=64)
    db = log_mel(tone(freq, 1.0, RATE), mel)
    centres = librosa.mel_frequencies(64 + 2, fmin=0, fmax=RATE / 2)[1:-1]
    band = int(np.argmax(db.mean(axis=1)))
    assert abs(centres[band] - freq) / freq < 0.15


@pytest.mark.parametrize("clip_db", [-30.0, -80.0])
def test_silence_gives_the_floor_not_nan(clip_db):
    db = log_mel(np.zeros(RATE, np.float32), MelConfig(sample_rate=RATE, clip_db=clip_db))
    assert np.isfinite(db).all() and (db == clip_db).all()


def test_power_to_db_puts_maximum_at_zero():
    power = np.array([[1.0, 10.0, 100.0]], np.float32)
    np.testing.assert_allclose(power_to_clipped_db(power, -80), [[-20.0, -10.0, 0.0]], atol=1e-5)
    np.testing.assert_allclose(power_to_clipped_db(power, -15), [[-15.0, -10.0, 0.0]], atol=1e-5)


def test_fft_size_never_smaller_than_window_or_2048():
    assert fft_size(256) == 2048 and fft_size(14112) == 14112


def test_mel3_three_resolutions():
    mel = MelConfig(sample_rate=RATE)
    planes = mel3_stack(tone(440, 1.0, RATE), mel)
    assert len(planes) == 3
    for plane, (_, hop) in zip(planes, MEL3_RESOLUTIONS):
        assert plane.shape == (128, 1 + RATE // int(round(hop * RATE)))


@pytest.mark.parametrize("kwargs", [{"clip_db": 10.0}, {"window": 0.0}, {"hop": -1.0}, {"n_mels": 0}])
def test_invalid_mel_config(kwargs):
    with pytest.raises(ConfigError):
        MelConfig(**kwargs)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown mel preset"):
        MelConfig.from_preset("nope")


@pytest.mark.parametrize("preset", sorted(MEL_PRESETS))
@pytest.mark.parametrize("rate", [16000, 44100])
def test_mel_power_equals_librosa_melspectrogram(preset, rate):
    from deepfeat.spectrogram import mel_power

    mel = MelConfig.from_preset(preset, sample_rate=rate, fmin=20.0, fmax=rate / 2 - 1000)
    x = np.random.default_rng(0).standard_normal(rate).astype(np.float32)
    win, hop = int(round(mel.window * rate)), int(round(mel.hop * rate))
    expected = librosa.feature.melspectrogram(y=x, sr=rate, n_fft=fft_size(win), hop_length=hop, win_length=win,
                                              n_mels=128, fmin=20.0, fmax=rate / 2 - 1000)
    np.testing.assert_allclose(mel_power(x, mel), expected, rtol=1e-4, atol=1e-6 * expected.max())


@pytest.mark.parametrize("n", [100, 2047, 16000, 16000 * 3 + 17])
@pytest.mark.parametrize("win,hop,n_fft", [(400, 160, 2048), (1103, 441, 2048), (5120, 2560, 5120), (256, 128, 2048)])
def test_stft_power_is_librosas_to_the_bit(n, win, hop, n_fft):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_fft larger than a short input
        spec = librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=True)
    np.testing.assert_array_equal(stft_power(x, n_fft, hop, win), np.square(spec.real) + np.square(spec.imag))


@pytest.mark.parametrize("preset", sorted(MEL_PRESETS))
def test_mel_power_is_librosas_melspectrogram(preset):
    mel = MelConfig.from_preset(preset, sample_rate=RATE)
    x = tone(440, 1.0, RATE) + 0.05 * np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    win, hop = int(round(mel.window * RATE)), int(round(mel.hop * RATE))
    ref = librosa.feature.melspectrogram(y=x, sr=RATE, n_fft=fft_size(win), hop_length=hop, win_length=win,
                                         n_mels=mel.n_mels, power=2.0)
    np.testing.assert_allclose(mel_power(x, mel), ref, rtol=1e-4, atol=1e-6 * ref.max())


def test_filterbank_is_cached_per_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    mel_filterbank.cache_clear()
    try:
        bank = mel_filterbank(RATE, 2048, 64, 0.0, None).toarray()
        files = list(tmp_path.glob("deepfeat/mel/librosa-*/*.npy"))
        assert len(files) == 1 and np.array_equal(np.load(files[0]), bank)
        np.testing.assert_array_equal(bank, librosa.filters.mel(sr=RATE, n_fft=2048, n_mels=64).astype(np.float32))
        mel_filterbank(RATE, 2048, 32, 0.0, 4000.0)
        assert len(list(tmp_path.glob("deepfeat/mel/librosa-*/*.npy"))) == 2
    finally:
        mel_filterbank.cache_clear()
