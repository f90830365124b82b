"""PANNs Cnn14 (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio
Pattern Recognition", IEEE/ACM TASLP 2020), the AudioSet tagging network.

Front end: 32 kHz waveform → STFT (1024-sample Hann window, 320-sample hop, centred with reflect
padding) → power → 64 mel bands, 50–14000 Hz (librosa Slaney filters) → 10·log10 with a 1e-10
floor (no top-dB clipping). Body: batch norm over the mel bands, six blocks of two 3×3
conv + BN + ReLU (64 … 2048 channels, 2×2 average pooling after the first five), mean over
frequency, max + mean over time, ``fc1`` + ReLU (the 2048-d embedding) and ``fc_audioset``
(527 AudioSet logits, sigmoid → clip-wise probabilities).

Parameter names follow the official checkpoints (``Cnn14_mAP=0.431.pth``), so their ``model``
state dict loads with :func:`cnn14_state_dict`. The checkpoint's mel matrix
(``logmel_extractor.melW``) is kept as a buffer and loaded; its DFT kernels
(``spectrogram_extractor.stft.conv_*``) are replaced by :func:`torch.stft`, which computes the
same transform.
"""
from __future__ import annotations

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: STFT kernels of the official checkpoints that :func:`torch.stft` replaces (name → expected shape).
STFT_KERNEL_KEYS = ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight")
AUDIOSET_CLASSES = 527


class LogMel(nn.Module):
    """Waveform [N, samples] → log-mel power [N, 1, frames, n_mels] in dB (10·log10, floor 1e-10)."""

    def __init__(self, sample_rate: int = 32000, n_fft: int = 1024, hop: int = 320, n_mels: int = 64,
                 fmin: float = 50.0, fmax: float = 14000.0, amin: float = 1e-10):
        super().__init__()
        self.n_fft, self.hop, self.amin = n_fft, hop, amin
        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, norm="slaney")
        self.register_buffer("melW", torch.from_numpy(mel.T.astype(np.float32)))  # [n_fft/2+1, n_mels]
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x.float(), self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = spec.real.square() + spec.imag.square()  # [N, freq, frames]
        mel = torch.matmul(power.transpose(1, 2), self.melW)  # [N, frames, n_mels]
        return (10.0 * torch.log10(torch.clamp(mel, min=self.amin)))[:, None]


class ConvBlock(nn.Module):
    """Two 3×3 conv (no bias) + BN + ReLU, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool != (1, 1) else x


class Cnn14(nn.Module):
    """Cnn14: waveform [N, samples] at 32 kHz → 2048-d embedding (``forward``) or 527 probabilities.

    The input must be at least 10 240 samples (32 STFT frames, one per final time step).
    """

    MIN_SAMPLES = 32 * 320

    def __init__(self, sample_rate: int = 32000, n_fft: int = 1024, hop: int = 320, n_mels: int = 64,
                 fmin: float = 50.0, fmax: float = 14000.0, classes: int = AUDIOSET_CLASSES):
        super().__init__()
        self.logmel_extractor = LogMel(sample_rate, n_fft, hop, n_mels, fmin, fmax)
        self.bn0 = nn.BatchNorm2d(n_mels)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, classes)
        self.init_weights()

    def init_weights(self) -> None:
        """PANNs' initialisation: Xavier-uniform conv/linear weights, zero biases, unit BN scales."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform [N, samples] → log-mel [N, 1, frames, n_mels] (always float32)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.logmel_extractor(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform [N, samples] → embedding [N, 2048] (``fc1`` after ReLU)."""
        x = self.log_mel(x)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalise each mel band
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, (2, 2) if i < 6 else (1, 1))
        x = x.mean(dim=3)  # over mel → [N, 2048, time]
        x = x.amax(dim=2) + x.mean(dim=2)
        return F.relu(self.fc1(x))

    def probabilities(self, embedding: torch.Tensor) -> torch.Tensor:
        """Embedding [N, 2048] → AudioSet class probabilities [N, 527] (sigmoid)."""
        return torch.sigmoid(self.fc_audioset(embedding))


def cnn14_state_dict(state: dict, n_fft: int = 1024) -> dict:
    """Official checkpoint state dict → this module's keys: drops the STFT kernels after checking
    that they are for ``n_fft``; raises ``ValueError`` when they are not."""
    state = dict(state)
    for key in STFT_KERNEL_KEYS:
        kernel = state.pop(key, None)
        if kernel is not None and tuple(kernel.shape) != (n_fft // 2 + 1, 1, n_fft):
            raise ValueError(f"{key} has shape {tuple(kernel.shape)}, expected STFT kernels of size {n_fft}")
    return state
