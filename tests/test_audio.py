import numpy as np
import pytest
import soundfile as sf

from deepfeat.audio import fix_length, frame_windows, load_audio, resample, segments
from deepfeat.errors import AudioError

from .conftest import tone


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", None)])
def test_load_formats_decode_to_mono_float(tmp_path, fmt, subtype):
    if fmt not in sf.available_formats():
        pytest.skip(f"libsndfile here cannot write {fmt}")
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, tone(440, 1.0, 16000), 16000, format=fmt, subtype=subtype)
    x, rate = load_audio(path)
    assert rate == 16000 and x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - 16000) < 2000  # lossy codecs add priming samples
    assert 0.3 < np.abs(x).max() <= 1.0


def test_stereo_is_mixed_to_mono(write_wav):
    stereo = np.stack([tone(440), -tone(440)], axis=1)  # channels cancel when averaged
    x, _ = load_audio(write_wav("s.wav", stereo))
    assert x.ndim == 1 and np.abs(x).max() < 1e-3


@pytest.mark.parametrize("rate_in", [8000, 22050, 44100, 96000])
@pytest.mark.parametrize("rate_out", [16000, 44100])
def test_resampling_keeps_duration_and_pitch(write_wav, rate_in, rate_out):
    x, rate = load_audio(write_wav("r.wav", tone(1000, 1.0, rate_in), rate_in), rate_out)
    assert rate == rate_out and abs(x.size - rate_out) <= 2
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * rate_out / x.size - 1000) < 5  # peak stays at 1 kHz


def test_resample_identity():
    x = tone()
    assert resample(x, 16000, 16000) is x


@pytest.mark.parametrize("content,kind", [(b"", "empty"), (b"not audio at all" * 10, "text"),
                                          (np.random.default_rng(0).bytes(4000), "random bytes")])
def test_bad_files_raise_one_line_error_naming_the_file(tmp_path, content, kind):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError) as e:
        load_audio(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value), kind


def test_truncated_file(write_wav):
    path = write_wav("t.wav", tone(440, 1.0))
    path.write_bytes(path.read_bytes()[:40])  # header cut short
    with pytest.raises(AudioError, match="t.wav"):
        load_audio(path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav")


@pytest.mark.parametrize("n,duration,expected", [(1000, 0.5, 8000), (20000, 0.5, 8000), (8000, 0.5, 8000),
                                                 (1234, None, 1234)])
def test_fix_length_pads_with_zeros_or_crops(n, duration, expected):
    x = np.ones(n, np.float32)
    y = fix_length(x, 16000, duration)
    assert y.size == expected
    assert y[: min(n, expected)].min() == 1.0 and (y[n:] == 0).all()


@pytest.mark.parametrize("seconds,window,hop,n_windows", [(0.1, 1.0, 0.5, 1), (1.0, 1.0, 0.5, 1), (2.0, 1.0, 0.5, 3),
                                                          (2.2, 1.0, 0.5, 4), (60.0, 3.0, 3.0, 20)])
def test_frame_windows_counts_and_starts(seconds, window, hop, n_windows):
    rate = 1000
    x = np.arange(int(seconds * rate), dtype=np.float32) + 1
    w, starts = frame_windows(x, rate, window, hop)
    assert w.shape == (n_windows, int(window * rate))
    np.testing.assert_allclose(starts, np.arange(n_windows) * hop)
    assert w[0, 0] == 1 and (w[-1] >= 0).all()
    if n_windows > 1:  # windows are views into the signal at their start times
        assert w[1, 0] == x[int(hop * rate)]


def test_segments_without_windowing_is_the_whole_clip():
    x = np.ones(1600, np.float32)
    s, starts = segments(x, 16000, duration=0.2)
    assert s.shape == (1, 3200) and starts.tolist() == [0.0]
