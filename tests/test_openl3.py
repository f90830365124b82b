"""OpenL3 extractor: parity with the torchopenl3 reference, front end, weights, windows."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepfeat.demo import write_demo_dataset
from deepfeat.errors import ConfigError, WeightsError
from deepfeat.extract import extract_features
from deepfeat.datasets import load_manifest
from deepfeat.extractors import create_extractor
from deepfeat.models.openl3 import L3Spectrogram, OpenL3, infer_input_repr, kapre_decibel, openl3_mel_filters
from deepfeat.store import read_store

from .conftest import randomise_batch_norm

RATE = 48000
pytestmark = pytest.mark.filterwarnings("ignore:Empty filters detected:UserWarning",
                                        "ignore:pkg_resources is deprecated:UserWarning")


@pytest.fixture(scope="module")
def reference_openl3():
    """torchopenl3's PytorchOpenl3 class (skipped where torchopenl3 or its resampy 0.2 cannot import)."""
    return pytest.importorskip("torchopenl3.models").PytorchOpenl3


def windows(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((n, RATE))).astype(np.float32)


@pytest.mark.parametrize("input_repr", ["linear", "mel128", "mel256"])
@pytest.mark.parametrize("size", [512, 6144])
def test_matches_reference(reference_openl3, tmp_path, input_repr, size):
    torch.manual_seed(size)
    ref = reference_openl3(input_repr=input_repr, embedding_size=size, content_type="env").eval()
    randomise_batch_norm(ref, 1)
    path = tmp_path / f"torchopenl3_{input_repr}_env_{size}.pth.tar"  # the format of the converted weights
    torch.save(ref.state_dict(), path)
    ex = create_extractor("openl3", weights=str(path), layer=str(size), device="cpu")
    ex.load()
    assert (ex.input_repr, ex.content_type) == (input_repr, "env")
    x = windows(1, seed=size)
    ours = ex.embed(x)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)[:, None]).numpy()
    assert ours.shape == expected.shape == (1, size)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_input_repr_is_read_from_the_checkpoint(reference_openl3, tmp_path):
    """A file without the torchopenl3 name still loads: its mel matrix tells the representation."""
    ref = reference_openl3(input_repr="mel256", embedding_size=512, content_type="music")
    path = tmp_path / "weights.pt"
    torch.save(ref.state_dict(), path)
    assert infer_input_repr(ref.state_dict()) == "mel256"
    ex = create_extractor("openl3", weights=str(path), device="cpu")
    ex.load()
    assert ex.input_repr == "mel256" and ex.content_type is None
    assert torch.equal(ex.model.speclayer.mel_basis, ref.state_dict()["speclayer.mel_basis"])


def test_checkpoint_for_another_representation(reference_openl3, tmp_path):
    ref = reference_openl3(input_repr="linear", embedding_size=512, content_type="env")
    path = tmp_path / "l3.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(WeightsError, match="not the mel128 front end"):
        create_extractor("openl3", weights=str(path), input_repr="mel128", device="cpu").load()


def test_not_openl3_weights(tmp_path):
    path = tmp_path / "torchopenl3_mel128_env_512.pth.tar"
    torch.save({"speclayer.mel_basis": torch.zeros(128, 1025), "conv2d_1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsError, match="does not fit OpenL3"):
        create_extractor("openl3", weights=str(path), device="cpu").load()


@pytest.mark.parametrize("input_repr, shape", [("linear", (257, 197)), ("mel128", (128, 199)), ("mel256", (256, 199))])
def test_spectrogram_shapes_and_decibels(input_repr, shape):
    spec = L3Spectrogram(input_repr)(torch.from_numpy(windows(2)))
    assert spec.shape == (2, 1, *shape)
    top = spec.amax(dim=(1, 2, 3))
    np.testing.assert_allclose(top.numpy(), 0.0, atol=1e-5)  # each example's maximum is 0 dB
    assert spec.min() >= -80.0


def test_linear_spectrogram_matches_librosa():
    """kapre's linear front end: |STFT| (512 Hann, hop 242, no padding) in 10·log10 dB, max 0, floor −80."""
    x = windows(1, seed=5)[0]
    mag = np.abs(librosa.stft(x.astype(np.float64), n_fft=512, hop_length=242, window="hann", center=False))
    db = 10 * np.log10(np.maximum(mag, 1e-10))
    expected = np.maximum(db - db.max(), -80.0)
    ours = L3Spectrogram("linear")(torch.from_numpy(x)[None])[0, 0].numpy()
    np.testing.assert_allclose(ours, expected, atol=2e-3)


@pytest.mark.parametrize("n_mels", [128, 256])
def test_mel_filters_are_htk_area_normalised(n_mels):
    """HTK-spaced triangles from 0 Hz to 24 kHz, each of unit area in Hz (kapre 0.1 / librosa < 0.8 norm=1)."""
    fb = openl3_mel_filters(n_mels)
    assert fb.shape == (n_mels, 1025)
    bin_hz = RATE / 2048
    edges = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=RATE / 2, htk=True)
    wide = (edges[2:] - edges[:-2]) > 8 * bin_hz  # triangles spanning enough FFT bins to integrate
    assert wide.sum() > n_mels // 4
    np.testing.assert_allclose(fb[wide].sum(axis=1) * bin_hz, 1.0, rtol=0.02)
    centres = librosa.fft_frequencies(sr=RATE, n_fft=2048)[fb.argmax(axis=1)]
    np.testing.assert_allclose(centres[wide], edges[1:-1][wide], atol=bin_hz)


def test_kapre_decibel_floor_and_scale():
    x = torch.tensor([[1.0, 10.0, 1e-12, 100.0]])
    np.testing.assert_allclose(kapre_decibel(x).numpy(), [[-20.0, -10.0, -80.0, 0.0]], atol=1e-5)


@pytest.mark.parametrize("seconds, hop, center, segment, count", [
    (5.0, 0.1, True, None, 46),  # OpenL3: 0.5 s of zeros in front, then 1 + ceil((5.5 - 1) / 0.1) windows
    (5.0, 0.1, False, None, 41),
    (5.0, 0.5, True, None, 10),
    (0.3, 0.1, False, None, 1),  # shorter than a window: one zero-padded window
    (1.0, 0.1, True, (1.0, 1.0), 1),  # a -t segment is not centred: one window per 1 s segment
    (2.0, 0.5, True, (2.0, 2.0), 3),
])
def test_frontend_windows(seconds, hop, center, segment, count):
    ex = create_extractor("openl3", weights="none", hop=hop, center=center, segment=segment, device="cpu")
    audio = np.linspace(0.1, 1.0, int(seconds * RATE), dtype=np.float32)
    out = ex.frontend(audio)
    assert out.shape == (count, RATE) and out.dtype == np.float32
    offset = RATE // 2 if center and not segment else 0
    first = out[0]
    assert not first[:offset].any()
    np.testing.assert_array_equal(first[offset:offset + min(audio.size, RATE - offset)],
                                  audio[:RATE - offset])
    step = int(hop * RATE)
    if count > 1:  # consecutive windows start hop seconds apart
        np.testing.assert_array_equal(out[1][:RATE - step], out[0][step:])


@pytest.mark.parametrize("weights, content, input_repr", [
    ("env_mel128", "env", "mel128"), ("music_mel256", "music", "mel256"), ("env_linear", "env", "linear"),
])
def test_weight_names_select_the_model(weights, content, input_repr, tmp_path, monkeypatch):
    for var in ("DEEPFEAT_WEIGHTS_DIR", "XDG_CACHE_HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    ex = create_extractor("openl3", weights=weights, device="cpu")
    assert (ex.content_type, ex.input_repr) == (content, input_repr)
    with pytest.raises(WeightsError) as e:  # nothing in the cache: says which file goes where
        ex.load()
    assert f"torchopenl3_{input_repr}_{content}_512.pth.tar" in str(e.value)
    assert f"deepfeat weights download openl3-{weights}" in str(e.value)


def test_registered_file_is_found_in_the_cache(reference_openl3, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFEAT_WEIGHTS_DIR", str(tmp_path))
    ref = reference_openl3(input_repr="mel128", embedding_size=512, content_type="music")
    torch.save(ref.state_dict(), tmp_path / "torchopenl3_mel128_music_512.pth.tar")
    ex = create_extractor("openl3", weights="music_mel128", layer="6144", device="cpu")
    ex.load()
    assert ex.dim == 6144 and len(ex.weights_sha256) == 64
    assert ex.config()["content_type"] == "music" and ex.config()["embedding_size"] == 6144


@pytest.mark.parametrize("params, error, message", [
    ({"layer": "audio_embedding_layer"}, ConfigError, "choose 512 or 6144"),
    ({"weights": "env_mel128", "input_repr": "linear"}, ConfigError, "conflicting"),
    ({"weights": "none", "input_repr": "mel64"}, ConfigError, "input representation"),
    ({"weights": "none", "hop": 0.0}, ConfigError, "positive"),
])
def test_bad_parameters(params, error, message):
    with pytest.raises(error, match=message):
        create_extractor("openl3", device="cpu", **params)


def test_unknown_weights_name():
    with pytest.raises(WeightsError, match="env_mel128"):
        create_extractor("openl3", weights="env_mel64", device="cpu").load()


def test_random_init_is_seeded():
    x = windows(1, seed=2)

    def features(seed):
        ex = create_extractor("openl3", weights="none", seed=seed, device="cpu")
        ex.load()
        return ex.embed(x)

    a, b, c = features(0), features(0), features(1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_clip_row_is_the_mean_of_its_windows(tmp_path):
    data = write_demo_dataset(tmp_path / "data", clips_per_class=1, duration=1.0, sample_rate=16000)
    manifest = load_manifest(data)
    ex = create_extractor("openl3", weights="none", hop=0.5, device="cpu")
    out = extract_features(manifest, ex, tmp_path / "l3.h5", workers=0, progress=False)
    store = read_store(out)
    assert store.features.shape == (5, 512) and store.window_starts is None
    from deepfeat.audio import load_audio

    clip = manifest.clips[2]
    windows_ = ex.frontend(load_audio(clip.path, RATE)[0])
    assert len(windows_) == 2  # 1.5 s after centring → windows at 0 and 0.5 s
    row = store.features[list(store.ids).index(clip.id)]
    np.testing.assert_allclose(row, ex.embed(windows_).mean(axis=0), rtol=1e-4, atol=1e-5)
    assert store.config["extractor"]["hop"] == 0.5 and store.config["extractor"]["input_repr"] == "mel128"


@pytest.mark.slow
def test_cli_extract_keeps_every_window(tmp_path):
    """``deepfeat extract DATA -n openl3 -w none -t 1 0.5``: one row per 1 s window."""
    from deepfeat.cli.main import cli

    data = write_demo_dataset(tmp_path / "data", clips_per_class=1, duration=1.5, sample_rate=16000)
    out = tmp_path / "l3.h5"
    result = CliRunner().invoke(cli, ["extract", str(data), "-n", "openl3", "-w", "none", "-t", "1", "0.5",
                                      "--workers", "0", "--device", "cpu", "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    store = read_store(out)
    assert store.features.shape == (10, 512)  # 5 clips x windows at 0 and 0.5 s
    np.testing.assert_allclose(sorted(set(store.window_starts.tolist())), [0.0, 0.5])
    assert store.config["extractor"]["center"] is False


def test_model_rejects_unknown_sizes():
    with pytest.raises(ValueError, match="no mel128/1024"):
        OpenL3("mel128", 1024)
