"""What configures the CRNN stage — architectures, training, input mels — as plain dataclasses
(no torch import: the command line reads its defaults from here)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import MelConfig
from ..errors import ConfigError
from ..training.config import TrainConfig

#: Mel settings of the CRNN input: 128 bands, 80 ms Hann windows every 40 ms, clipped at -80 dB.
#: 5 s → 126 frames (coarser than speech framing, to fit 500 CPU epochs into 30 min).
CRNN_MEL = MelConfig(sample_rate=44100, n_mels=128, window=0.08, hop=0.04, fmin=0.0, fmax=None, clip_db=-80.0)
DEFAULT_DURATION = 5.0  #: seconds every clip is padded or cropped to when the data give no length (``auto``)
AUTO_PERCENTILE = 95  #: ``--duration auto``: this percentile of the clips' lengths (rounded up to 0.1 s)


@dataclass(frozen=True)
class CRNNArchitecture:
    """Convolutional blocks (channels, kernel and pooling as (bands, frames)) then GRU layers."""

    channels: tuple[int, ...]
    kernels: tuple[tuple[int, int], ...]
    pools: tuple[tuple[int, int], ...]  #: max-pooling per block, (mel bands, frames)
    gru_units: int = 256
    gru_layers: int = 2
    dropout: float = 0.3
    #: dropout after every convolutional block (as published), else only on the GRU's input and
    #: before the classifier: no dropout feeding a batch-norm layer
    block_dropout: bool = False

    def __post_init__(self):
        for name in ("channels", "kernels", "pools"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(tuple(int(v) for v in x) if isinstance(x, (list, tuple)) else int(x)
                                                 for x in value))
        if not (len(self.channels) == len(self.kernels) == len(self.pools)) or not self.channels:
            raise ConfigError("channels, kernels and pools need one entry per convolutional block")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def output_size(self, n_mels: int, frames: int) -> tuple[int, int]:
        """(bands, frames) after the convolutional blocks."""
        for pool_f, pool_t in self.pools:
            n_mels, frames = n_mels // pool_f, frames // pool_t
        return n_mels, frames

    @classmethod
    def from_dict(cls, d: dict) -> "CRNNArchitecture":
        return cls(**d)


#: ``esc`` and ``dcase`` keep dropout away from the batch-norm layers (dropout feeding batch norm
#: shifts the variance between training and evaluation; on short padded clips the published
#: placement lost up to a third of its accuracy in eval mode — tests/test_crnn.py checks the gap);
#: ``esc-paper`` is the published placement, for comparison.
ARCHITECTURES: dict[str, CRNNArchitecture] = {
    "esc": CRNNArchitecture(channels=(8, 16, 32, 64), kernels=((3, 3),) * 4, pools=((2, 2),) * 4),
    "esc-paper": CRNNArchitecture(channels=(8, 16, 32, 64), kernels=((3, 3),) * 4, pools=((2, 2),) * 4,
                                  block_dropout=True),
    "dcase": CRNNArchitecture(channels=(16, 32, 64), kernels=((5, 5), (4, 4), (3, 3)),
                              pools=((2, 2), (2, 2), (32, 2))),
}


#: How the CRNN trains by default (the paper's settings): Adam (β 0.9, 0.999, learning rate 1e-3),
#: batch 64, 100 epochs, a constant learning rate.
CRNN_TRAINING = TrainConfig(epochs=100, batch_size=64, optimizer="adam", learning_rate=1e-3, weight_decay=0.0,
                            schedule="constant")
