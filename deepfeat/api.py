"""deepfeat from Python in one call: embeddings of audio files or arrays, and feature stores as
arrays or pandas frames.

>>> import deepfeat
>>> X = deepfeat.embed(["dog.wav", "rain.wav"])                 # [2, 1280] EfficientNet-Lite0
>>> X = deepfeat.embed(samples, sr=16000, network="birdnet")     # a 1-D array: resampled to 48 kHz
>>> feats, starts = deepfeat.embed_frames("dog.wav", window=(1.0, 0.5))  # one row per window

The network is the one ``deepfeat extract`` builds (:func:`deepfeat.extract.make_extractor`):
the same front end (decode, resample, pad/crop, windows, mel image or waveform windows) and the
same network, so a row equals the store row ``deepfeat extract`` writes for that clip. It is
loaded on first use and kept: later calls with the same settings reuse it
(:func:`load_extractor`).
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import AudioError, ConfigError

if TYPE_CHECKING:
    from .config import PlotConfig
    from .extractors.base import Extractor
    from .store import FeatureSet

DEFAULT_NETWORK = "efficientnet_lite0"  #: the network whose ImageNet weights ship with deepfeat
CLIPS_PER_CALL = 32  #: inputs whose model inputs go to the network together


def load_extractor(network: str = DEFAULT_NETWORK, *, weights: str | None = None, layer: str | None = None,
                   plot: PlotConfig | None = None, window: tuple[float, float] | None = None,
                   batch_size: int | None = None, device: str | None = None) -> Extractor:
    """The extractor ``network``, built as ``deepfeat extract`` builds it and loaded; cached, so
    the same arguments return the same (already loaded) object.

    Parameters
    ----------
    network : str
        A registered network (``deepfeat extract --list``), default EfficientNet-Lite0.
    weights : str, optional
        A ``-w`` value: ``imagenet``, ``none`` (fixed-seed random initialisation), an audio
        model's weights name, or a checkpoint path; default: the network's own default.
    layer : str, optional
        The layer read (default: the network's penultimate layer or embedding).
    plot : PlotConfig, optional
        The front end (mel, colour map, image; ``duration``); default ``PlotConfig()``, as the CLI.
        Audio models use only its ``duration`` and ``segment``.
    window : (float, float), optional
        ``(window, hop)`` seconds: cut each input into windows, as ``extract -t WIN HOP``
        (overrides ``plot.segment``).
    batch_size : int, optional
        Model inputs per forward pass (default: the network's choice for the device).
    device : str, optional
        ``cpu``, ``cuda``, ... (default: CUDA when available).

    Returns
    -------
    Extractor
        ``extractor.sample_rate`` (Hz), ``extractor.dim`` (features per row), ``frontend``, ``embed``.
    """
    from .config import PlotConfig

    plot = plot or PlotConfig()
    if window is not None:
        window = tuple(float(v) for v in window)
        if len(window) != 2 or min(window) <= 0:
            raise ConfigError(f"window must be (window, hop) in positive seconds, got {window!r}")
        plot = dataclasses.replace(plot, segment=window)
    return _loaded_extractor(network, weights, layer, plot, batch_size, device)


@functools.lru_cache(maxsize=8)
def _loaded_extractor(network, weights, layer, plot, batch_size, device) -> Extractor:
    from .extract import make_extractor

    extractor = make_extractor(network, weights=weights, plot=plot, layer=layer, device=device)
    if batch_size is not None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be a positive number of model inputs, got {batch_size}")
        if hasattr(extractor, "batch_size"):
            extractor.batch_size = int(batch_size)
    extractor.load()
    return extractor


load_extractor.cache_clear = _loaded_extractor.cache_clear  # type: ignore[attr-defined]


def _is_one_input(inputs) -> bool:
    """A path, or one 1-D array (numpy, torch, anything with ``__array__``)."""
    if isinstance(inputs, (str, Path)):
        return True
    return not isinstance(inputs, (list, tuple)) and hasattr(inputs, "__array__") and np.ndim(inputs) == 1


def _as_inputs(inputs) -> list:
    """``inputs`` as a list of paths and 1-D arrays; a 2-D array is refused (ambiguous)."""
    if _is_one_input(inputs):
        return [inputs]
    if hasattr(inputs, "__array__") and np.ndim(inputs) >= 2:
        raise ConfigError(f"a {np.ndim(inputs)}-D array of shape {np.shape(inputs)} is ambiguous: pass one 1-D array "
                          "(mono samples), or a list of them (mix channels first, e.g. x.mean(axis=1))")
    return list(inputs)


def _audio(item, rate: int, sr: int | None, index: int) -> np.ndarray:
    """One input as mono float32 samples at ``rate`` Hz."""
    from .audio import load_audio, resample

    if isinstance(item, (str, Path)):
        return load_audio(item, rate)[0]
    if hasattr(item, "detach"):  # a torch tensor
        item = item.detach().cpu().numpy()
    samples = np.asarray(item, dtype=np.float32)
    if samples.ndim != 1:
        raise ConfigError(f"input {index}: expected a path or 1-D mono samples, got an array of shape {samples.shape}; "
                          "mix channels first (e.g. x.mean(axis=1))")
    if sr is None:
        raise ConfigError(f"input {index} is an array: pass its sample rate, e.g. sr=16000 "
                          f"(it is resampled to the network's {rate} Hz)")
    if samples.size == 0 or not np.isfinite(samples).all():
        raise AudioError(f"input {index}: {'no samples' if samples.size == 0 else 'NaN or infinite samples'}")
    return resample(samples, int(sr), rate)


def _prepared(samples: np.ndarray, extractor: Extractor) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Samples → (model inputs of every segment, inputs per segment, segment starts in seconds),
    as the extract stage's front end (:class:`deepfeat.extract.ClipFrontend`) prepares a clip."""
    from .audio import segments

    pieces, starts = segments(samples, extractor.sample_rate, extractor.duration, extractor.segment)
    parts = [extractor.frontend(piece) for piece in pieces]
    return np.concatenate(parts), [len(p) for p in parts], starts


def segment_features(inputs, extractor: Extractor, sr: int | None = None,
                     progress: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Features of ``inputs`` (as :func:`embed` takes them) through a loaded ``extractor``: per
    input, (features float32 [n_segments, D], segment starts [n_segments] in seconds), a segment
    being the whole clip or each ``extractor.segment`` window; ``sr``: the rate of array inputs."""
    from tqdm import tqdm

    items = _as_inputs(inputs)
    out = []
    with tqdm(total=len(items), unit="clip", desc=f"embed {extractor.name}", disable=not progress) as bar:
        for first in range(0, len(items), CLIPS_PER_CALL):
            chunk = [_prepared(_audio(item, extractor.sample_rate, sr, first + i), extractor)
                     for i, item in enumerate(items[first:first + CLIPS_PER_CALL])]
            features = extractor.embed(np.concatenate([model_inputs for model_inputs, _, _ in chunk]))
            offset = 0
            for _, counts, starts in chunk:
                bounds = offset + np.cumsum([0, *counts])
                out.append((np.stack([features[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]),
                            np.asarray(starts, dtype=np.float64)))
                offset = bounds[-1]
            bar.update(len(chunk))
    return out


def embed(inputs, network: str = DEFAULT_NETWORK, *, weights: str | None = None, sr: int | None = None,
          layer: str | None = None, window: tuple[float, float] | None = None, plot: PlotConfig | None = None,
          batch_size: int | None = None, device: str | None = None, progress: bool = False) -> np.ndarray:
    """Features of each input, one row per input: the rows ``deepfeat extract`` writes.

    Parameters
    ----------
    inputs : path, 1-D array, or a list of them
        Audio files (decoded and resampled as the CLI does) or mono samples at ``sr`` Hz
        (a torch tensor works too).
    network : str
        A registered network (``deepfeat extract --list``); default EfficientNet-Lite0.
    weights, layer, plot, batch_size, device
        As :func:`load_extractor`.
    sr : int, optional
        Sample rate of array inputs, Hz; required for them (they are resampled to the network's rate).
    window : (float, float), optional
        ``(window, hop)`` seconds: each input's row is the mean over its windows' features
        (:func:`embed_frames` gives the windows' rows themselves).
    progress : bool
        A progress bar over the inputs.

    Returns
    -------
    ndarray
        float32 [n_inputs, dim].

    Raises
    ------
    AudioError
        A file cannot be decoded, or an array is empty or not finite.
    ConfigError
        An array without ``sr``, a 2-D array, an unknown network or layer.
    """
    extractor = load_extractor(network, weights=weights, layer=layer, plot=plot, window=window,
                               batch_size=batch_size, device=device)
    frames = segment_features(inputs, extractor, sr, progress)
    if not frames:
        return np.zeros((0, extractor.dim), np.float32)
    return np.stack([features.mean(axis=0) for features, _ in frames]).astype(np.float32, copy=False)


def embed_frames(inputs, network: str = DEFAULT_NETWORK, *, window: tuple[float, float] = (1.0, 0.5),
                 weights: str | None = None, sr: int | None = None, layer: str | None = None,
                 plot: PlotConfig | None = None, batch_size: int | None = None, device: str | None = None,
                 progress: bool = False):
    """Features of each window of each input: the rows of ``deepfeat extract -t WINDOW HOP``.

    Parameters
    ----------
    inputs : path, 1-D array, or a list of them
        As :func:`embed`.
    window : (float, float)
        ``(window, hop)`` seconds. A clip shorter than one window gives one zero-padded window.
    network, weights, sr, layer, plot, batch_size, device, progress
        As :func:`embed`.

    Returns
    -------
    (ndarray, ndarray) or list of them
        For one input: features float32 [n_windows, dim] and window start times float64
        [n_windows] in seconds; for a list: one such pair per input.
    """
    extractor = load_extractor(network, weights=weights, layer=layer, plot=plot, window=window,
                               batch_size=batch_size, device=device)
    frames = [(features.astype(np.float32, copy=False), starts)
              for features, starts in segment_features(inputs, extractor, sr, progress)]
    return frames[0] if _is_one_input(inputs) else frames


def load_features(path: str | Path) -> FeatureSet:
    """Read a feature store (``deepfeat extract``'s HDF5 file) into memory.

    Returns
    -------
    FeatureSet
        ``features`` [N, D], ``ids``/``label_names`` as ``str``, ``labels``, ``folds``,
        ``window_starts``; ``to_numpy()`` and ``to_pandas()`` (a frame indexed by
        ``(file, start, end)``). Raises :class:`~deepfeat.errors.StoreError` naming the file
        when it is not a complete store.
    """
    from .store import read_store

    return read_store(path)


__all__ = ["DEFAULT_NETWORK", "embed", "embed_frames", "load_extractor", "load_features"]
