"""deepfeat.hear: the HEAR 2021 API, checked by the hearvalidator package."""
from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

import deepfeat
from deepfeat import hear
from deepfeat.errors import ConfigError

from .test_birdnet import needs_model


@pytest.mark.parametrize("rate, hop", [(44100, 0.025), (48000, 0.05), (22050, 0.025), (16000, 0.1)])
def test_timestamp_windows_are_centred_and_do_not_drift(rate, hop):
    seconds = 61.3
    samples = np.arange(int(seconds * rate), dtype=np.float32)  # each sample holds its own index
    windows, ms = hear.timestamp_windows(samples, rate, window=0.2, hop=hop)
    width = int(round(0.2 * rate))
    assert windows.shape == (len(ms), width) and ms[0] == 0.0 and ms[-1] <= seconds * 1000
    assert ms[-1] > seconds * 1000 - hop * 1000  # the last timestamp is within one hop of the end
    np.testing.assert_allclose(np.diff(ms), hop * 1000)
    centres = windows[:, width // 2]  # the sample at each window's centre (each sample holds its index)
    inside = ms / 1000 * rate < len(samples) - 1
    np.testing.assert_allclose(centres[inside], ms[inside] / 1000 * rate, atol=1.0)  # no drift after a minute
    assert (windows[0, :width // 2] == 0).all()  # half a window of zeros before the start


@pytest.mark.slow  # 12 images through EfficientNet-Lite0
def test_timestamp_and_scene_embeddings_are_the_cli_rows():
    model = hear.load_model(device="cpu", hop=0.25)
    assert (model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size) == (44100, 1280, 1280)
    audio = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 44100)).astype(np.float32))
    frames, ms = hear.get_timestamp_embeddings(audio, model)
    assert frames.shape == (2, 5, 1280) and frames.dtype == torch.float32
    assert ms.tolist() == [[0.0, 250.0, 500.0, 750.0, 1000.0]] * 2
    windows, _ = hear.timestamp_windows(audio[1].numpy(), 44100, 1.0, 0.25)
    np.testing.assert_allclose(frames[1].numpy(), deepfeat.embed(list(windows), sr=44100, device="cpu"), rtol=1e-5,
                               atol=1e-6)
    scene = hear.get_scene_embeddings(audio, model)
    np.testing.assert_allclose(scene.numpy(), deepfeat.embed(list(audio.numpy()), sr=44100, device="cpu"), rtol=1e-5,
                               atol=1e-6)


def test_bad_audio_is_a_clear_error():
    model = hear.load_model(device="cpu")
    with pytest.raises(ConfigError, match=r"tensor \[n_sounds, n_samples\]"):
        hear.get_scene_embeddings(torch.zeros(44100), model)


@pytest.fixture
def validator(monkeypatch, tmp_path):
    """hearvalidator's checker. It imports tensorflow only to recognise TF models: a stub stands in
    when tensorflow is absent. A second HEAR module, as a submission wraps one, for BirdNET."""
    if importlib.util.find_spec("tensorflow") is None:
        stub = types.ModuleType("tensorflow")
        stub.Module = type("Module", (), {})
        monkeypatch.setitem(sys.modules, "tensorflow", stub)
    (tmp_path / "hear_birdnet.py").write_text(
        "from functools import partial\n\nfrom deepfeat import hear\n\n"
        "load_model = partial(hear.load_model, network='birdnet')\n"
        "get_scene_embeddings, get_timestamp_embeddings = hear.get_scene_embeddings, hear.get_timestamp_embeddings\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    validate = pytest.importorskip("hearvalidator.validate")
    return validate.ValidateModel


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning:hearvalidator")
@pytest.mark.parametrize("module", ["deepfeat.hear", pytest.param("hear_birdnet", marks=needs_model)])
def test_hearvalidator_passes(validator, module, capsys):
    check = validator(module, "", device="cpu")
    check()
    printed = capsys.readouterr().out
    assert "Received embedding of shape: (2, 81," in printed  # 4 s of audio: timestamps 0, 50, ..., 4000 ms
    assert check.model_type == "torch"
