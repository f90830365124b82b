"""Renderer tests, including image comparisons against committed baselines (tests/baseline/*.png).

Regenerate the baselines after an intended change with:
    DEEPFEAT_REGEN_BASELINES=1 .venv/bin/python -m pytest tests/test_render.py -k baseline
"""
import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from deepfeat.config import MelConfig, PlotConfig
from deepfeat.errors import ConfigError
from deepfeat.render import colormap_lut, render_fast, render_matplotlib, spectrogram_image
from deepfeat.spectrogram import log_mel

from .conftest import tone

BASELINES = Path(__file__).parent / "baseline"
RATE = 16000


def chirp_db(mel: MelConfig) -> np.ndarray:
    t = np.arange(RATE) / RATE
    x = np.sin(2 * np.pi * (200 * t + 3000 * t ** 2)).astype(np.float32)  # 200 Hz → 6.2 kHz sweep
    return log_mel(x, mel)


@pytest.mark.parametrize("colormap", ["viridis", "magma", "cividis", "hot", "gray"])
@pytest.mark.parametrize("interpolation,max_mean_diff", [("nearest", 1.0), ("bilinear", 3.0)])
@pytest.mark.parametrize("preset", ["paper", "fine"])
def test_fast_and_matplotlib_renderers_agree(colormap, interpolation, max_mean_diff, preset):
    config = PlotConfig(mel=MelConfig.from_preset(preset, sample_rate=RATE), colormap=colormap,
                        interpolation=interpolation)
    db = chirp_db(config.mel)
    fast, mpl = render_fast(db, config), render_matplotlib(db, config)
    assert fast.shape == mpl.shape == (224, 224, 3) and fast.dtype == mpl.dtype == np.uint8
    diff = np.abs(fast.astype(int) - mpl.astype(int))
    assert diff.mean() < max_mean_diff
    assert np.corrcoef(fast.ravel(), mpl.ravel())[0, 1] > 0.98


@pytest.mark.parametrize("size", [(224, 224), (299, 299), (100, 300)])
def test_image_size(size):
    config = PlotConfig(mel=MelConfig(sample_rate=RATE), size=size)
    assert render_fast(chirp_db(config.mel), config).shape == (*size, 3)


def test_low_frequencies_are_at_the_bottom():
    config = PlotConfig(mel=MelConfig.from_preset("fine", sample_rate=RATE), colormap="gray")
    image = spectrogram_image(tone(150, 1.0, RATE), config)
    brightness = image[..., 0].mean(axis=1)
    assert np.argmax(brightness) > 0.8 * image.shape[0]


def test_lut_matches_matplotlib_colormap():
    lut = colormap_lut("viridis")
    expected = np.round(np.array(matplotlib.colormaps["viridis"]([0.0, 1.0]))[:, :3] * 255)
    np.testing.assert_array_equal(lut[[0, 255]], expected)


def test_floor_and_peak_map_to_colormap_ends():
    config = PlotConfig(mel=MelConfig(sample_rate=RATE, clip_db=-60), colormap="magma")
    db = np.full((128, 10), -60.0, np.float32)
    db[:, 5:] = 0.0
    image = render_fast(db, config)
    lut = colormap_lut("magma")
    assert (image[:, 0] == lut[0]).all() and (image[:, -1] == lut[255]).all()


def test_mel3_channels_carry_different_resolutions():
    config = PlotConfig(mel=MelConfig(sample_rate=RATE), colormap="mel3")
    rng = np.random.default_rng(0)
    clicks = np.zeros(RATE, np.float32)
    clicks[rng.integers(0, RATE, 12)] = 1.0
    image = spectrogram_image(clicks, config)
    assert image.shape == (224, 224, 3)
    r, g, b = (image[..., i].astype(float) for i in range(3))
    assert not np.array_equal(r, g) and not np.array_equal(g, b)
    # finer time resolution (R: 10 ms hop) shows the clicks as sharper columns than B (50 ms hop)
    assert np.abs(np.diff(r.mean(axis=0))).mean() > np.abs(np.diff(b.mean(axis=0))).mean()


def test_unknown_colormap():
    with pytest.raises(ConfigError, match="unknown colour map"):
        PlotConfig(colormap="not_a_map")


@pytest.mark.parametrize("name,config", [
    ("chirp_viridis_paper", PlotConfig(mel=MelConfig.from_preset("paper", sample_rate=RATE, clip_db=-80),
                                       colormap="viridis", interpolation="nearest")),
    ("chirp_magma_fine_bilinear", PlotConfig(mel=MelConfig.from_preset("fine", sample_rate=RATE, clip_db=-60),
                                             colormap="magma", interpolation="bilinear")),
    ("chirp_mel3", PlotConfig(mel=MelConfig(sample_rate=RATE), colormap="mel3")),
])
def test_baseline_images(name, config):
    t = np.arange(RATE) / RATE
    x = np.sin(2 * np.pi * (200 * t + 3000 * t ** 2)).astype(np.float32)
    image = spectrogram_image(x, config)
    path = BASELINES / f"{name}.png"
    if os.environ.get("DEEPFEAT_REGEN_BASELINES"):
        Image.fromarray(image).save(path)
    expected = np.asarray(Image.open(path).convert("RGB"))
    rms = np.sqrt(np.mean((image.astype(float) - expected.astype(float)) ** 2))
    assert rms < 2.0, f"{name}: RMS difference {rms:.2f} to {path}"
