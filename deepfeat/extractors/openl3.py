"""OpenL3 embeddings in PyTorch: ``deepfeat extract DATA -n openl3 [-w env_mel128|...|none|PATH] [--layer 512|6144]``.

Audio is resampled to 48 kHz and cut into 1 s windows every :attr:`OpenL3Extractor.hop` seconds
(0.1 s, OpenL3's default). Whole clips are centred as in OpenL3 (half a window of zeros in front, so
window *i* is centred on *i*·hop s); a clip shorter than a window gives one zero-padded window.
A clip's (or ``-t`` segment's) row is the mean of its window embeddings; with ``-t 1 HOP`` every
window is its own row. ``--layer``: ``512`` (default) or ``6144``, the two pooling sizes of the
same network.

Weights: ``{env|music}_{linear|mel128|mel256}`` name the content type and input representation of
the pretrained model and resolve, through :mod:`deepfeat.weights`, to the torchopenl3 conversion of
the official OpenL3 Keras weights, ``torchopenl3_{repr}_{content}_512.pth.tar`` (a plain state dict;
the ``_6144`` files hold the same layers and load too, with ``-w PATH``). ``none`` is a fixed-seed
random initialisation (input representation ``mel128`` unless ``input_repr`` is given); a path is
any such state dict, its input representation read from its front-end buffers or file name.
The official Keras files (``openl3_audio_{repr}_{content}.h5`` in the ``openl3`` package) are not
read directly: use their torchopenl3 conversions.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..audio import frame_windows
from ..errors import ConfigError, WeightsError
from ..models.openl3 import CONTENT_TYPES, EMBEDDING_SIZES, INPUT_REPRS, SAMPLE_RATE, OpenL3, infer_input_repr, \
    openl3_state_dict
from ..weights import WeightsFile, register
from .base import TorchExtractor
from .registry import register_extractor

WINDOW_SECONDS = 1.0
_NAME_PATTERN = re.compile(r"(linear|mel128|mel256)_(env|music)")
_MODELS_URL = "https://github.com/torchopenl3/torchopenl3-models/raw/master/"

# One torchopenl3 file per content type and input representation (the _512 and _6144 files hold
# the same layers). Checksums not recorded. torchopenl3 downloads them into torch's hub cache,
# one of the folders searched.
for _content in CONTENT_TYPES:
    for _repr in INPUT_REPRS:
        _file = f"torchopenl3_{_repr}_{_content}_512.pth.tar"
        register(WeightsFile(name=f"openl3-{_content}_{_repr}", filename=_file, url=_MODELS_URL + _file,
                             licence="CC BY 4.0 (OpenL3 model weights)"))


@register_extractor("openl3")
class OpenL3Extractor(TorchExtractor):
    """48 kHz 1 s windows → OpenL3 → 512- or 6144-d embedding, mean over a clip's windows."""

    kind = "audio"
    default_weights = "env_mel128"
    sample_rate = SAMPLE_RATE
    input_seconds = WINDOW_SECONDS
    #: -w name → registry entry
    WEIGHTS = {f"{c}_{r}": f"openl3-{c}_{r}" for c in CONTENT_TYPES for r in INPUT_REPRS}
    checkpoint_hint = "a torchopenl3 checkpoint"
    DEFAULT_LAYER = "512"

    def __init__(self, name: str = "openl3", hop: float = 0.1, center: bool = True, input_repr: str | None = None,
                 content_type: str | None = None, batch_size: int = 32, **kwargs):
        super().__init__(name, **kwargs)
        self.layer = str(self.layer)
        if self.layer not in {str(s) for s in EMBEDDING_SIZES}:
            raise ConfigError(f"layer {self.layer!r} of {name}: choose 512 or 6144 (embedding dimension)")
        if hop <= 0:
            raise ConfigError(f"{name}: the window hop must be positive seconds, got {hop}")
        for value, allowed, what in ((input_repr, INPUT_REPRS, "input representation"),
                                     (content_type, CONTENT_TYPES, "content type")):
            if value is not None and value not in allowed:
                raise ConfigError(f"unknown OpenL3 {what} {value!r}; choose one of {', '.join(allowed)}")
        self.hop = float(hop)  #: seconds between window starts
        self.center = center  #: pad half a window in front of whole clips (not of -t segments)
        self.batch_size = batch_size
        self.input_repr, self.content_type = input_repr, content_type
        if self.weights in self.WEIGHTS:
            content, repr_ = self.weights.split("_")
            if (input_repr or repr_) != repr_ or (content_type or content) != content:
                raise ConfigError(f"-w {self.weights} is the {content} {repr_} model; drop the conflicting "
                                  f"input_repr/content_type ({input_repr}/{content_type})")
            self.input_repr, self.content_type = repr_, content
        elif self.weights == "none":
            self.input_repr = input_repr or "mel128"
            self.content_type = None
        self.model: OpenL3 | None = None

    @property
    def dim(self) -> int:
        return int(self.layer)

    def frontend(self, samples: np.ndarray) -> np.ndarray:
        """Audio at 48 kHz → windows [k, 48000] (centred for whole clips, see the module doc)."""
        if self.center and not self.segment:
            samples = np.pad(samples, (int(WINDOW_SECONDS * self.sample_rate) // 2, 0))
        return frame_windows(samples, self.sample_rate, WINDOW_SECONDS, self.hop)[0].astype(np.float32, copy=False)

    @property
    def network_label(self) -> str:
        return f"OpenL3 {self.input_repr}"

    def convert_checkpoint(self, state: dict, path) -> dict:
        if self.weights not in self.WEIGHTS:  # a path: what model is it?
            match = _NAME_PATTERN.search(Path(path).name)
            self.input_repr = self.input_repr or infer_input_repr(state) or (match and match.group(1))
            self.content_type = self.content_type or (match.group(2) if match else None)
            if self.input_repr is None:
                raise WeightsError(f"{path}: cannot tell its input representation (no front-end buffers, no "
                                   "linear/mel128/mel256 in its name); rename it like "
                                   "torchopenl3_mel128_env_512.pth.tar")
        try:
            return openl3_state_dict(state, self.input_repr)
        except ValueError as e:
            raise WeightsError(f"{path}: {e}; pass the {self.input_repr} checkpoint") from None

    def build_network(self, pretrained: bool) -> OpenL3:
        return OpenL3(self.input_repr, int(self.layer))

    def config(self) -> dict:
        return {**super().config(), "content_type": self.content_type, "input_repr": self.input_repr,
                "embedding_size": self.dim, "window_seconds": WINDOW_SECONDS, "hop": self.hop,
                "center": bool(self.center and not self.segment)}
