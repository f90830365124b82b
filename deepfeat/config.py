"""The one configuration object of the front end: audio, mel spectrogram and image parameters.

Every stage that turns audio into a mel spectrogram or an image (``plot``, ``extract``,
``crnn``) takes a :class:`PlotConfig`; its ``to_dict`` goes verbatim into each HDF5 store so a
store describes itself and a resumed run can refuse a different configuration.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from .errors import ConfigError

# Named window/hop presets in seconds.
MEL_PRESETS: dict[str, tuple[float, float]] = {
    # Amiriparian et al. 2020: 0.32 s Hann windows overlapping by 0.16 s.
    "paper": (0.32, 0.16),
    # DeepSpectrum's default plotting: 256-sample FFT windows, 128-sample hop, at 44.1 kHz.
    "deepspectrum": (256 / 44100, 128 / 44100),
    # Common speech/sound-event framing: 25 ms windows every 10 ms.
    "fine": (0.025, 0.010),
}
# The 3-channel multi-resolution image: (window, hop) in seconds for the R, G and B channels.
MEL3_RESOLUTIONS: tuple[tuple[float, float], ...] = ((0.025, 0.010), (0.050, 0.025), (0.100, 0.050))
CLIP_THRESHOLDS_DB = (-30.0, -45.0, -60.0, -80.0)
#: matplotlib's built-in colour maps (each also reversed as NAME_r), accepted without importing
#: matplotlib (which takes a good part of a second); other names are looked up in matplotlib's registry.
BUILTIN_COLORMAPS = frozenset((
    "Accent", "Blues", "BrBG", "BuGn", "BuPu", "CMRmap", "Dark2", "GnBu", "Grays", "Greens", "Greys", "OrRd",
    "Oranges", "PRGn", "Paired", "Pastel1", "Pastel2", "PiYG", "PuBu", "PuBuGn", "PuOr", "PuRd", "Purples", "RdBu",
    "RdGy", "RdPu", "RdYlBu", "RdYlGn", "Reds", "Set1", "Set2", "Set3", "Spectral", "Wistia", "YlGn", "YlGnBu",
    "YlOrBr", "YlOrRd", "afmhot", "autumn", "binary", "bone", "brg", "bwr", "cividis", "cool", "coolwarm",
    "copper", "cubehelix", "flag", "gist_earth", "gist_gray", "gist_heat", "gist_ncar", "gist_rainbow",
    "gist_stern", "gist_yarg", "gnuplot", "gnuplot2", "gray", "hot", "hsv", "inferno", "jet", "magma",
    "nipy_spectral", "ocean", "pink", "plasma", "prism", "rainbow", "seismic", "spring", "summer", "tab10",
    "tab20", "tab20b", "tab20c", "terrain", "turbo", "twilight", "twilight_shifted", "viridis", "winter",
))

#: the augmentations of trained stages (``--augment``; :mod:`deepfeat.augment` implements them)
AUGMENTATION_NAMES = ("stretch", "pitch", "noise", "specaugment", "patch", "mixup")


def is_colormap(name: str) -> bool:
    """Whether ``name`` is a matplotlib colour map (built-in ones without importing matplotlib)."""
    if name in BUILTIN_COLORMAPS or (name.endswith("_r") and name[:-2] in BUILTIN_COLORMAPS):
        return True
    import matplotlib

    return name in matplotlib.colormaps


@dataclass(frozen=True)
class MelConfig:
    """Log-mel spectrogram parameters (seconds, Hz, dB)."""

    sample_rate: int = 44100  #: Hz; audio is resampled to this rate once per clip
    n_mels: int = 128
    window: float = 0.025  #: Hann window length, seconds (the "fine" preset)
    hop: float = 0.010  #: hop between frames, seconds
    fmin: float = 0.0  #: Hz
    fmax: float | None = None  #: Hz; None = Nyquist
    clip_db: float = -60.0  #: floor in dB relative to the clip's maximum (0 dB)

    def __post_init__(self):
        if self.clip_db >= 0:
            raise ConfigError(f"clip_db must be negative dB below the maximum, got {self.clip_db}")
        if self.window <= 0 or self.hop <= 0:
            raise ConfigError(f"window and hop must be positive seconds, got {self.window}, {self.hop}")
        if self.sample_rate <= 0 or self.n_mels <= 0:
            raise ConfigError("sample_rate and n_mels must be positive")

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "MelConfig":
        if preset not in MEL_PRESETS:
            raise ConfigError(f"unknown mel preset {preset!r}; choose one of {', '.join(MEL_PRESETS)}")
        window, hop = MEL_PRESETS[preset]
        return cls(**{"window": window, "hop": hop, **overrides})


@dataclass(frozen=True)
class PlotConfig:
    """Audio → image parameters: clip length or windows, mel settings, colour map and renderer.

    Defaults (fine preset, -60 dB floor, magma, bilinear resize) were chosen by development-fold
    accuracy on ESC-10 with EfficientNet-Lite0 (results/esc10/plot-sweep.md)."""

    mel: MelConfig = field(default_factory=MelConfig)
    duration: float | None = None  #: pad/crop every clip to this many seconds; None keeps lengths
    segment: tuple[float, float] | None = None  #: (window, hop) seconds: one image per window
    colormap: str = "magma"  #: any matplotlib colour map, or "mel3"
    renderer: str = "fast"  #: "fast" (array lookup) or "matplotlib" (figure, DeepSpectrum-like)
    size: tuple[int, int] = (224, 224)  #: image (height, width) in pixels
    interpolation: str = "bilinear"  #: resize of the spectrogram to the image: "nearest" or "bilinear"

    def __post_init__(self):
        if self.renderer not in ("fast", "matplotlib"):
            raise ConfigError(f"unknown renderer {self.renderer!r}; choose fast or matplotlib")
        if self.interpolation not in ("nearest", "bilinear"):
            raise ConfigError(f"unknown interpolation {self.interpolation!r}; choose nearest or bilinear")
        if self.duration is not None and not self.duration > 0:
            raise ConfigError(f"duration must be positive seconds, got {self.duration}")
        if self.segment is not None and not (len(self.segment) == 2 and min(self.segment) > 0):
            raise ConfigError(f"windows (-t WIN HOP) must be two positive durations in seconds, got {self.segment}")
        if not (len(self.size) == 2 and min(self.size) > 0):
            raise ConfigError(f"image size must be two positive pixel counts (height, width), got {self.size}")
        if self.colormap != "mel3" and not is_colormap(self.colormap):
            raise ConfigError(f"unknown colour map {self.colormap!r}; use a matplotlib colour map "
                              "(viridis, magma, cividis, hot, gray, ...) or mel3")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PlotConfig":
        d = dict(d)
        d["mel"] = MelConfig(**d.get("mel", {}))
        for key in ("segment", "size"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


DEFAULT_PRESET = "fine"  #: the window/hop preset of :class:`MelConfig`'s defaults


def plot_config(preset: str = DEFAULT_PRESET, window: float | None = None, hop: float | None = None,
                **settings) -> PlotConfig:
    """A :class:`PlotConfig` from flat settings, as the ``plot``/``extract`` options give them.

    Parameters
    ----------
    preset : str
        A key of :data:`MEL_PRESETS` giving the mel window and hop (seconds).
    window, hop : float, optional
        Seconds; override the preset's.
    **settings
        Any field of :class:`MelConfig` (``n_mels``, ``sample_rate``, ``fmin``, ``fmax``,
        ``clip_db``) or of :class:`PlotConfig` (``duration``, ``segment``, ``colormap``, ``renderer``,
        ``interpolation``, ``size``); None leaves a field at its default.
    """
    mel_fields = {f.name for f in dataclasses.fields(MelConfig)}
    plot_fields = {f.name for f in dataclasses.fields(PlotConfig)} - {"mel"}
    unknown = set(settings) - mel_fields - plot_fields
    if unknown:
        raise ConfigError(f"unknown plot setting(s) {', '.join(sorted(unknown))}")
    given = {k: v for k, v in settings.items() if v is not None}
    mel = MelConfig.from_preset(preset, **{k: v for k, v in given.items() if k in mel_fields},
                                **{k: v for k, v in (("window", window), ("hop", hop)) if v is not None})
    plot = {k: tuple(v) if k in ("segment", "size") else v for k, v in given.items() if k in plot_fields}
    return PlotConfig(mel=mel, **plot)


def field_default(cls, name: str):
    """The default of dataclass field ``name`` of ``cls`` (read without instantiating ``cls``)."""
    field_ = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field_.default_factory is not dataclasses.MISSING:
        return field_.default_factory()
    return field_.default


def canonical_json(obj) -> str:
    """JSON with sorted keys and tuples as lists: equal configurations give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
