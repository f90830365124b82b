"""What ``extract`` says about its input (issue 14, cases 4, 6 and 7): clips cut short are stored
with a warning (or stop the run under ``--on-error fail``), clips sampled below the analysis rate
are counted once per run, ``--fmax auto`` fits the mel bands to them, and plot options an audio
model would ignore are refused."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfeat.config import MelConfig, PlotConfig, plot_config
from deepfeat.datasets import load_manifest
from deepfeat.errors import AudioError, ConfigError
from deepfeat import extract
from deepfeat.extract import extract_features, make_extractor
from deepfeat.extractors import create_extractor, extractor_names
from deepfeat.store import read_store
from deepfeat.store_summary import summarise_store, summary_lines

PLOT = PlotConfig(mel=MelConfig(sample_rate=16000))


def lite0(plot=PLOT):
    return create_extractor("efficientnet_lite0", plot=plot, device="cpu")


@pytest.fixture(scope="module")
def loaded():
    """EfficientNet-Lite0 at 16 kHz, loaded once for the extractions of this module."""
    ex = lite0()
    ex.load()
    return ex


@pytest.fixture
def uneven_dataset(tmp_path):
    """A folder per class: whole 16 kHz clips, an 8 kHz clip, and a WAV and an Ogg cut in half."""
    rng = np.random.default_rng(0)
    root = tmp_path / "uneven"
    for name, rate in (("a/whole.wav", 16000), ("a/low.wav", 8000), ("b/cut_wav.wav", 16000),
                       ("b/cut_ogg.ogg", 16000), ("b/whole.wav", 16000)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, 0.1 * rng.standard_normal(4 * rate).astype(np.float32), rate)
    for name in ("b/cut_wav.wav", "b/cut_ogg.ogg"):
        data = (root / name).read_bytes()
        (root / name).write_bytes(data[:len(data) // 2])
    return root


def test_clips_cut_short_are_kept_with_a_warning_in_the_store_and_log(uneven_dataset, loaded, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="deepfeat.extract"):
        out = extract_features(load_manifest(uneven_dataset), loaded, tmp_path / "u.h5", workers=0, progress=False)
    log = Path(str(out) + ".log").read_text()
    assert log.count("with a warning:") == 2 and "cut short" in log
    # the 8 kHz clip, once, with its count
    assert log.count("sampled at 8000 Hz (1)") == 1 and "--fmax auto" in log
    assert "1 of 5 files are sampled at 8000 Hz (1)" in caplog.text
    fs = read_store(out)
    assert sorted(fs.ids) == ["a/low", "a/whole", "b/cut_ogg", "b/cut_wav", "b/whole"]  # cut clips are kept
    assert sorted(dict(fs.warnings)) == ["b/cut_ogg", "b/cut_wav"]
    assert all("cut short" in reason and str(uneven_dataset / "b") in reason for _, reason in fs.warnings)
    assert fs.skipped == []
    lines = "\n".join(summary_lines(summarise_store(out)))
    assert "warnings: 2" in lines and "cut short" in lines


def test_clips_decoded_side_by_side_keep_their_own_warnings(uneven_dataset, loaded):
    """The front end's threads each report their own clip cut short (a process-wide capture of the
    warnings module once gave a whole clip a neighbour's warning)."""
    from concurrent.futures import ThreadPoolExecutor

    dataset = extract.ClipFrontend(load_manifest(uneven_dataset), loaded)
    cut = {i for i, c in enumerate(dataset.clips) if c.id.startswith("b/cut")}
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            prepared = list(pool.map(dataset.__getitem__, list(range(len(dataset))) * 4))
            assert {p.index for p in prepared if p.warning} == cut
            assert all(p.warning and "cut short" in p.warning for p in prepared if p.index in cut)


def test_on_error_fail_stops_at_a_clip_cut_short(uneven_dataset, loaded, tmp_path):
    with pytest.raises(AudioError, match=r"cut_(wav\.wav|ogg\.ogg): cut short"):
        extract_features(load_manifest(uneven_dataset), loaded, tmp_path / "f.h5", workers=0, progress=False,
                         on_error="fail")


@pytest.mark.parametrize("plot,warned", [
    (PLOT, True),
    (PlotConfig(mel=MelConfig(sample_rate=16000, fmax=4000.0)), False),  # --fmax auto on this dataset
])
def test_low_rate_warning_depends_on_the_frequencies_analysed(uneven_dataset, plot, warned, caplog):
    with caplog.at_level(logging.WARNING, logger="deepfeat.extract"):
        message = extract.warn_low_rates(load_manifest(uneven_dataset), lite0(plot))
    assert (message is not None) == warned and (message or "") in caplog.text
    if warned:
        assert message.startswith("uneven: 1 of 5 files are sampled at 8000 Hz (1)")
        assert "efficientnet_lite0 analyses up to 8000 Hz" in message


def test_fmax_auto_is_the_lowest_native_nyquist(uneven_dataset):
    import click

    from deepfeat.cli.plot_options import Fmax, plot_config_from

    settings = dict(colormap="magma", preset="fine", window=None, hop=None, n_mels=64, sample_rate=16000, fmin=0.0,
                    fmax="auto", clip_db=-60.0, duration=None, segment=None, renderer="fast", interpolation="bilinear")
    assert plot_config_from(dict(settings), load_manifest(uneven_dataset)).mel.fmax == 4000.0
    assert Fmax().convert("auto", None, None) == "auto" and Fmax().convert("8000", None, None) == 8000.0
    with pytest.raises(click.BadParameter, match="neither a positive frequency in Hz nor auto"):
        Fmax().convert("-5", None, None)


def test_plot_with_fmax_auto(uneven_dataset, tmp_path, capsys):
    from PIL import Image

    from deepfeat.cli.main import main

    main(["plot", str(uneven_dataset), "-o", str(tmp_path / "png"), "--fmax", "auto", "-sr", "16000", "--limit", "2"])
    images = sorted((tmp_path / "png").rglob("*.png"))
    assert len(images) == 2 and Image.open(images[0]).size == (224, 224)


def test_fmax_auto_makes_a_low_rate_clip_fill_the_image(tmp_path):
    """An 8 kHz clip analysed at 16 kHz: without fmax the top half of the mel bands is flat at the
    floor; with --fmax auto (4 kHz) every band holds signal."""
    from deepfeat.audio import resample
    from deepfeat.spectrogram import log_mel

    x = resample(0.3 * np.random.default_rng(1).standard_normal(8000).astype(np.float32), 8000, 16000)
    for fmax, flat in ((None, True), (4000.0, False)):
        mel = log_mel(x, MelConfig(sample_rate=16000, n_mels=64, fmax=fmax))
        top = mel[-8:]  # the highest eighth of the bands
        assert (top.max() < -40) == flat


AUDIO_MODELS = [n for n in ("panns_cnn14", "openl3", "birdnet") if n in extractor_names()]


@pytest.mark.parametrize("network", AUDIO_MODELS)
@pytest.mark.parametrize("settings,options", [
    (dict(colormap="gray"), "--colormap"),
    (dict(sample_rate=22050), "--sample-rate"),
    (dict(preset="paper"), "--window, --hop"),
    (dict(n_mels=64, clip_db=-80.0), "--n-mels, --clip-db"),
])
def test_options_an_audio_model_ignores_are_refused(network, settings, options):
    with pytest.raises(ConfigError, match=rf"{network} is an audio model with its own front end .*{options} would "
                                          "change nothing in its features"):
        make_extractor(network, plot=plot_config(**settings), device="cpu")


@pytest.mark.parametrize("network", AUDIO_MODELS)
def test_clip_length_and_windows_reach_an_audio_model(network):
    ex = make_extractor(network, plot=plot_config(duration=4.0, segment=(3.0, 1.5)), device="cpu")
    assert ex.duration == 4.0 and ex.segment == (3.0, 1.5)


def test_image_networks_take_every_plot_option():
    ex = make_extractor("vgg16", plot=plot_config(colormap="gray", preset="paper", n_mels=64, sample_rate=22050),
                        device="cpu")
    assert ex.plot.colormap == "gray" and ex.plot.mel.n_mels == 64 and ex.sample_rate == 22050
