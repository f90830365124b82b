"""The torch front end (the GPU path of extract) against the CPU renderer, on CPU tensors."""
import numpy as np
import pytest
import torch

from deepfeat.config import MelConfig, PlotConfig
from deepfeat.datasets import load_manifest
from deepfeat.extract import extract_features
from deepfeat.extractors import create_extractor
from deepfeat.render import spectrogram_image
from deepfeat.store import read_store
from deepfeat.torch_frontend import images

from .conftest import tone

RATE = 16000
#: the stated tolerance: mean absolute difference and largest difference, in 8-bit levels (of 255)
MEAN_LEVELS, MAX_LEVELS = 0.05, 4


def _clips(seconds: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    burst = np.zeros(n, np.float32)
    burst[n // 3: n // 2] = rng.standard_normal(n // 2 - n // 3) * 0.3
    return np.stack([tone(440, seconds, RATE), 0.3 * np.sin(2 * np.pi * (100 + 3000 * t) * t), burst,
                     0.05 * rng.standard_normal(n), np.zeros(n)]).astype(np.float32)


@pytest.mark.parametrize("colormap,interpolation,window,hop", [
    ("magma", "bilinear", None, None), ("gray", "bilinear", None, None), ("mel3", "bilinear", None, None),
    ("viridis", "nearest", None, None), ("magma", "bilinear", 0.32, 0.16),
])
def test_images_match_the_cpu_renderer(colormap, interpolation, window, hop):
    mel = MelConfig.from_preset("paper", sample_rate=RATE) if window else MelConfig(sample_rate=RATE)
    plot = PlotConfig(mel=mel, colormap=colormap, interpolation=interpolation)
    clips = _clips()
    cpu = np.stack([spectrogram_image(x, plot) for x in clips]).astype(int)
    drawn = images(torch.from_numpy(clips), plot)
    assert drawn.dtype == torch.uint8 and tuple(drawn.shape) == (len(clips), 224, 224, 3)
    diff = np.abs(drawn.numpy().astype(int) - cpu)
    assert diff.mean() <= MEAN_LEVELS and diff.max() <= MAX_LEVELS, (diff.mean(), diff.max())
    assert (diff[-1] == 0).all()  # silence: the floor colour everywhere, as on the CPU


def test_matplotlib_renderer_has_no_torch_counterpart():
    with pytest.raises(ValueError, match="fast renderer"):
        images(torch.zeros(1, RATE), PlotConfig(mel=MelConfig(sample_rate=RATE), renderer="matplotlib"))


def _lite0(device_frontend: bool):
    return create_extractor("efficientnet_lite0", plot=PlotConfig(mel=MelConfig(sample_rate=RATE)), device="cpu",
                            device_frontend=device_frontend)


def test_device_frontend_features_match_and_keep_the_order():
    """Clips of several lengths are batched by length on the device; rows come back in order."""
    clips = [tone(440, 1.0, RATE), tone(880, 0.5, RATE), 0.1 * _clips(1.0)[3], tone(660, 0.5, RATE)]
    on_device, on_cpu = _lite0(True), _lite0(False)
    parts = [on_device.frontend(x) for x in clips]
    assert parts[0].shape == (1, RATE) and parts[1].shape == (1, RATE // 2)
    a = on_device.embed_many(parts)
    b = on_cpu.embed_many([on_cpu.frontend(x) for x in clips])
    assert a.shape == b.shape == (4, 1280)
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    assert rel.max() < 0.02, rel
    assert np.linalg.norm(a[1] - b[3]) > np.linalg.norm(a[1] - b[1])  # not shuffled between lengths


def test_device_frontend_is_part_of_the_store_identity(demo_dir, tmp_path):
    out = extract_features(load_manifest(demo_dir), _lite0(True), tmp_path / "dev.h5", workers=0, progress=False)
    fs = read_store(out)
    assert fs.config["extractor"]["frontend"] == "torch" and fs.features.shape == (25, 1280)
    assert "frontend" not in _lite0(False).config()


def test_device_frontend_is_the_default_on_cuda_only():
    assert not create_extractor("efficientnet_lite0", device="cpu").device_frontend
    assert create_extractor("efficientnet_lite0", device="cuda").device_frontend
    plot = PlotConfig(renderer="matplotlib")
    assert not create_extractor("efficientnet_lite0", device="cuda", plot=plot).device_frontend
