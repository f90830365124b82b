"""The CRNN of Amiriparian et al. (2020, §3.2): convolutional blocks on log-mel spectrograms,
then GRU layers over time and a linear classifier.

Architectures (:data:`ARCHITECTURES`; channel counts and pooling are not given by the paper and
are chosen here):

* ``esc`` (§3.2.2, ESC-50/ESC-10): 4 blocks of 3×3 convolution → batch norm → ELU → 2×2 max
  pooling → 30 % dropout with 8, 16, 32, 64 channels; 2 GRU layers of 256 units on the
  [frames, channels × bands] sequence; 30 % dropout; a linear layer on the last hidden state.
* ``dcase`` (§3.2.1, DCASE 2018): 3 blocks with 5×5, 4×4, 3×3 kernels and 16, 32, 64 channels,
  pooling 2×2, 2×2 and 32 (bands) × 2 (frames), which folds 128 bands into one.

ELU is strictly increasing, so each block max-pools *before* the ELU: the output and gradients
equal conv → BN → ELU → pool, and the ELU runs on a quarter of the values. The model standardises
every mel band with the training clips' mean and standard deviation (buffers of the model).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .config import CRNNArchitecture

def conv_block(c_in: int, c_out: int, kernel: tuple[int, int], pool: tuple[int, int], dropout: float) -> nn.Sequential:
    """'Same' zero padding → convolution → batch norm over channels → max pooling → ELU → dropout.

    Even kernels are padded one more at the end than at the start (as torch's ``padding="same"``).
    """
    k_f, k_t = kernel
    return nn.Sequential(nn.ZeroPad2d(((k_t - 1) // 2, k_t // 2, (k_f - 1) // 2, k_f // 2)),
                         nn.Conv2d(c_in, c_out, kernel), nn.BatchNorm2d(c_out),
                         nn.MaxPool2d(pool), nn.ELU(), nn.Dropout(dropout))


class CRNN(nn.Module):
    """Log-mel spectrograms in dB ``[B, n_mels, frames]`` → class logits ``[B, n_classes]``."""

    def __init__(self, n_mels: int, n_classes: int, architecture: CRNNArchitecture):
        super().__init__()
        self.architecture = architecture
        self.register_buffer("band_mean", torch.zeros(n_mels, 1))  #: dB, per mel band
        self.register_buffer("band_std", torch.ones(n_mels, 1))  #: dB, per mel band
        a = architecture
        bands = a.output_size(n_mels, 10 ** 6)[0]
        if bands < 1:
            raise ConfigError(f"{n_mels} mel bands cannot be pooled by {[p[0] for p in a.pools]}; use more bands")
        block_dropout = a.dropout if a.block_dropout else 0.0
        self.blocks = nn.Sequential(*(conv_block(c_in, c_out, k, p, block_dropout) for c_in, c_out, k, p in
                                      zip((1,) + a.channels[:-1], a.channels, a.kernels, a.pools)))
        self.sequence_dropout = nn.Dropout(0.0 if a.block_dropout else a.dropout)  #: before the GRU
        self.gru = nn.GRU(a.channels[-1] * bands, a.gru_units, a.gru_layers, batch_first=True)
        self.dropout = nn.Dropout(a.dropout)
        self.classifier = nn.Linear(a.gru_units, n_classes)

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-band mean and standard deviation (dB, shape [n_mels]) of the training spectrograms."""
        self.band_mean.copy_(mean.reshape(-1, 1))
        self.band_std.copy_(std.reshape(-1, 1).clamp_min(1e-3))

    def standardize(self, mels_db: torch.Tensor) -> torch.Tensor:
        return (mels_db - self.band_mean) / self.band_std

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised spectrograms → logits."""
        z = self.blocks(x[:, None])  # [B, C, bands, frames]
        b, c, f, t = z.shape
        if t < 1:
            raise ConfigError("spectrograms are too short for the pooling; use a longer --duration or a shorter --hop")
        _, hidden = self.gru(self.sequence_dropout(z.permute(0, 3, 1, 2).reshape(b, t, c * f)))
        return self.classifier(self.dropout(hidden[-1]))

    def forward(self, mels_db: torch.Tensor) -> torch.Tensor:
        return self.classify(self.standardize(mels_db))
