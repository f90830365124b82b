"""The HEAR 2021 API (https://hearbenchmark.com/hear-api.html) for any deepfeat network.

>>> from deepfeat import hear
>>> model = hear.load_model(network="birdnet")              # a torch module
>>> scene = hear.get_scene_embeddings(audio, model)          # [n_sounds, model.scene_embedding_size]
>>> frames, ms = hear.get_timestamp_embeddings(audio, model) # [n_sounds, n_frames, D], [n_sounds, n_frames]

``audio`` is a float tensor [n_sounds, n_samples] at ``model.sample_rate`` Hz (the network's own
rate: 44100 for the image CNNs' default front end, 48000 for BirdNET and OpenL3, 32000 for PANNs).

* Scene embeddings are the rows ``deepfeat extract`` writes for whole clips (:func:`deepfeat.embed`).
* Timestamp embeddings: the sound is cut into windows of ``window`` seconds every ``hop``
  seconds, centred on the timestamps 0, hop, 2·hop, … ≤ the sound's length (half a window of
  zeros is padded at each end); each window is embedded as a clip. Timestamps are in
  milliseconds and computed from the window index (no rounding drift over long sounds).
  ``window`` defaults to the network's own input length (BirdNET 3 s, OpenL3 1 s, PANNs 10 s),
  1 s for the image CNNs; ``hop`` to 50 ms, HEAR's suggestion.

The HEAR tools call ``load_model(model_file_path)``; options go in as keyword arguments
(hear-eval-kit's ``--model-options '{"network": "birdnet"}'``). ``model_file_path`` is a
checkpoint (``-w PATH``) and wins over ``weights``.
"""
from __future__ import annotations

import numpy as np
import torch

from .api import DEFAULT_NETWORK, load_extractor, segment_features
from .errors import ConfigError

DEFAULT_HOP = 0.05  #: seconds between timestamp embeddings
DEFAULT_WINDOW = 1.0  #: seconds, for networks without an input length of their own


class HearModel(torch.nn.Module):
    """A deepfeat extractor behind the HEAR model attributes. It holds no parameters of its own
    (``.to(device)`` is a no-op): the extractor runs where ``load_model``'s ``device`` put it."""

    def __init__(self, extractor, window: float, hop: float):
        super().__init__()
        self.extractor = extractor
        self.sample_rate = int(extractor.sample_rate)  #: Hz, of the audio the model takes
        self.scene_embedding_size = int(extractor.dim)
        self.timestamp_embedding_size = int(extractor.dim)
        self.window = float(window)  #: seconds of audio per timestamp embedding
        self.hop = float(hop)  #: seconds between timestamps

    def extra_repr(self) -> str:
        ex = self.extractor
        return (f"network={ex.name}, weights={ex.weights}, layer={ex.layer}, sample_rate={self.sample_rate}, "
                f"dim={self.scene_embedding_size}, window={self.window}, hop={self.hop}")


def load_model(model_file_path: str = "", network: str = DEFAULT_NETWORK, weights: str | None = None,
               layer: str | None = None, window: float | None = None, hop: float = DEFAULT_HOP,
               device: str | None = None, **extract_options) -> HearModel:
    """The HEAR model of ``network``.

    Parameters
    ----------
    model_file_path : str
        A checkpoint of ``network`` (as ``-w PATH``); empty: ``weights``.
    network, weights, layer, device
        As :func:`deepfeat.load_extractor`; ``weights`` defaults to the network's own.
    window, hop : float
        Seconds of audio per timestamp embedding and between timestamps (module docstring).
    **extract_options
        ``plot`` or ``batch_size``, passed to :func:`deepfeat.load_extractor`.
    """
    extractor = load_extractor(network, weights=model_file_path or weights, layer=layer, device=device,
                               **extract_options)
    window = window or getattr(extractor, "input_seconds", None) or DEFAULT_WINDOW
    if window <= 0 or hop <= 0:
        raise ConfigError(f"window and hop must be positive seconds, got {window}, {hop}")
    return HearModel(extractor, window, hop)


def _sounds(audio) -> list[np.ndarray]:
    if not isinstance(audio, torch.Tensor) or audio.ndim != 2:
        raise ConfigError(f"audio must be a tensor [n_sounds, n_samples], got {getattr(audio, 'shape', type(audio))}")
    return list(audio.detach().to("cpu", torch.float32).numpy())


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """One embedding per sound: float32 [n_sounds, model.scene_embedding_size] (on ``audio``'s device)."""
    frames = segment_features(_sounds(audio), model.extractor, model.sample_rate)
    scene = np.stack([features.mean(axis=0) for features, _ in frames]).astype(np.float32)
    return torch.from_numpy(scene).to(audio.device)


def timestamp_windows(samples: np.ndarray, rate: int, window: float, hop: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``window`` seconds centred every ``hop`` seconds from 0 to the end of ``samples``.

    Returns windows float32 [n, round(window·rate)] (half a window of zeros padded at each end)
    and their centres in milliseconds [n]; window ``i`` starts at sample ``round(i·hop·rate)``,
    so positions do not drift however long the sound."""
    width = int(round(window * rate))
    n = int(np.floor(len(samples) / (hop * rate) + 1e-9)) + 1
    padded = np.pad(np.asarray(samples, np.float32), (width // 2, width - width // 2))
    starts = np.round(np.arange(n) * hop * rate).astype(np.int64)
    return padded[starts[:, None] + np.arange(width)[None, :]], np.round(np.arange(n) * hop * 1000.0, 6)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings at regular timestamps: float32 [n_sounds, n_frames, model.timestamp_embedding_size]
    and the timestamps in milliseconds [n_sounds, n_frames] (window centres; module docstring)."""
    sounds = _sounds(audio)
    windows = [timestamp_windows(s, model.sample_rate, model.window, model.hop) for s in sounds]
    flat = [w for sound_windows, _ in windows for w in sound_windows]
    rows = np.stack([features.mean(axis=0) for features, _ in
                     segment_features(flat, model.extractor, model.sample_rate)]).astype(np.float32)
    n = len(windows[0][1]) if windows else 0
    embeddings = torch.from_numpy(rows.reshape(len(sounds), n, -1))
    timestamps = torch.from_numpy(np.stack([t for _, t in windows]) if windows else np.zeros((0, 0)))
    return embeddings.to(audio.device), timestamps.to(audio.device, torch.float32)


__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model", "timestamp_windows"]
