"""Extractor base class and registry.

An extractor turns mono audio into feature vectors in two halves: :meth:`Extractor.frontend`
(audio → model inputs: images, mel patches or waveform windows), which runs in worker processes
and never touches the network, and :meth:`Extractor.embed` (model inputs → features), which runs
batched in the main process on the chosen device. The pipeline in :mod:`deepfeat.extract` wires
them. A subclass registered with :func:`~deepfeat.extractors.registry.register_extractor` is
reachable as ``deepfeat extract -n NAME``; it states its :attr:`Extractor.kind`, its
:attr:`Extractor.default_weights` and its ``-w`` names (:meth:`Extractor.weights_names`).
"""
from __future__ import annotations

import abc
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import ConfigError, WeightsError

@contextmanager
def seeded(seed: int):
    """Fixed-seed random initialisation that leaves the global RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def row_batches(inputs: np.ndarray, batch_size: int):
    """Yield consecutive slices of at most ``batch_size`` rows."""
    for start in range(0, len(inputs), batch_size):
        yield inputs[start:start + batch_size]


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        try:
            return torch.device(device)
        except RuntimeError:
            raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:1, mps ...") from None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Extractor(abc.ABC):
    """Base class: audio at :attr:`sample_rate` → model inputs (worker) → features (main).

    A subclass states, as class attributes, what ``deepfeat extract --list`` shows and what the
    feature store records: :attr:`kind`, :attr:`default_weights`, :attr:`WEIGHTS` (or
    :meth:`weights_names` when they depend on the network name) and :attr:`random_init`.
    """

    #: "image" (CNNs on spectrogram images) or "audio" (audio-pretrained models); every subclass states it
    kind: ClassVar[str]
    #: the ``-w`` value used when none is given
    default_weights: ClassVar[str]
    #: ``-w`` names → entries of the weights registry (:mod:`deepfeat.weights`)
    WEIGHTS: ClassVar[dict[str, str]] = {}
    #: whether ``-w none`` (fixed-seed random initialisation) exists for this network
    random_init: ClassVar[bool] = True
    #: the layer read when ``--layer`` is not given (see :meth:`default_layer`)
    DEFAULT_LAYER: ClassVar[str | None] = None

    @classmethod
    def default_layer(cls, network: str) -> str | None:
        """The layer ``network`` reads when none is given."""
        return cls.DEFAULT_LAYER

    #: the :class:`~deepfeat.config.PlotConfig` settings the front end reads; None: every one for
    #: an image network, only the clip length and windows (duration, segment) for an audio model
    plot_settings: ClassVar[frozenset[str] | None] = None

    @classmethod
    def ignored_settings(cls, plot) -> list[str]:
        """Settings of ``plot`` (a :class:`~deepfeat.config.PlotConfig`) that differ from the
        defaults but that this front end never reads, by their ``plot``/``extract`` option names."""
        from ..config import PlotConfig

        read = cls.plot_settings
        if read is None and cls.kind == "image":
            return []
        read = read if read is not None else {"duration", "segment"}
        default = PlotConfig()
        pairs = [(name, getattr(plot.mel, name), getattr(default.mel, name)) for name in vars(default.mel)]
        pairs += [(name, getattr(plot, name), getattr(default, name)) for name in vars(default)
                  if name not in ("mel", "size")]
        return ["--" + name.replace("_", "-") for name, value, standard in pairs
                if value != standard and name not in read]

    @classmethod
    def weights_names(cls, network: str) -> dict[str, str]:
        """``-w`` names of ``network`` → entries of the weights registry."""
        return dict(cls.WEIGHTS)

    @classmethod
    def weights_choices(cls, network: str) -> list[str]:
        """Everything ``-w`` accepts for ``network``: its names, ``none`` where available, ``PATH``."""
        return [*cls.weights_names(network), *(["none"] if cls.random_init else []), "PATH"]

    def __init__(self, name: str, weights: str | None = None, layer: str | None = None,
                 duration: float | None = None, segment: tuple[float, float] | None = None,
                 device: str | None = None, precision: str = "auto", seed: int = 0):
        self.name = name
        self.weights = weights or self.default_weights
        if self.weights == "none" and not self.random_init:
            raise ConfigError(f"{name} exists only as a trained model: random initialisation (-w none) is not "
                              f"available; use -w {self.default_weights} or the path of its model file")
        self.layer = layer or self.default_layer(name)
        self.duration = duration  #: seconds to pad/crop each clip to (None: as is)
        self.segment = segment  #: (window, hop) seconds: one feature row per window
        self.device = pick_device(device)
        self.precision = precision
        self.seed = seed
        self.weights_sha256: str | None = None  #: set by load()

    #: Hz; audio is resampled to this rate before :meth:`frontend`
    sample_rate: int = 44100
    #: seconds of audio one model input covers, for networks with a fixed input length (None: any)
    input_seconds: float | None = None

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Feature dimension D."""

    @abc.abstractmethod
    def frontend(self, samples: np.ndarray) -> np.ndarray:
        """Mono float32 audio at :attr:`sample_rate` → model inputs stacked on axis 0 ([k, ...]).

        Several inputs (k > 1) for one segment are embedded and mean-pooled into one row.
        Runs in worker processes: no network, no CUDA."""

    @property
    def max_frequency(self) -> float:
        """Highest frequency (Hz) the features analyse: the Nyquist frequency of
        :attr:`sample_rate`, unless the front end stops lower."""
        return self.sample_rate / 2

    @property
    def is_loaded(self) -> bool:
        """Whether :meth:`load` has built the network (so it is not built twice)."""
        return getattr(self, "model", None) is not None

    @abc.abstractmethod
    def load(self) -> None:
        """Build the network on :attr:`device` and load its weights; sets :attr:`weights_sha256`."""

    def resolve_weights(self) -> Path | None:
        """Find the weights file ``-w`` names and set :attr:`weights_sha256`, without building the
        network (a store's identity needs the checksum before the network loads).

        Returns
        -------
        Path or None
            The file; None for random initialisation (``-w none``) or a network without one.
        """
        return None

    def warm_frontend(self) -> None:
        """Run :meth:`frontend` once on silence, so that its imports and cached tables (mel
        filterbank, colour map) are made in this process before front-end workers fork from it."""
        seconds = self.segment[0] if self.segment else (self.duration or 1.0)
        self.frontend(np.zeros(max(1, int(round(seconds * self.sample_rate))), np.float32))

    @abc.abstractmethod
    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """Model inputs [k, ...] → float32 features [k, D] (main process, batched)."""

    def embed_many(self, parts: list[np.ndarray]) -> np.ndarray:
        """The inputs of several segments (each [k_i, ...], as :meth:`frontend` made them) →
        features [sum k_i, D], in order."""
        return self.embed(np.concatenate(parts))

    def config(self) -> dict:
        """Everything that determines the features (stored in the HDF5 ``config`` attribute)."""
        return {"network": self.name, "kind": self.kind, "layer": self.layer, "weights": self.weights,
                "sample_rate": self.sample_rate, "duration": self.duration,
                "segment": list(self.segment) if self.segment else None, "seed": self.seed}

    @property
    def use_half(self) -> bool:
        """float16 on CUDA unless precision is forced to fp32 (CPU always float32)."""
        return self.device.type == "cuda" and self.precision in ("auto", "fp16")


class TorchExtractor(Extractor):
    """An extractor whose network is a torch module: ``-w`` resolution through the weights
    registry, fixed-seed construction (``-w none``), checkpoint loading with a clear error."""

    #: what to pass instead when a checkpoint does not fit, for the error message
    checkpoint_hint: ClassVar[str] = "a checkpoint of this network"

    @abc.abstractmethod
    def build_network(self, pretrained: bool) -> torch.nn.Module:
        """The architecture, randomly initialised (under :func:`seeded`); ``pretrained``: weights follow."""

    def convert_checkpoint(self, state: dict, path: Path) -> dict:
        """Map an official checkpoint's state dict onto :meth:`build_network`'s parameter names."""
        return state

    @property
    def network_label(self) -> str:
        return self.name

    def resolve_weights(self) -> Path | None:
        from .. import weights as registry

        if self.weights == "none":
            self.weights_sha256 = None
            return None
        path, self.weights_sha256 = registry.resolve_choice(self.name, self.weights, self.weights_names(self.name))
        return path

    def read_checkpoint(self) -> dict | None:
        """The state dict ``-w`` names (None for ``none``); sets :attr:`weights_sha256`."""
        from .. import weights as registry

        path = self.resolve_weights()
        return None if path is None else self.convert_checkpoint(registry.load_state_dict(path), path)

    def load_network(self) -> torch.nn.Module:
        """Build the network with the fixed seed and load the checkpoint into it (eval mode, CPU)."""
        state = self.read_checkpoint()
        with seeded(self.seed):
            net = self.build_network(pretrained=state is not None)
        if state is not None:
            try:
                net.load_state_dict(state)
            except RuntimeError as e:
                raise WeightsError(f"{self.weights}: does not fit {self.network_label} "
                                   f"({str(e).strip().splitlines()[0][:160]}); pass {self.checkpoint_hint}") from None
        return net.eval()

    def load(self) -> None:
        self.model = self.load_network().to(self.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One batch of model inputs → features (the network's output by default)."""
        return self.model(x)

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """float32 inputs [k, ...] → features [k, D], batched, with float16 autocast on CUDA unless fp32."""
        if not self.is_loaded:
            self.load()
        outs = []
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.use_half):
            for batch in row_batches(inputs, self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
                outs.append(self.forward(x).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)
