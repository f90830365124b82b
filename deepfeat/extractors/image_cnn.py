"""Frozen ImageNet CNNs on colour-mapped mel-spectrogram images (the DeepSpectrum approach).

Each network has a default layer (the penultimate representation used in the literature) and
accepts any other node name of its torchvision graph (``deepfeat extract -n vgg16 --layer
classifier.1``). Weights: ``imagenet`` (through :mod:`deepfeat.weights`), ``none`` (random
initialisation with a fixed seed: the "no pre-training" rows) or a checkpoint path.

Adding a torchvision network is one :data:`CNN_SPECS` entry: its feature layer, dimension and
the file name of torchvision's ImageNet checkpoint (kept here as plain data, so listing weights
never imports torchvision; a test checks them against torchvision's ``Weights`` enums).
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..config import PlotConfig
from ..errors import ConfigError
from ..render import spectrogram_image
from ..weights import WeightsFile, register
from .base import TorchExtractor, row_batches
from .registry import register_extractor

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: where torchvision's ImageNet checkpoints are published
TORCHVISION_MODELS_URL = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class CNNSpec:
    """One image CNN: the layer its features come from and the images it expects."""

    default_layer: str  #: graph node giving the features
    dim: int  #: feature dimension at the default layer
    imagenet: str | None = None  #: file name of torchvision's ImageNet checkpoint (IMAGENET1K_V1)
    input_size: int = 224  #: pixels (square)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    #: on CPU, trace, freeze and fuse the network (TorchScript, oneDNN): pays for conv → batch norm
    #: networks (the norm folds into the convolution); costs load time and gains nothing for
    #: DenseNet (norm before conv), EfficientNet-B0 and ConvNeXt. ``make bench`` compares both per network.
    freeze: bool = True


CNN_SPECS: dict[str, CNNSpec] = {
    "vgg16": CNNSpec("classifier.4", 4096, "vgg16-397923af.pth"),  # fc2 after its ReLU (Keras' "fc2")
    "vgg19": CNNSpec("classifier.4", 4096, "vgg19-dcbb9e9d.pth"),
    "alexnet": CNNSpec("classifier.5", 4096, "alexnet-owt-7be5be79.pth"),  # fc7 after its ReLU
    "resnet18": CNNSpec("flatten", 512, "resnet18-f37072fd.pth"),  # global average pool
    "resnet50": CNNSpec("flatten", 2048, "resnet50-0676ba61.pth"),
    "densenet121": CNNSpec("flatten", 1024, "densenet121-a639ec97.pth", freeze=False),
    "densenet201": CNNSpec("flatten", 1920, "densenet201-c1103571.pth", freeze=False),
    "mobilenet_v2": CNNSpec("flatten", 1280, "mobilenet_v2-b0353104.pth"),
    "efficientnet_b0": CNNSpec("flatten", 1280, "efficientnet_b0_rwightman-7f5810bc.pth", freeze=False),
    "inception_v3": CNNSpec("flatten", 2048, "inception_v3_google-0cc3c7bd.pth", input_size=299),
    "convnext_tiny": CNNSpec("classifier.1", 768, "convnext_tiny-983f1562.pth", freeze=False),
}


def torchvision_imagenet(network: str, filename: str) -> WeightsFile:
    """The weights entry ``{network}-imagenet`` of a torchvision checkpoint; the 8+ hex digits
    in its file name are a prefix of the file's sha256."""
    digest = re.search(r"-([0-9a-f]{8,})\.", filename)
    return WeightsFile(name=f"{network}-imagenet", filename=filename, sha256=digest.group(1) if digest else None,
                       url=TORCHVISION_MODELS_URL + filename, licence="BSD-3-Clause (torchvision)", torch_hub=True)


for _network, _spec in CNN_SPECS.items():
    register(torchvision_imagenet(_network, _spec.imagenet))


def _build_torchvision(name: str, pretrained: bool) -> torch.nn.Module:
    import torchvision.models as tvm

    kwargs = {}
    if name == "inception_v3":
        kwargs = {"aux_logits": True, "init_weights": not pretrained, "transform_input": pretrained}
    return getattr(tvm, name)(weights=None, **kwargs)


@dataclass
class StagedNetwork:
    """A network cut into consecutive stages: ``pool(stages[-1](… stages[0](x)))`` is the
    extractor's default layer for normalised images ``x`` [B, 3, H, W]. Fine-tuning trains the last
    stages (:mod:`deepfeat.finetune`)."""

    stages: list[torch.nn.Module]
    pool: torch.nn.Module  #: parameter-free: global pooling and flattening (or nothing)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.pool(x)


def _split_at_max_pools(features: torch.nn.Sequential) -> list[torch.nn.Module]:
    blocks, current = [], []
    for layer in features:
        current.append(layer)
        if isinstance(layer, torch.nn.MaxPool2d):
            blocks.append(torch.nn.Sequential(*current))
            current = []
    return blocks + ([torch.nn.Sequential(*current)] if current else [])


def _flat_pool(*layers) -> torch.nn.Sequential:
    return torch.nn.Sequential(*layers, torch.nn.Flatten(1))


def _vgg_like(net, fc6: slice, fc7: slice) -> StagedNetwork:
    """Convolutional blocks (split at max pools), then fc6 and fc7 as two stages."""
    head = list(net.classifier)
    fc6_stage = torch.nn.Sequential(net.avgpool, torch.nn.Flatten(1), *head[fc6])
    return StagedNetwork([*_split_at_max_pools(net.features), fc6_stage, torch.nn.Sequential(*head[fc7])],
                         torch.nn.Identity())


def _densenet(net) -> StagedNetwork:
    f = list(net.features)
    stages = [torch.nn.Sequential(*f[:4])] + [torch.nn.Sequential(*f[i:i + 2]) for i in range(4, len(f), 2)]
    return StagedNetwork(stages, _flat_pool(torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1)))


def _resnet(net) -> StagedNetwork:
    stem = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return StagedNetwork([stem, net.layer1, net.layer2, net.layer3, net.layer4], _flat_pool(net.avgpool))


class _InceptionInput(torch.nn.Module):
    """torchvision's ``transform_input`` of Inception-v3 (ImageNet normalisation to its own)."""

    def forward(self, x):
        scale = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1) / 0.5
        shift = (torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1) - 0.5) / 0.5
        return x * scale + shift


def _inception(net) -> StagedNetwork:
    first = [_InceptionInput()] if net.transform_input else []
    stem = torch.nn.Sequential(*first, net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1)
    stem2 = torch.nn.Sequential(net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2)
    mixed = [getattr(net, f"Mixed_{n}") for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")]
    return StagedNetwork([stem, stem2, *mixed], _flat_pool(net.avgpool))


#: family (network name prefix) → its stages
_STAGES = {
    "vgg": lambda net: _vgg_like(net, slice(0, 3), slice(3, 5)),
    "alexnet": lambda net: _vgg_like(net, slice(0, 3), slice(3, 6)),
    "resnet": _resnet,
    "densenet": _densenet,
    "mobilenet_v2": lambda net: StagedNetwork(list(net.features), _flat_pool(torch.nn.AdaptiveAvgPool2d(1))),
    "efficientnet_b": lambda net: StagedNetwork(list(net.features), _flat_pool(net.avgpool)),
    "convnext": lambda net: StagedNetwork(list(net.features), _flat_pool(net.avgpool, net.classifier[0])),
    "inception": _inception,
}


@register_extractor(*CNN_SPECS)
class ImageCNNExtractor(TorchExtractor):
    """Mel image → frozen image CNN → activations of one layer (pooled/flattened).

    Subclasses for networks that are not torchvision's set :attr:`SPECS` and override
    :meth:`build_network` and :meth:`select_layer`.
    """

    kind = "image"
    default_weights = "imagenet"
    SPECS: ClassVar[dict[str, CNNSpec]] = CNN_SPECS  #: the networks of this class

    def __init__(self, name: str, plot: PlotConfig | None = None, batch_size: int | None = None,
                 optimize: bool | None = None, device_frontend: bool | None = None,
                 input_size: tuple[int, int] | None = None, **kwargs):
        if name not in self.SPECS:
            raise ConfigError(f"unknown image network {name!r} for {type(self).__name__}; "
                              f"choose one of {', '.join(self.SPECS)}")
        self.spec = self.SPECS[name]
        plot = plot or PlotConfig()
        size = tuple(input_size) if input_size else (self.spec.input_size, self.spec.input_size)
        if plot.size != size:  # the network's own input size unless another (H, W) is asked for
            plot = PlotConfig(**{**plot.__dict__, "size": size})
        self.plot = plot
        super().__init__(name, duration=plot.duration, segment=plot.segment, **kwargs)
        self.sample_rate = plot.mel.sample_rate
        #: images per forward pass. On CPU, batches of a few images in the default memory format
        #: ran faster than large channels_last batches (activations stay in cache); on CUDA large
        #: channels_last fp16 batches are the fast path. ``make bench`` measures the result.
        self.batch_size = batch_size or (64 if self.device.type == "cuda" else 4)
        #: CPU: trace, freeze and fuse the network (default: where that pays, :attr:`CNNSpec.freeze`);
        #: features equal the eager ones within float32 rounding (tested).
        self.optimize = self.spec.freeze if optimize is None else bool(optimize)
        self.memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        #: mel images made batched on the network's device (:mod:`deepfeat.torch_frontend`), the
        #: workers only decoding; default: on CUDA with the fast renderer
        self.device_frontend = (self.device.type == "cuda" and plot.renderer == "fast") if device_frontend is None \
            else bool(device_frontend)
        if self.device_frontend and plot.renderer != "fast":
            raise ConfigError("the device front end draws the fast renderer's images; drop --renderer matplotlib")
        self.model = None
        self._dim = self.spec.dim if self.layer == self.spec.default_layer else None

    # --- front end (worker processes) ---------------------------------------------------------
    def frontend(self, samples: np.ndarray) -> np.ndarray:
        """Audio → one uint8 image [1, H, W, 3]; with :attr:`device_frontend`, the audio itself [1, samples]."""
        if self.device_frontend:
            return np.asarray(samples, dtype=np.float32)[None]
        return spectrogram_image(samples, self.plot)[None]

    @property
    def max_frequency(self) -> float:
        """The mel bands' upper edge (``fmax``), Hz."""
        return self.plot.mel.fmax or self.sample_rate / 2

    # --- network (main process) ---------------------------------------------------------------
    @classmethod
    def weights_names(cls, network: str) -> dict[str, str]:
        return {"imagenet": f"{network}-imagenet"}

    @classmethod
    def default_layer(cls, network: str) -> str | None:
        return cls.SPECS[network].default_layer if network in cls.SPECS else None

    @property
    def checkpoint_hint(self) -> str:
        return f"a {self.name} checkpoint"

    def build_network(self, pretrained: bool) -> torch.nn.Module:
        return _build_torchvision(self.name, pretrained=pretrained)

    def select_layer(self, net: torch.nn.Module) -> torch.nn.Module:
        """The loaded network → a module whose output is :attr:`layer`'s activations."""
        from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

        nodes = get_graph_node_names(net)[1]
        if self.layer not in nodes:
            raise ConfigError(f"{self.name} has no layer {self.layer!r}; some of its layers: {', '.join(nodes[-12:])}")
        return create_feature_extractor(net, {self.layer: "features"})

    def split(self, net: torch.nn.Module) -> StagedNetwork:
        """The loaded network cut into stages ending at the default layer (:class:`StagedNetwork`)."""
        family = next(prefix for prefix in _STAGES if self.name.startswith(prefix))
        return _STAGES[family](net)

    def staged_network(self) -> StagedNetwork:
        """The network with ``-w`` weights loaded (eval mode, CPU), cut into stages."""
        if self.layer != self.spec.default_layer:
            raise ConfigError(f"{self.name}: fine-tuning starts from the default layer {self.spec.default_layer!r}, "
                              f"not {self.layer!r}")
        return self.split(self.load_network())

    def load(self) -> None:
        model = self.select_layer(self.load_network()).to(self.device).to(memory_format=self.memory_format)
        if self.use_half:
            model = model.half()
        if self.device.type == "cpu" and self.optimize:
            model = _frozen_for_cpu(model, (self.batch_size, 3, *self.plot.size))
        self.model = model
        self._mean = torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1)

    @property
    def dim(self) -> int:
        if self._dim is None:
            if self.model is None:
                self.load()
            probe = np.zeros((1, *self.plot.size, 3), dtype=np.uint8)
            self._dim = int(self.embed(probe).shape[1])
        return self._dim

    def _features(self, images: torch.Tensor) -> np.ndarray:
        """uint8 images [b, H, W, 3] (a tensor, any device) → features [b, D]."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)  # NHWC memory = channels_last
        x = ((x.float().div_(255.0) - self._mean) / self._std).contiguous(memory_format=self.memory_format)
        if self.use_half:
            x = x.half()
        y = self.model(x)
        y = y["features"] if isinstance(y, dict) else y
        return torch.flatten(y, 1).float().cpu().numpy()

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """uint8 images [k, H, W, 3] → features [k, D] (batched, inference mode; channels_last on CUDA)."""
        if self.model is None:
            self.load()
        with torch.inference_mode(), flush_denormals():
            outs = [self._features(torch.from_numpy(np.require(batch, requirements=["C", "W"])))
                    for batch in row_batches(inputs, self.batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.spec.dim), np.float32)

    def embed_many(self, parts: list[np.ndarray]) -> np.ndarray:
        """Several segments' inputs → features; with :attr:`device_frontend` the inputs are audio,
        drawn into images on the device in batches of equal-length segments."""
        if not self.device_frontend:
            return super().embed_many(parts)
        if self.model is None:
            self.load()
        from .. import torch_frontend

        rows = [row for part in parts for row in part]
        out = np.zeros((len(rows), self.dim), np.float32)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_length.setdefault(len(row), []).append(i)
        with torch.inference_mode():
            for indices in by_length.values():
                for chunk in row_batches(np.array(indices), self.batch_size):
                    audio = torch.from_numpy(np.stack([rows[i] for i in chunk])).to(self.device, non_blocking=True)
                    out[chunk] = self._features(torch_frontend.images(audio, self.plot))
        return out

    def config(self) -> dict:
        config = {**super().config(), "plot": self.plot.to_dict(), "input_size": self.spec.input_size,
                  "normalisation": {"mean": list(self.spec.mean), "std": list(self.spec.std)}}
        if self.device_frontend:  # images within a few grey levels of the CPU renderer's, not equal
            config["frontend"] = "torch"
        return config


@contextmanager
def flush_denormals():
    """Flush denormal floats to zero inside the block (CPU inference only): activations of flat
    spectrogram regions otherwise fall into the slow denormal range. The setting is process-wide,
    so it is switched off again on exit: training that follows in the same process (``deepfeat
    paper`` runs every stage in one) computes exactly as it does on its own."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _frozen_for_cpu(model: torch.nn.Module, example_shape: tuple[int, ...]) -> torch.nn.Module:
    """TorchScript-trace, freeze and ``optimize_for_inference`` an eval-mode network for CPU; the
    eager network if tracing fails."""
    import warnings

    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, torch.zeros(example_shape), strict=False, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    except Exception as e:  # noqa: BLE001 - an untraceable network still works eagerly
        log.info("running %s eagerly: tracing failed (%s)", type(model).__name__, e)
        return model

