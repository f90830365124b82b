"""deepfeat.mel_cache: the cached log-mels of a dataset, plain and per waveform augmentation."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepfeat import mel_cache as mel_cache_module
from deepfeat.audio import fix_length, load_audio
from deepfeat.augment import WaveformAugmentation
from deepfeat.config import MelConfig
from deepfeat.datasets import load_manifest
from deepfeat.errors import StoreError
from deepfeat.mel_cache import ORIGINAL, ensure_mel_cache, read_mels
from deepfeat.spectrogram import log_mel

RATE = 16000
MEL = MelConfig(sample_rate=RATE, n_mels=32, window=0.05, hop=0.025, clip_db=-80.0)
NOISE = WaveformAugmentation("noise", 5.0)


@pytest.fixture(scope="module")
def manifest(demo_dir):
    return load_manifest(demo_dir)


@pytest.fixture(scope="module")
def cached(manifest, tmp_path_factory):
    """Mel cache of the demo set: plain and 5 dB-noise copies, 1 s clips."""
    path = tmp_path_factory.mktemp("mels") / "mels.h5"
    ensure_mel_cache(path, manifest, MEL, 1.0, [NOISE], workers=1, progress=False)
    return path


def test_mel_cache_holds_the_plot_stage_spectrograms(cached, manifest):
    mels = read_mels(cached, [ORIGINAL])
    assert mels.shape == (1, len(manifest), 32, 41) and mels.dtype == np.float32
    for i in (0, 7, len(manifest) - 1):
        samples, rate = load_audio(manifest.clips[i].path, RATE)
        assert np.array_equal(mels[0, i], log_mel(fix_length(samples, rate, 1.0), MEL))
    with h5py.File(cached, "r") as f:
        assert [s.decode() for s in f["ids"][()]] == manifest.ids()


def test_waveform_copies_are_cached_beside_the_originals(cached):
    plain, noisy = read_mels(cached, [ORIGINAL, NOISE.name])
    assert plain.shape == noisy.shape and not np.array_equal(plain, noisy)
    assert noisy.min() >= MEL.clip_db and noisy.max() <= 0.0


@pytest.mark.parametrize("duration,frames", [(0.5, 21), (1.5, 61)])
def test_mel_cache_pads_or_crops_to_the_duration(manifest, tmp_path, duration, frames):
    path = ensure_mel_cache(tmp_path / "m.h5", manifest, MEL, duration, workers=1, progress=False)
    assert read_mels(path, [ORIGINAL]).shape[-1] == frames


def test_mel_cache_adds_missing_variants_without_recomputing(manifest, tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    ensure_mel_cache(path, manifest, MEL, 1.0, workers=1, progress=False)
    before = read_mels(path, [ORIGINAL])
    calls = []
    real = mel_cache_module.clip_mels
    monkeypatch.setattr(mel_cache_module, "clip_mels", lambda *a: calls.append(a[4]) or real(*a))  # a[4]: the augmentations
    ensure_mel_cache(path, manifest, MEL, 1.0, [NOISE], workers=1, progress=False)
    assert calls and all(todo == [NOISE] for todo in calls)  # only the new variant is computed
    calls.clear()
    ensure_mel_cache(path, manifest, MEL, 1.0, [NOISE], workers=1, progress=False)
    assert calls == []
    assert np.array_equal(read_mels(path, [ORIGINAL]), before)


@pytest.mark.parametrize("change", [dict(clip_db=-60.0), dict(hop=0.02), dict(n_mels=16)])
def test_mel_cache_of_another_config_is_refused_or_replaced(manifest, tmp_path, change):
    path = ensure_mel_cache(tmp_path / "m.h5", manifest, MEL, 1.0, workers=1, progress=False)
    other = MelConfig(**{**MEL.__dict__, **change})
    with pytest.raises(StoreError, match="different configuration"):
        ensure_mel_cache(path, manifest, other, 1.0, workers=1, progress=False)
    with pytest.raises(StoreError, match="different configuration"):
        ensure_mel_cache(path, manifest, MEL, 2.0, workers=1, progress=False)
    ensure_mel_cache(path, manifest, other, 1.0, workers=1, progress=False, overwrite=True)
    assert read_mels(path, [ORIGINAL]).shape[2] == other.n_mels


def test_read_mels_names_a_missing_variant(cached):
    with pytest.raises(StoreError, match="pitch_shift_2"):
        read_mels(cached, ["pitch_shift_2"])




def test_a_failed_update_leaves_the_cache_as_it_was(manifest, tmp_path, monkeypatch):
    path = ensure_mel_cache(tmp_path / "m.h5", manifest, MEL, 1.0, workers=1, progress=False)
    before = path.read_bytes()

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mel_cache_module, "clip_mels", broken)
    with pytest.raises(RuntimeError):
        ensure_mel_cache(path, manifest, MEL, 1.0, [NOISE], workers=1, progress=False)
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))
