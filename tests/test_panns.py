"""PANNs Cnn14 extractor: parity with the panns-inference reference, checkpoint loading, windows."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepfeat.demo import write_demo_dataset
from deepfeat.errors import ConfigError, WeightsError
from deepfeat.extractors import create_extractor
from deepfeat.models.cnn14 import Cnn14, cnn14_state_dict
from deepfeat.store import read_store

from .conftest import randomise_batch_norm

RATE = 32000


@pytest.fixture(scope="module")
def reference_cnn14(tmp_path_factory):
    """panns-inference's Cnn14 class, imported with a temporary HOME that already holds the AudioSet
    labels file (the package fetches it with wget at import otherwise)."""
    home = tmp_path_factory.mktemp("home")
    (home / "panns_data").mkdir()
    rows = ["index,mid,display_name"] + [f'{i},/m/{i:05d},"class {i}"' for i in range(527)]
    (home / "panns_data" / "class_labels_indices.csv").write_text("\n".join(rows) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        pytest.importorskip("torchlibrosa")
        models = pytest.importorskip("panns_inference.models")
    assert not (home / "panns_data" / "Cnn14_mAP=0.431.pth").exists()  # nothing was downloaded
    return models.Cnn14


@pytest.fixture(scope="module")
def reference(reference_cnn14, tmp_path_factory):
    """A random reference Cnn14 and its state saved in the official checkpoint format."""
    torch.manual_seed(3)
    model = reference_cnn14(sample_rate=RATE, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000,
                            classes_num=527).eval()
    randomise_batch_norm(model, 4)
    path = tmp_path_factory.mktemp("ckpt") / "Cnn14_random.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return model, path


@pytest.fixture(scope="module")
def loaded(reference):
    """The extractor loaded from the reference's checkpoint file, for each layer."""
    _, path = reference
    out = {}
    for layer in ("embedding", "scores"):
        out[layer] = create_extractor("panns_cnn14", weights=str(path), layer=layer, duration=0.5, device="cpu")
        out[layer].load()
    return out


@pytest.mark.parametrize("layer", ["embedding", "scores"])
@pytest.mark.parametrize("seconds", [0.5, 1.3])
def test_matches_reference(reference, loaded, layer, seconds):
    model, _ = reference
    rng = np.random.default_rng(int(seconds * 10))
    audio = (0.2 * rng.standard_normal((2, int(seconds * RATE)))).astype(np.float32)
    ex = loaded[layer]
    ours = ex.embed(audio)  # whole inputs of any length ≥ 0.32 s
    with torch.no_grad():
        out = model(torch.from_numpy(audio))
    expected = out["embedding" if layer == "embedding" else "clipwise_output"].numpy()
    assert ours.shape == (2, ex.dim) == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    assert ex.weights_sha256 and len(ex.weights_sha256) == 64


def test_loaded_parameters_equal_the_checkpoint(reference, loaded):
    model, _ = reference
    ours = loaded["embedding"].model.state_dict()
    theirs = cnn14_state_dict(model.state_dict())
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name


def test_checkpoint_mel_matrix_is_used(reference):
    """The checkpoint's mel matrix (logmel_extractor.melW) replaces the computed one."""
    model, _ = reference
    state = cnn14_state_dict(model.state_dict())
    state["logmel_extractor.melW"] = state["logmel_extractor.melW"] * 2.0
    scaled = Cnn14()
    scaled.load_state_dict(state)
    x = 0.1 * torch.randn(1, RATE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = scaled.log_mel(x) - Cnn14().log_mel(x)
    np.testing.assert_allclose(difference.numpy(), 10 * np.log10(2.0), atol=1e-3)


@pytest.mark.parametrize("state, message", [
    ({"fc1.weight": torch.zeros(3, 3)}, "does not fit"),
    ({"spectrogram_extractor.stft.conv_real.weight": torch.zeros(257, 1, 512)}, "STFT kernels of size 1024"),
    ({"model": {"fc_audioset.weight": torch.zeros(10, 2048)}}, "does not fit"),
])
def test_unfitting_checkpoint_is_a_weights_error(tmp_path, state, message):
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=message):
        create_extractor("panns_cnn14", weights=str(path), device="cpu").load()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "Cnn14.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a loadable PyTorch checkpoint"):
        create_extractor("panns_cnn14", weights=str(path), device="cpu").load()


def test_missing_official_weights_say_where_to_put_them(tmp_path, monkeypatch):
    for var in ("DEEPFEAT_WEIGHTS_DIR", "XDG_CACHE_HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    with pytest.raises(WeightsError) as e:
        create_extractor("panns_cnn14", device="cpu").load()
    text = str(e.value)
    assert "Cnn14_mAP=0.431.pth" in text and str(tmp_path / "deepfeat_weights_dir") in text
    assert "deepfeat weights download panns_cnn14-audioset" in text


def test_unknown_weights_name(tmp_path):
    with pytest.raises(WeightsError, match="audioset, none"):
        create_extractor("panns_cnn14", weights="imagenet", device="cpu").load()


def test_official_registry_entry():
    from deepfeat import weights

    wf = weights.get("panns_cnn14-audioset")
    assert wf.filename == "Cnn14_mAP=0.431.pth"
    assert wf.url.startswith("https://zenodo.org/record/3987831/")


def test_random_init_is_seeded():
    x = (0.1 * np.random.default_rng(0).standard_normal((1, RATE // 2))).astype(np.float32)

    def features(seed):
        ex = create_extractor("panns_cnn14", weights="none", seed=seed, duration=0.5, device="cpu")
        ex.load()
        return ex.embed(ex.frontend(x[0]))

    a, b, c = features(0), features(0), features(1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (1, 2048) and np.all(a >= 0)  # after ReLU


@pytest.mark.parametrize("seconds, duration, segment, expected", [
    (5.0, None, None, (1, 320000)),  # shorter than the 10 s window: one zero-padded input
    (10.0, None, None, (1, 320000)),
    (25.0, None, None, (3, 320000)),  # three consecutive 10 s inputs, the last zero-padded
    (5.0, 5.0, None, (1, 160000)),  # --duration sets the input length
    (1.0, None, (1.0, 0.5), (1, 32000)),  # a -t segment is one input
])
def test_frontend_inputs(seconds, duration, segment, expected):
    ex = create_extractor("panns_cnn14", weights="none", duration=duration, segment=segment, device="cpu")
    audio = np.linspace(0.1, 1.0, int(seconds * RATE), dtype=np.float32)
    inputs = ex.frontend(audio)
    assert inputs.shape == expected and inputs.dtype == np.float32
    flat = inputs.reshape(-1)
    np.testing.assert_array_equal(flat[:audio.size], audio[:flat.size])
    assert not flat[audio.size:].any()  # padding is zeros


@pytest.mark.parametrize("params, message", [
    ({"layer": "fc_audioset"}, "choose embedding"),
    ({"segment": (0.2, 0.2)}, "at least 0.32 s"),
    ({"duration": 0.1}, "at least 0.32 s"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ConfigError, match=message):
        create_extractor("panns_cnn14", weights="none", device="cpu", **params)


def test_cnn14_state_dict_drops_only_stft_kernels(reference):
    model, _ = reference
    state = model.state_dict()
    mapped = cnn14_state_dict(state)
    assert set(state) - set(mapped) == {"spectrogram_extractor.stft.conv_real.weight",
                                        "spectrogram_extractor.stft.conv_imag.weight"}


@pytest.mark.slow
def test_cli_extract_writes_store(tmp_path):
    """``deepfeat extract DATA -n panns_cnn14 -w none`` end to end: one 2048-d row per clip."""
    from deepfeat.cli.main import cli

    data = write_demo_dataset(tmp_path / "data", clips_per_class=1, duration=0.5, sample_rate=16000)
    out = tmp_path / "panns.h5"
    result = CliRunner().invoke(cli, ["extract", str(data), "-n", "panns_cnn14", "-w", "none", "--duration", "0.5",
                                       "--workers", "0", "--device", "cpu", "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    store = read_store(out)
    assert store.features.shape == (5, 2048) and np.isfinite(store.features).all()
    assert store.config["extractor"]["network"] == "panns_cnn14"
    assert store.config["extractor"]["input_seconds"] == 0.5
    assert store.config["extractor"]["sample_rate"] == RATE


def test_package_never_imports_panns_inference():
    """panns-inference downloads files at import: deepfeat/ itself must never import it."""
    import deepfeat

    root = Path(deepfeat.__file__).parent
    pattern = re.compile(r"^\s*(import|from)\s+panns_inference", re.M)
    offenders = [p for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
