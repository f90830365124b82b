"""OpenL3 audio embedding network (Cramer et al., "Look, Listen and Learn More: Design Choices for
Deep Audio Embeddings", ICASSP 2019), in PyTorch.

Input: 1 s of mono audio at 48 kHz. Front end as in the original Keras model (kapre 0.1):
``linear`` is the magnitude STFT (512-sample Hann window, 242-sample hop, no padding: 257 × 197),
``mel128``/``mel256`` are magnitude mel spectrograms (2048-sample window, 242-sample hop, Keras
"same" padding, HTK mel scale 0–24 kHz with area-normalised filters: 128/256 × 199); both are
converted with kapre's ``10·log10`` (floor 1e-10), shifted so each example's maximum is 0 dB and
floored at −80 dB. Body: batch norm of the spectrogram, four stages of two 3×3 conv + BN + ReLU
(64, 128, 256, 512 channels; 2×2 max pooling after the first three), then the 3×3
``audio_embedding_layer`` (512 channels, linear) and a max pooling whose size sets the embedding:
one 512-d vector or a 4 × 3 grid flattened channel-last to 6144-d.

Parameter names follow the torchopenl3 conversion of the official weights
(``torchopenl3_{input_repr}_{content_type}_{512|6144}.pth.tar``: a state dict with
``batch_normalization_{1..8}.*``, ``conv2d_{1..7}.*``, ``audio_embedding_layer.*`` and the front
end's ``speclayer.*`` buffers). A checkpoint's mel matrix (``speclayer.mel_basis``) is loaded with
the weights; its DFT kernels (``speclayer.dft_*_kernels``) are replaced by :func:`torch.stft`.
"""
from __future__ import annotations

import warnings

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 48000  #: Hz
WINDOW_SAMPLES = 48000  #: one 1-second window
HOP_SAMPLES = 242  #: STFT hop of every input representation
INPUT_REPRS = ("linear", "mel128", "mel256")
CONTENT_TYPES = ("env", "music")
EMBEDDING_SIZES = (512, 6144)
#: (input representation, embedding size) → final max-pooling size (frequency, time)
POOL_SIZES = {
    ("linear", 512): (32, 24), ("linear", 6144): (8, 8),
    ("mel128", 512): (16, 24), ("mel128", 6144): (4, 8),
    ("mel256", 512): (32, 24), ("mel256", 6144): (8, 8),
}
DFT_KERNEL_KEYS = ("speclayer.dft_real_kernels", "speclayer.dft_imag_kernels")
_BN_EPS = 1e-3  # Keras' default
_AMIN = 1e-10
_DYNAMIC_RANGE_DB = 80.0


def openl3_mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = 2048) -> np.ndarray:
    """HTK-scale mel filters [n_mels, n_fft/2+1], 0 Hz to Nyquist, each divided by its band width
    (the area normalisation of librosa < 0.8 ``norm=1`` that kapre 0.1 and OpenL3 used)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Empty filters detected")
        return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2,
                                   htk=True, norm="slaney").astype(np.float32)


def kapre_decibel(x: torch.Tensor) -> torch.Tensor:
    """kapre 0.1's amplitude_to_decibel: 10·log10(max(x, 1e-10)), minus each example's maximum,
    floored at −80 dB."""
    db = 10.0 * torch.log10(torch.clamp(x, min=_AMIN))
    db = db - db.amax(dim=tuple(range(1, x.ndim)), keepdim=True)
    return torch.clamp(db, min=-_DYNAMIC_RANGE_DB)


class L3Spectrogram(nn.Module):
    """Waveform [N, 48000] → dB spectrogram [N, 1, freq, frames] of one input representation."""

    def __init__(self, input_repr: str = "mel128", sample_rate: int = SAMPLE_RATE):
        super().__init__()
        if input_repr not in INPUT_REPRS:
            raise ValueError(f"unknown OpenL3 input representation {input_repr!r}; choose one of {INPUT_REPRS}")
        self.input_repr = input_repr
        self.n_fft = 512 if input_repr == "linear" else 2048
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        if input_repr != "linear":
            n_mels = int(input_repr[3:])
            self.register_buffer("mel_basis", torch.from_numpy(openl3_mel_filters(n_mels, sample_rate, self.n_fft)))

    def _same_padding(self, n: int) -> tuple[int, int]:
        """Keras "same" padding of a length-``n`` input for the STFT frames."""
        rest = n % HOP_SAMPLES
        total = max(self.n_fft - (HOP_SAMPLES if rest == 0 else rest), 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.input_repr != "linear":
            x = F.pad(x, self._same_padding(x.shape[-1]))
        spec = torch.stft(x, self.n_fft, HOP_SAMPLES, window=self.window, center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()  # [N, freq, frames]
        if self.input_repr != "linear":
            power = torch.matmul(self.mel_basis, power)
        return kapre_decibel(torch.sqrt(power))[:, None]  # magnitude, as kapre's power 1.0


class OpenL3(nn.Module):
    """OpenL3 audio subnetwork: waveform windows [N, 48000] → embeddings [N, 512 or 6144]."""

    _STAGES = ((1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512))

    def __init__(self, input_repr: str = "mel128", embedding_size: int = 512):
        super().__init__()
        if (input_repr, embedding_size) not in POOL_SIZES:
            raise ValueError(f"OpenL3 has no {input_repr}/{embedding_size} model; input representations "
                             f"{INPUT_REPRS}, embedding sizes {EMBEDDING_SIZES}")
        self.input_repr, self.embedding_size = input_repr, embedding_size
        self.speclayer = L3Spectrogram(input_repr)
        self.batch_normalization_1 = nn.BatchNorm2d(1, eps=_BN_EPS)
        for i, (cin, cout) in enumerate(self._STAGES, start=1):
            setattr(self, f"conv2d_{i}", nn.Conv2d(cin, cout, 3, padding=1))
            setattr(self, f"batch_normalization_{i + 1}", nn.BatchNorm2d(cout, eps=_BN_EPS))
        self.audio_embedding_layer = nn.Conv2d(512, 512, 3, padding=1)
        self.pool_size = POOL_SIZES[(input_repr, embedding_size)]

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform [N, 48000] → dB spectrogram [N, 1, freq, frames] (always float32)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.speclayer(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batch_normalization_1(self.spectrogram(x))
        for i in range(1, len(self._STAGES) + 1):
            x = F.relu(getattr(self, f"batch_normalization_{i + 1}")(getattr(self, f"conv2d_{i}")(x)))
            if i in (2, 4, 6):
                x = F.max_pool2d(x, 2)
        x = F.max_pool2d(self.audio_embedding_layer(x), self.pool_size)
        return x.permute(0, 2, 3, 1).flatten(1)  # channel-last order, as Keras' Flatten


def openl3_state_dict(state: dict, input_repr: str) -> dict:
    """torchopenl3 checkpoint state dict → this module's keys: drops the DFT kernels after checking
    they fit ``input_repr``; raises ``ValueError`` when the file is for another representation."""
    state = dict(state)
    n_fft = 512 if input_repr == "linear" else 2048
    for key in DFT_KERNEL_KEYS:
        kernel = state.pop(key, None)
        if kernel is not None and tuple(kernel.shape) != (n_fft // 2 + 1, 1, n_fft):
            raise ValueError(f"{key} has shape {tuple(kernel.shape)}: not the {input_repr} front end")
    has_mel = "speclayer.mel_basis" in state
    if has_mel != (input_repr != "linear"):
        raise ValueError(f"checkpoint {'has' if has_mel else 'lacks'} a mel matrix: not a {input_repr} model")
    return state


def infer_input_repr(state: dict) -> str | None:
    """The input representation a torchopenl3 state dict was made for, from its front-end buffers."""
    if "speclayer.mel_basis" in state:
        return f"mel{int(state['speclayer.mel_basis'].shape[0])}"
    kernel = state.get(DFT_KERNEL_KEYS[0])
    if kernel is not None and 257 in tuple(kernel.shape):
        return "linear"
    return None
