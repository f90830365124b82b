"""Spectrogram → RGB image (uint8 [H, W, 3]), by two renderers that draw the same picture.

``fast`` resizes the dB matrix with Pillow and maps it through the colour map's 256-entry lookup
table: no figure, well under a millisecond an image. ``matplotlib`` draws the matrix
with ``imshow`` on a borderless Agg figure of the target size, as DeepSpectrum draws its plots;
it exists for parity and comparison. Low frequencies are at the bottom in both.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .config import PlotConfig


def _lut_file(name: str) -> Path | None:
    """Where the lookup table of colour map ``name`` is cached (None for a name unfit for a file)."""
    from importlib.metadata import version

    from .io import cache_dir

    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        return None
    return cache_dir("colormaps", f"matplotlib-{version('matplotlib')}") / f"{name}.npy"


def _make_lut(name: str) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps[name].resampled(256)
    return np.round(cmap(np.arange(256))[:, :3] * 255.0).astype(np.uint8)


@lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """The colour map as a uint8 lookup table [256, 3].

    Made with matplotlib once per matplotlib version and kept in deepfeat's cache folder
    (:func:`deepfeat.io.cached_array`), so later runs read a file instead of importing matplotlib.
    """
    from .io import cached_array

    return cached_array(_lut_file(name), lambda: _make_lut(name), (256, 3), np.uint8)


def _unit(db: np.ndarray, clip_db: float) -> np.ndarray:
    """dB in [clip_db, 0] → [0, 1]."""
    return np.clip((db - clip_db) / -clip_db, 0.0, 1.0)


_PIL_FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR}


def resize(plane: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Resize a float [h, w] plane to [H, W] (pixel-centre aligned, antialiased when shrinking),
    flipping it so row 0 is the highest band."""
    image = Image.fromarray(np.ascontiguousarray(plane[::-1], dtype=np.float32), mode="F")
    return np.asarray(image.resize((size[1], size[0]), _PIL_FILTERS[interpolation]))


def render_fast(db: np.ndarray, config: PlotConfig) -> np.ndarray:
    """Clipped dB spectrogram [n_mels, frames] → colour-mapped uint8 image [H, W, 3]."""
    unit = resize(_unit(db, config.mel.clip_db), config.size, config.interpolation)
    index = np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)
    return np.take(colormap_lut(config.colormap), index, axis=0)


def render_mel3(planes: list[np.ndarray], config: PlotConfig) -> np.ndarray:
    """Three clipped dB spectrograms (any frame counts) → uint8 image [H, W, 3], one per channel."""
    channels = [resize(_unit(p, config.mel.clip_db), config.size, config.interpolation) for p in planes]
    return np.clip(np.round(np.stack(channels, axis=-1) * 255.0), 0, 255).astype(np.uint8)


def render_matplotlib(db: np.ndarray, config: PlotConfig) -> np.ndarray:
    """The same picture drawn as a borderless matplotlib figure of ``config.size`` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = config.size
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(db, origin="lower", aspect="auto", cmap=config.colormap, vmin=config.mel.clip_db, vmax=0.0,
              interpolation=config.interpolation, interpolation_stage="data")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def render(db: np.ndarray, config: PlotConfig) -> np.ndarray:
    """Render with the configured renderer (``config.renderer``)."""
    if config.renderer == "matplotlib":
        return render_matplotlib(db, config)
    return render_fast(db, config)


def save_png(image: np.ndarray, path) -> None:
    """Write a uint8 [H, W, 3] image as PNG."""
    Image.fromarray(image).save(path)


def spectrogram_image(samples, config: PlotConfig) -> np.ndarray:
    """Mono audio at ``config.mel.sample_rate`` → the configured image, uint8 [H, W, 3]."""
    from .spectrogram import log_mel, mel3_stack

    if config.colormap == "mel3":
        return render_mel3(mel3_stack(samples, config.mel), config)
    return render(log_mel(samples, config.mel), config)
