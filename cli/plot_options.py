"""Audio → image options shared by ``plot`` and ``extract``; defaults are the library's
(:class:`~deepfeat.config.MelConfig`, :class:`~deepfeat.config.PlotConfig`), the config is built by
:func:`deepfeat.config.plot_config`."""
from __future__ import annotations

import click

from deepfeat.config import (
    CLIP_THRESHOLDS_DB, DEFAULT_PRESET, MEL_PRESETS, MelConfig, PlotConfig, field_default, plot_config,
)

_MEL = MelConfig()


class Fmax(click.ParamType):
    """``--fmax``: Hz, or ``auto`` (the lowest Nyquist frequency of the dataset's audio)."""

    name = "HZ|auto"

    def convert(self, value, param, ctx):
        if value is None or value == "auto" or isinstance(value, float):
            return value
        try:
            hz = float(value)
        except ValueError:
            hz = -1.0
        if not hz > 0:
            self.fail(f"{value!r} is neither a positive frequency in Hz nor auto", param, ctx)
        return hz


def plot_options(f):
    options = [
        click.option("-c", "--colormap", default=field_default(PlotConfig, "colormap"), show_default=True,
                     help="Matplotlib colour map (viridis, magma, cividis, hot, gray, ...) or mel3 "
                          "(3-channel multi-resolution mel image)."),
        click.option("--preset", type=click.Choice(sorted(MEL_PRESETS)), default=DEFAULT_PRESET, show_default=True,
                     help="Window/hop preset: paper 0.32/0.16 s, deepspectrum 256/128 samples at 44.1 kHz, fine 25/10 ms."),
        click.option("--window", type=float, default=None, help="Mel window length, seconds (overrides --preset)."),
        click.option("--hop", type=float, default=None, help="Mel hop, seconds (overrides --preset)."),
        click.option("--n-mels", type=int, default=_MEL.n_mels, show_default=True),
        click.option("--sample-rate", "-sr", type=int, default=_MEL.sample_rate, show_default=True,
                     help="Resample to this rate, Hz."),
        click.option("--fmin", type=float, default=_MEL.fmin, show_default=True, help="Hz."),
        click.option("--fmax", type=Fmax(), default=_MEL.fmax,
                     help="Hz (default: Nyquist); auto: the lowest Nyquist frequency of the dataset's audio, so "
                          "clips sampled below --sample-rate fill the image."),
        click.option("--clip-db", type=float, default=_MEL.clip_db, show_default=True,
                     help=f"Floor below the maximum, dB (e.g. {', '.join(str(int(t)) for t in CLIP_THRESHOLDS_DB)})."),
        click.option("--duration", type=float, default=field_default(PlotConfig, "duration"),
                     help="Pad or crop every clip to this many seconds."),
        click.option("-t", "--segment", type=(float, float), default=field_default(PlotConfig, "segment"),
                     metavar="WIN HOP", help="Cut clips into WIN-second windows every HOP seconds: one row (image) "
                                             "per window."),
        click.option("--renderer", type=click.Choice(["fast", "matplotlib"]), default=field_default(PlotConfig, "renderer"),
                     show_default=True),
        click.option("--interpolation", type=click.Choice(["nearest", "bilinear"]),
                     default=field_default(PlotConfig, "interpolation"), show_default=True,
                     help="How the spectrogram is resized to the image."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


PLOT_KEYS = ("colormap", "preset", "window", "hop", "n_mels", "sample_rate", "fmin", "fmax", "clip_db", "duration",
             "segment", "renderer", "interpolation")


def plot_config_from(kwargs: dict, manifest=None, **extra) -> PlotConfig:
    """Pop the plot options out of ``kwargs`` and build the PlotConfig (``extra``: e.g. ``size``);
    ``--fmax auto`` is resolved from the native rates of ``manifest``'s files."""
    settings = {k: kwargs.pop(k) for k in PLOT_KEYS}
    if settings["fmax"] == "auto":
        from deepfeat.audio import auto_fmax, native_rates

        settings["fmax"] = auto_fmax(native_rates(c.path for c in manifest.clips), settings["sample_rate"])
    return plot_config(**settings, **extra)
