"""Audio → image options shared by ``plot`` and ``extract``; builds the one :class:`PlotConfig`."""
from __future__ import annotations

import click

from deepfeat.config import CLIP_THRESHOLDS_DB, MEL_PRESETS, MelConfig, PlotConfig


def plot_options(f):
    options = [
        click.option("-c", "--colormap", default="magma", show_default=True,
                     help="Matplotlib colour map (viridis, magma, cividis, hot, gray, ...) or mel3 "
                          "(3-channel multi-resolution mel image)."),
        click.option("--preset", type=click.Choice(sorted(MEL_PRESETS)), default="fine", show_default=True,
                     help="Window/hop preset: paper 0.32/0.16 s, deepspectrum 256/128 samples at 44.1 kHz, fine 25/10 ms."),
        click.option("--window", type=float, default=None, help="Mel window length, seconds (overrides --preset)."),
        click.option("--hop", type=float, default=None, help="Mel hop, seconds (overrides --preset)."),
        click.option("--n-mels", type=int, default=128, show_default=True),
        click.option("--sample-rate", "-sr", type=int, default=44100, show_default=True, help="Resample to this rate, Hz."),
        click.option("--fmin", type=float, default=0.0, show_default=True, help="Hz."),
        click.option("--fmax", type=float, default=None, help="Hz (default: Nyquist)."),
        click.option("--clip-db", type=float, default=-60.0, show_default=True,
                     help=f"Floor below the maximum, dB (e.g. {', '.join(str(int(t)) for t in CLIP_THRESHOLDS_DB)})."),
        click.option("--duration", type=float, default=None, help="Pad or crop every clip to this many seconds."),
        click.option("-t", "--segment", type=(float, float), default=None, metavar="WIN HOP",
                     help="Cut clips into WIN-second windows every HOP seconds: one row (image) per window."),
        click.option("--renderer", type=click.Choice(["fast", "matplotlib"]), default="fast", show_default=True),
        click.option("--interpolation", type=click.Choice(["nearest", "bilinear"]), default="bilinear", show_default=True,
                     help="How the spectrogram is resized to the image."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


PLOT_KEYS = ("colormap", "preset", "window", "hop", "n_mels", "sample_rate", "fmin", "fmax", "clip_db", "duration",
             "segment", "renderer", "interpolation")


def plot_config_from(kwargs: dict, size: tuple[int, int] = (224, 224)) -> PlotConfig:
    """Pop the plot options out of ``kwargs`` and build the PlotConfig."""
    o = {k: kwargs.pop(k) for k in PLOT_KEYS}
    mel_overrides = {k: o[k] for k in ("n_mels", "sample_rate", "fmin", "fmax", "clip_db")}
    for k in ("window", "hop"):
        if o[k] is not None:
            mel_overrides[k] = o[k]
    mel = MelConfig.from_preset(o["preset"], **mel_overrides)
    return PlotConfig(mel=mel, duration=o["duration"], segment=tuple(o["segment"]) if o["segment"] else None,
                      colormap=o["colormap"], renderer=o["renderer"], size=size, interpolation=o["interpolation"])
