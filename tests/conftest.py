"""Shared fixtures: small synthetic audio made on the fly (no downloads, no ../shared)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

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
