"""PANNs Cnn14 (AudioSet) embeddings: ``deepfeat extract DATA -n panns_cnn14 [-w audioset|none|PATH]``.

Audio is resampled to 32 kHz and cut into model inputs of :attr:`PannsCnn14Extractor.input_seconds`:
10 s by default (the AudioSet clip length the network was trained on, shorter clips zero-padded as in
its training), the clip length when ``--duration`` is given, or the segment length with ``-t``.
Several inputs of one clip (or segment) are embedded and mean-pooled. Layers: ``embedding``
(2048-d, ``fc1`` after ReLU; default) or ``scores`` (527 AudioSet class probabilities).

Weights: ``audioset`` is the official ``Cnn14_mAP=0.431.pth`` (Zenodo record 3987831, found by
:mod:`deepfeat.weights`), ``none`` a fixed-seed random initialisation, or a checkpoint path in the
official format (a dict whose ``model`` entry is the state dict).
"""
from __future__ import annotations

import numpy as np
import torch

from ..audio import frame_windows
from ..errors import ConfigError, WeightsError
from ..models.cnn14 import AUDIOSET_CLASSES, Cnn14, cnn14_state_dict
from ..weights import WeightsFile, register
from .base import TorchExtractor
from .registry import register_extractor

PANNS_LAYERS = {"embedding": 2048, "scores": AUDIOSET_CLASSES}

# The official AudioSet checkpoint (a dict whose "model" entry is the state dict). Its size and
# sha256 are not recorded (not verified by deepfeat): any file of that name is accepted.
register(WeightsFile(
    name="panns_cnn14-audioset", filename="Cnn14_mAP=0.431.pth",
    url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
    licence="see Zenodo record 3987831 (PANNs, Kong et al. 2020)",
    folders=("~/panns_data",),  # where panns_inference downloads it
))


@register_extractor("panns_cnn14")
class PannsCnn14Extractor(TorchExtractor):
    """32 kHz waveform windows → Cnn14 → 2048-d embedding (or 527 AudioSet probabilities)."""

    kind = "audio"
    default_weights = "audioset"
    sample_rate = 32000
    WEIGHTS = {"audioset": "panns_cnn14-audioset"}  #: -w name → registry entry
    checkpoint_hint = "a PANNs Cnn14 checkpoint (Cnn14_mAP=0.431.pth)"
    DEFAULT_LAYER = "embedding"

    def __init__(self, name: str = "panns_cnn14", window: float = 10.0, batch_size: int = 8, **kwargs):
        super().__init__(name, **kwargs)
        if self.layer not in PANNS_LAYERS:
            raise ConfigError(f"layer {self.layer!r} of {name}: choose embedding (2048-d) or scores "
                              "(527 AudioSet class probabilities)")
        self.window = float(window)  #: seconds of audio per model input without --duration/-t
        self.batch_size = batch_size
        if self.input_seconds * self.sample_rate < Cnn14.MIN_SAMPLES:
            raise ConfigError(f"{name} needs inputs of at least {Cnn14.MIN_SAMPLES / self.sample_rate:.2f} s, "
                              f"got {self.input_seconds} s; use longer segments or --duration")
        self.model: Cnn14 | None = None

    @property
    def input_seconds(self) -> float:
        """Length of one model input, seconds: the segment, else the clip duration, else the window."""
        if self.segment:
            return float(self.segment[0])
        return float(self.duration) if self.duration else self.window

    @property
    def dim(self) -> int:
        return PANNS_LAYERS[self.layer]

    def frontend(self, samples: np.ndarray) -> np.ndarray:
        """Audio at 32 kHz → inputs [k, input_seconds·32000]: one zero-padded input for a short
        clip, consecutive non-overlapping inputs (the last zero-padded) for a long one."""
        seconds = self.input_seconds
        return frame_windows(samples, self.sample_rate, seconds, seconds)[0].astype(np.float32, copy=False)

    def build_network(self, pretrained: bool) -> Cnn14:
        return Cnn14()

    def convert_checkpoint(self, state: dict, path) -> dict:
        try:
            return cnn14_state_dict(state)
        except ValueError as e:
            raise WeightsError(f"{path}: {e}; pass a PANNs Cnn14 (32 kHz) checkpoint") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return self.model.probabilities(y) if self.layer == "scores" else y

    def config(self) -> dict:
        return {**super().config(), "input_seconds": self.input_seconds,
                "frontend": {"n_fft": 1024, "hop": 320, "n_mels": 64, "fmin": 50.0, "fmax": 14000.0,
                             "log": "10*log10(max(mel power, 1e-10))"}}
