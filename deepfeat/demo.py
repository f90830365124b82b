"""A small deterministic synthetic dataset in the ESC-50 layout, for tests and ``make extract``.

Five classes built from signal primitives (steady harmonic tones, frequency sweeps, band-limited
noise bursts, click trains, amplitude-modulated tones), each clip with randomised parameters and
background noise, spread evenly over 5 folds. Same arguments → byte-identical files.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, chirp, sosfilt

DEMO_CLASSES = ("tone", "sweep", "noise_burst", "clicks", "am_tone")


def _tone(rng, t, sr):
    f0 = rng.uniform(200, 800)
    return sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 5))


def _sweep(rng, t, sr):
    f0, f1 = sorted(rng.uniform(150, 6000, size=2))
    if rng.random() < 0.5:
        f0, f1 = f1, f0
    return chirp(t, f0=f0, f1=f1, t1=t[-1], method="logarithmic")


def _noise_burst(rng, t, sr):
    lo = rng.uniform(300, 2000)
    sos = butter(4, [lo, min(lo * rng.uniform(1.5, 3.0), 0.45 * sr)], btype="band", fs=sr, output="sos")
    noise = sosfilt(sos, rng.standard_normal(t.size))
    env = np.zeros(t.size)
    for _ in range(rng.integers(2, 5)):
        start, length = rng.integers(0, t.size), int(rng.uniform(0.1, 0.4) * sr)
        env[start:start + length] = 1.0
    return noise * env / (np.abs(noise).max() + 1e-9)


def _clicks(rng, t, sr):
    x = np.zeros(t.size)
    period = int(sr / rng.uniform(3, 12))
    x[rng.integers(0, period)::period] = 1.0
    return np.convolve(x, np.exp(-np.arange(int(0.004 * sr)) / (0.0008 * sr)), mode="same")


def _am_tone(rng, t, sr):
    return np.sin(2 * np.pi * rng.uniform(300, 1500) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 8) * t))


_GENERATORS = dict(zip(DEMO_CLASSES, (_tone, _sweep, _noise_burst, _clicks, _am_tone)))


def demo_clip(target: int, k: int, duration: float = 2.0, sample_rate: int = 22050, seed: int = 0,
              channels: int = 1) -> np.ndarray:
    """Clip ``k`` of class ``DEMO_CLASSES[target % 5]``: float32 [samples] (``channels`` > 1:
    [samples, channels], each channel the clip delayed by a few samples, rescaled and with its own noise)."""
    t = np.arange(int(duration * sample_rate)) / sample_rate
    rng = np.random.default_rng([seed, target, k])
    x = _GENERATORS[DEMO_CLASSES[target % len(DEMO_CLASSES)]](rng, t, sample_rate)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.9)
    x = x + rng.standard_normal(t.size) * 10 ** (rng.uniform(-50, -30) / 20)
    if channels > 1:
        x = np.stack([np.roll(x, 3 * c) * (1.0 - 0.1 * c) + rng.standard_normal(t.size) * 1e-3
                      for c in range(channels)], axis=1)
    return x.astype(np.float32)


def write_clip(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """A 16-bit WAV (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, subtype="PCM_16")


def write_demo_dataset(out: str | Path, clips_per_class: int = 10, duration: float = 2.0,
                       sample_rate: int = 22050, seed: int = 0) -> Path:
    """Write ``out/audio/*.wav`` and ``out/meta/esc50.csv``; returns ``out``.

    ``clips_per_class`` clips of ``duration`` seconds at ``sample_rate`` Hz per class, folds
    1..5 assigned round-robin within each class.
    """
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "meta").mkdir(parents=True, exist_ok=True)
    rows = []
    for target, name in enumerate(DEMO_CLASSES):
        for k in range(clips_per_class):
            fold = k % 5 + 1
            filename = f"{fold}-{target:03d}{k:03d}-A-{target}.wav"
            write_clip(out / "audio" / filename, demo_clip(target, k, duration, sample_rate, seed), sample_rate)
            rows.append((filename, fold, target, name, "True", f"{target:03d}{k:03d}", "A"))
    with open(out / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(sorted(rows))
    return out


def write_short_clips_dataset(out: str | Path, clips_per_class: int = 20, min_duration: float = 0.15,
                              max_duration: float = 1.0, sample_rate: int = 8000, seed: int = 0) -> Path:
    """The demo classes as short clips of random length (``min_duration`` … ``max_duration`` s) at a
    low rate, like spoken digits: what a CRNN padding every clip to 5 s at 44.1 kHz must survive.
    Same layout as :func:`write_demo_dataset`."""
    out = Path(out)
    for folder in ("audio", "meta"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for target, name in enumerate(DEMO_CLASSES):
        for k in range(clips_per_class):
            rng = np.random.default_rng([seed, target, k, 1])
            t = np.arange(int(rng.uniform(min_duration, max_duration) * sample_rate)) / sample_rate
            x = _GENERATORS[name](rng, t, sample_rate)
            x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.9) + rng.standard_normal(t.size) * 1e-3
            fold = k % 5 + 1
            filename = f"{fold}-{target:03d}{k:03d}-A-{target}.wav"
            sf.write(out / "audio" / filename, x.astype(np.float32), sample_rate, subtype="PCM_16")
            rows.append((filename, fold, target, name, "True", f"{target:03d}{k:03d}", "A"))
    with open(out / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(sorted(rows))
    return out
