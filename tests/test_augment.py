import numpy as np
import pytest
import torch

from deepfeat.augment import (AUGMENTATION_NAMES, AugmentConfig, WaveformAugmentation, add_noise, mixup, patch_replace,
                              pitch_shift, spec_augment, time_stretch)
from deepfeat.errors import ConfigError

from .conftest import tone

RATE = 16000


def _peak_hz(x, rate=RATE):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.fft.rfftfreq(x.size, 1 / rate)[spectrum.argmax()]


# ----------------------------------------------------------------------------- waveform

@pytest.mark.parametrize("factor", [0.8, 1.2, 1.5])
def test_time_stretch_changes_duration_not_pitch(factor):
    x = tone(1000.0, 1.0, RATE)
    y = time_stretch(x, factor)
    assert y.dtype == np.float32
    assert y.size == pytest.approx(x.size / factor, rel=0.01)
    assert _peak_hz(y) == pytest.approx(1000.0, rel=0.02)


@pytest.mark.parametrize("semitones", [-2.0, 2.0, 4.0])
def test_pitch_shift_moves_the_tone_by_semitones(semitones):
    x = tone(1000.0, 1.0, RATE)
    y = pitch_shift(x, RATE, semitones)
    assert y.shape == x.shape and y.dtype == np.float32
    assert _peak_hz(y) == pytest.approx(1000.0 * 2 ** (semitones / 12), rel=0.02)


@pytest.mark.parametrize("snr_db", [5.0, 15.0, 30.0])
@pytest.mark.parametrize("freq", [300.0, 3000.0])
def test_add_noise_reaches_the_snr(snr_db, freq):
    x = tone(freq, 2.0, RATE)
    y = add_noise(x, snr_db, np.random.default_rng(0))
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.2)


def test_add_noise_keeps_silence_silent():
    assert not add_noise(np.zeros(100, np.float32), 5.0, np.random.default_rng(0)).any()


@pytest.mark.parametrize("kind,value,name", [("time_stretch", 0.8, "time_stretch_0.8"),
                                             ("pitch_shift", -2.0, "pitch_shift_-2"), ("noise", 15.0, "noise_15dB")])
def test_waveform_augmentation_names_and_output(kind, value, name):
    aug = WaveformAugmentation(kind, value)
    assert aug.name == name
    x = tone(500.0, 0.5, RATE)
    y = aug.apply(x, RATE, "clip-a")
    assert y.dtype == np.float32 and y.ndim == 1
    assert np.array_equal(y, aug.apply(x, RATE, "clip-a"))  # deterministic


def test_noise_is_seeded_by_clip_id():
    aug = WaveformAugmentation("noise", 5.0)
    x = tone(500.0, 0.5, RATE)
    assert not np.array_equal(aug.apply(x, RATE, "clip-a"), aug.apply(x, RATE, "clip-b"))


@pytest.mark.parametrize("kind,value", [("reverse", 1.0), ("time_stretch", 0.0), ("time_stretch", -1.0)])
def test_bad_waveform_augmentation_is_a_config_error(kind, value):
    with pytest.raises(ConfigError):
        WaveformAugmentation(kind, value)


# ----------------------------------------------------------------------------- batch transforms

def _batch(b=8, f=64, t=50, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, f, t, generator=g)
    y = torch.nn.functional.one_hot(torch.arange(b) % classes, classes).float()
    return x, y


@pytest.mark.parametrize("time_masks,freq_masks,width", [(2, 2, 20), (1, 0, 5), (0, 3, 10), (2, 2, 0)])
def test_spec_augment_masks_whole_bands(time_masks, freq_masks, width):
    torch.manual_seed(1)
    x, _ = _batch()
    out = spec_augment(x, time_masks, freq_masks, width, fill=0.0)
    assert out.shape == x.shape
    changed = out != x
    assert torch.equal(out[changed], torch.zeros(int(changed.sum())))
    masked = out == 0
    rows = masked.all(dim=2)  # whole mel bands masked
    cols = masked.all(dim=1)  # whole frames masked
    # every masked value lies in a fully masked band or frame, within the allowed total width
    assert torch.equal(masked, rows[:, :, None] | cols[:, None, :])
    assert (rows.sum(1) <= freq_masks * width).all() and (cols.sum(1) <= time_masks * width).all()
    if width == 0 or time_masks + freq_masks == 0:
        assert torch.equal(out, x)


def test_spec_augment_differs_per_example_and_is_seeded():
    x = torch.ones(16, 64, 64)
    torch.manual_seed(0)
    a = spec_augment(x)
    torch.manual_seed(0)
    b = spec_augment(x)
    assert torch.equal(a, b)
    patterns = {tuple((a[i] == 0).flatten().tolist()) for i in range(16)}
    assert len(patterns) > 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_patch_replace_copies_a_donor_patch_and_mixes_targets_by_area(seed):
    torch.manual_seed(seed)
    x, y = _batch(b=6)
    x = x + torch.arange(6)[:, None, None] * 1000  # each example in its own value range
    out, y_out = patch_replace(x, y, max_width=20)
    assert out.shape == x.shape
    assert torch.allclose(y_out.sum(1), torch.ones(6))
    for i in range(6):
        changed = out[i] != x[i]
        share = changed.float().mean()
        if changed.any():
            donors = torch.unique(torch.round(out[i][changed] / 1000))
            assert len(donors) == 1 and donors.item() != i  # one other example donates
            rows, cols = changed.any(1).sum(), changed.any(0).sum()
            assert changed.sum() == rows * cols and rows <= 20 and cols <= 20  # one rectangle
        assert y_out[i].max() >= 1 - share - 1e-6  # own label keeps the unreplaced share


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_mixes_inputs_and_targets_with_the_same_weight(alpha):
    torch.manual_seed(0)
    x, y = _batch(b=8, classes=8)  # every example its own class: the targets reveal λ and the partner
    out, y_out = mixup(x, y, alpha)
    assert torch.allclose(y_out.sum(1), torch.ones(8))
    for i in range(8):
        lam = y_out[i, i]
        rest = y_out[i].clone()
        rest[i] = 0
        if lam < 1 - 1e-6 and rest.max() > 0:
            partner = int(rest.argmax())
            assert torch.allclose(out[i], lam * x[i] + (1 - lam) * x[partner], atol=1e-5)


# ----------------------------------------------------------------------------- configuration

def test_from_names_all_sets_the_paper_settings():
    cfg = AugmentConfig.from_names(["all"])
    assert cfg.time_stretch == (0.8, 1.2) and cfg.pitch_shift == (-2.0, 2.0) and cfg.noise_snr == (5.0, 15.0)
    assert cfg.spec_augment and cfg.patch_replace and cfg.mixup_alpha == 0.2
    assert (cfg.time_masks, cfg.freq_masks, cfg.mask_width) == (2, 2, 20)
    assert cfg.names() == list(AUGMENTATION_NAMES) and cfg.enabled
    assert [a.name for a in cfg.waveform()] == ["time_stretch_0.8", "time_stretch_1.2", "pitch_shift_-2",
                                                "pitch_shift_2", "noise_5dB", "noise_15dB"]


@pytest.mark.parametrize("names", [[], ["none"], [""]])
def test_from_names_none_is_off(names):
    cfg = AugmentConfig.from_names(names)
    assert not cfg.enabled and cfg.names() == [] and cfg.waveform() == []
    x, y = _batch()
    assert all(torch.equal(a, b) for a, b in zip(cfg.augment_batch(x, y), (x, y)))


@pytest.mark.parametrize("name", AUGMENTATION_NAMES)
def test_from_names_single(name):
    cfg = AugmentConfig.from_names([name])
    assert cfg.names() == [name]
    assert bool(cfg.waveform()) == (name in ("stretch", "pitch", "noise"))


@pytest.mark.parametrize("bad", [["wobble"], ["mixup", "reverb"]])
def test_from_names_rejects_unknown(bad):
    with pytest.raises(ConfigError, match="unknown augmentation"):
        AugmentConfig.from_names(bad)


@pytest.mark.parametrize("kwargs", [{"waveform_probability": 1.5}, {"mixup_alpha": -0.1}, {"mask_width": -1},
                                    {"time_stretch": (0.0,)}])
def test_invalid_config_values(kwargs):
    with pytest.raises(ConfigError):
        AugmentConfig(**kwargs)


def test_augment_batch_is_reproducible_and_keeps_targets_distributions():
    cfg = AugmentConfig.from_names(["specaugment", "patch", "mixup"])
    x, y = _batch()
    torch.manual_seed(3)
    a = cfg.augment_batch(x, y)
    torch.manual_seed(3)
    b = cfg.augment_batch(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == x.shape and torch.allclose(a[1].sum(1), torch.ones(len(y)))
    assert not torch.equal(a[0], x)
