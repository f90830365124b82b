"""Shared fixtures: small synthetic audio made on the fly (no downloads, no ../shared)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from deepfeat.demo import write_demo_dataset


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """Tiny ESC-50-layout dataset: 5 classes x 5 clips (one per fold), 1 s at 16 kHz."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", clips_per_class=5, duration=1.0,
                              sample_rate=16000)


def tone(freq: float = 440.0, seconds: float = 1.0, rate: int = 16000, channels: int = 1, amp: float = 0.5):
    t = np.arange(int(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.fixture
def write_wav(tmp_path):
    """write_wav(name, samples, rate) -> path of a 16-bit WAV in tmp_path."""

    def write(name, samples, rate=16000, **kw):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, samples, rate, **kw)
        return path

    return write


def randomise_batch_norm(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, so parity covers every BN."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t, lo, hi in ((m.running_mean, -1, 1), (m.running_var, 0.5, 2), (m.weight, 0.5, 1.5),
                                  (m.bias, -0.5, 0.5)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and spin-waiting threads crawl on a busy machine
    (test modules of trained networks use it for all their tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
