"""The shell interface of the plot / extract / inspect / export / weights / demo-data stages."""
import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deepfeat.cli.main import cli, main
from deepfeat.store import read_store

from .conftest import tone


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def small_store(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "demo.h5"
    result = CliRunner().invoke(cli, ["extract", str(demo_dir), "-n", "efficientnet_lite0", "-o", str(out),
                                      "--sample-rate", "16000", "--workers", "0", "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_help_lists_stages(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("plot", "extract", "inspect", "export", "weights", "demo-data"):
        assert command in result.output


def test_demo_data_command(runner, tmp_path):
    result = runner.invoke(cli, ["demo-data", str(tmp_path / "d"), "--clips-per-class", "2", "--duration", "0.5"])
    assert result.exit_code == 0 and len(list((tmp_path / "d" / "audio").glob("*.wav"))) == 10


@pytest.mark.parametrize("colormap", ["viridis", "mel3"])
def test_plot_writes_pngs_of_network_size(runner, demo_dir, tmp_path, colormap):
    result = runner.invoke(cli, ["plot", str(demo_dir), "-o", str(tmp_path / "png"), "-c", colormap, "--limit", "3",
                                 "--sample-rate", "16000"])
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 3 and Image.open(pngs[0]).size == (224, 224)


def test_plot_figure_writes_a_labelled_figure_beside_each_image(runner, demo_dir, tmp_path):
    out = tmp_path / "fig"
    result = runner.invoke(cli, ["plot", str(demo_dir), "-o", str(out), "--limit", "2", "--figure", "-sr", "16000"])
    assert result.exit_code == 0, result.output
    images, figures = sorted(out.glob("*.png")), sorted((out / "figures").glob("*.png"))
    assert len(images) == 2 and [p.name for p in figures] == [p.name for p in images]
    with Image.open(images[0]) as image, Image.open(figures[0]) as figure:
        assert image.size == (224, 224) and figure.size == (800, 400)


def test_labelled_figure_has_time_frequency_and_db_axes():
    from deepfeat.config import MelConfig, PlotConfig
    from deepfeat.plot import spectrogram_figure

    fig = spectrogram_figure(tone(1000.0, 2.0), PlotConfig(mel=MelConfig(sample_rate=16000)), title="tone")
    ax, colour_bar = fig.axes
    assert ax.get_xlabel() == "time [s]" and ax.get_xlim()[1] == pytest.approx(2.0, abs=0.02)
    assert ax.get_ylabel().startswith("frequency [Hz]") and ax.get_yscale() == "symlog"  # librosa's mel axis
    assert ax.get_ylim()[1] == pytest.approx(8000.0, rel=0.02)  # Nyquist at 16 kHz (edge of the top band), in Hz
    assert "dB" in colour_bar.get_ylabel() and colour_bar.get_ylim() == (-60.0, 0.0)
    assert ax.get_title().startswith("tone: 128 mel bands")


def test_plot_windows(runner, demo_dir, tmp_path):
    result = runner.invoke(cli, ["plot", str(demo_dir), "-o", str(tmp_path / "w"), "-t", "0.5", "0.25", "--limit", "1",
                                 "--sample-rate", "16000"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "w").glob("*.png"))) == 3  # 1 s clip: windows at 0, 0.25, 0.5 s


def test_extract_writes_store(small_store):
    fs = read_store(small_store)
    assert fs.features.shape == (25, 1280) and fs.config["extractor"]["plot"]["colormap"] == "magma"


def test_inspect(runner, small_store):
    result = runner.invoke(cli, ["inspect", str(small_store)])
    assert result.exit_code == 0
    assert "25 rows x 1280 features" in result.output and "efficientnet_lite0" in result.output
    assert "magma" in result.output and "skipped: 0" in result.output
    data = json.loads(runner.invoke(cli, ["inspect", str(small_store), "--json"]).output)
    assert data["rows"] == 25 and data["finite"] and sum(data["classes"].values()) == 25


@pytest.mark.parametrize("fmt", ["csv", "arff"])
def test_export(runner, small_store, tmp_path, fmt):
    out = tmp_path / f"x.{fmt}"
    result = runner.invoke(cli, ["export", str(small_store), "--format", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    fs = read_store(small_store)
    if fmt == "csv":
        rows = list(csv.reader(open(out)))
        assert rows[0][0] == "name" and rows[0][1] == "neuron_1" and rows[0][-1] == "class" and len(rows) == 26
        assert rows[1][0] == fs.ids[0] and rows[1][-1] == fs.label_names[fs.labels[0]]
        np.testing.assert_allclose(np.array(rows[1][1:-1], float), fs.features[0], rtol=1e-6)
    else:
        text = out.read_text()
        assert text.startswith("@relation") and "@attribute neuron_1280 numeric" in text
        assert text.count("\n@data\n") == 1 and len(text.split("@data\n")[1].strip().splitlines()) == 25


def test_weights_list(runner):
    result = runner.invoke(cli, ["weights", "list"])
    assert result.exit_code == 0
    assert "efficientnet_lite0-imagenet" in result.output and "present" in result.output
    assert "vgg16-imagenet" in result.output


@pytest.mark.parametrize("args,message", [
    (["extract", "{demo}", "-n", "vgg17", "-o", "{tmp}/x.h5"], "unknown network 'vgg17'"),
    (["extract", "{demo}", "-n", "vgg16", "-c", "nocmap", "-o", "{tmp}/x.h5"], "unknown colour map 'nocmap'"),
    (["inspect", "{tmp}/bogus.h5"], "not a readable HDF5 file"),
])
def test_errors_are_one_line_with_exit_status_2(demo_dir, tmp_path, capsys, args, message):
    (tmp_path / "bogus.h5").write_text("nope")
    with pytest.raises(SystemExit) as e:
        main([a.format(demo=demo_dir, tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.startswith("Error: ") and err.count("\n") == 1


def test_extract_list(runner):
    result = runner.invoke(cli, ["extract", "--list"])
    assert result.exit_code == 0 and "densenet121" in result.output and "efficientnet_lite0" in result.output
    rows = {line.split()[0]: line.split(None, 3)[1:] for line in result.output.splitlines()[1:]}
    assert rows["resnet18"] == ["image", "imagenet", "imagenet | none | PATH"]
    assert rows["birdnet"] == ["audio", "birdnet_v2.4", "birdnet_v2.4 | PATH"]  # no random initialisation
