"""The dataset readers on tiny synthetic copies of their official layouts (DCASE 2017 task 1,
DCASE 2018 task 5, GTZAN), multi-channel rows and the reader registry."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from deepfeat.audio import load_audio
from deepfeat.datasets import dataset_readers, detect_layout, load_manifest
from deepfeat.errors import ConfigError, ManifestError

from .conftest import tone


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """Each layout's demo copy: 5 labels x 4 development clips (one per fold) + 5 evaluation clips."""
    root = tmp_path_factory.mktemp("layouts")
    return {name: dataset_readers()[name].demo(root / name, clips_per_class=4, duration=0.3)
            for name in ("dcase2017", "dcase2018")} | \
        {"gtzan": dataset_readers()["gtzan"].demo(root / "gtzan", clips_per_class=10, duration=0.2)}


@pytest.mark.parametrize("name,dev,evaluation,metric,labels", [
    ("dcase2017", "TUT-acoustic-scenes-2017-development", "TUT-acoustic-scenes-2017-evaluation", "accuracy",
     ["beach", "bus", "cafe/restaurant", "car", "city_center"]),
    ("dcase2018", "DCASE2018-task5-dev", "DCASE2018-task5-eval", "macro_f1",
     ["absence", "cooking", "dishwashing", "social_activity", "working"]),
])
def test_dcase_development_evaluation_and_both(layouts, name, dev, evaluation, metric, labels):
    both = load_manifest(layouts[name])
    assert both.layout == name and both.primary_metric == metric and both.label_names == labels
    assert both.evaluation_folds == (5,)
    folds = both.folds()
    assert sorted(set(folds.tolist())) == [1, 2, 3, 4, 5]
    assert all((folds[both.label_indices() == c] <= 4).sum() == 4 for c in range(5))  # 4 dev clips per label
    development = load_manifest(layouts[name] / dev)
    assert development.evaluation_folds == () and len(development) == 20
    # folds come from evaluation_setup/foldK_evaluate.txt: file k of every label is in fold k % 4 + 1
    lines = (layouts[name] / dev / "evaluation_setup" / "fold3_evaluate.txt").read_text().split()
    in_fold3 = {c.id for c in development.clips if c.fold == 3}
    assert in_fold3 == {line.split("/")[-1].removesuffix(".wav") for line in lines if line.startswith("audio/")}
    held_out = load_manifest(layouts[name] / evaluation)
    assert held_out.ids() == ["1", "2", "3", "4", "5"] and set(held_out.folds()) == {5}
    assert held_out.label_names == labels and held_out.evaluation_folds == (5,)


def test_dcase2018_channels_each_gives_one_row_per_channel(layouts):
    mixed = load_manifest(layouts["dcase2018"])
    each = load_manifest(layouts["dcase2018"], channels="each")
    assert len(each) == 4 * len(mixed) and each.n_clips == mixed.n_clips == len(mixed)
    assert each.name == f"{mixed.name}-per-channel" and each.fingerprint() != mixed.fingerprint()
    assert each.channels().tolist() == [0, 1, 2, 3] * len(mixed) and mixed.channels() is None
    assert each.ids()[:4] == [mixed.ids()[0]] * 4
    clip = each.clips[2]
    channel, _ = load_audio(clip.path, channel=clip.channel)
    everything, _ = load_audio(clip.path)
    assert channel.shape == everything.shape and not np.allclose(channel, everything)


def test_channels_each_reads_the_channel_count_of_other_layouts(layouts):
    each = load_manifest(layouts["dcase2017"], channels="each")  # binaural: 2 rows per clip
    assert len(each) == 2 * each.n_clips and set(each.channels().tolist()) == {0, 1}


def _copy(layouts, name, tmp_path):
    return shutil.copytree(layouts[name], tmp_path / name)


@pytest.mark.parametrize("edit,message", [
    (lambda d: (d / "evaluation_setup" / "fold2_evaluate.txt").write_text(
        (d / "evaluation_setup" / "fold1_evaluate.txt").read_text().splitlines()[0] + "\n"),
     r"fold2_evaluate.txt:1: 'audio/.*' is also a test file of fold 1"),
    (lambda d: (d / "evaluation_setup" / "fold4_evaluate.txt").unlink() or
     (d / "evaluation_setup" / "fold4_test.txt").unlink(), r"5 file\(s\) of meta.txt are in no fold's test list"),
    (lambda d: (d / "meta.txt").write_text((d / "meta.txt").read_text() + "audio/only_a_name.wav\n"),
     r"meta.txt:21: 1 tab-separated field\(s\)"),
    (lambda d: (d / "evaluation_setup" / "fold1_evaluate.txt").write_text("audio/DevNode1_ex1_1.wav\tcooking\n"),
     r"fold1_evaluate.txt:1: label 'cooking' differs from meta.txt \('absence'\)"),
])
def test_dcase_lists_are_checked(layouts, tmp_path, edit, message):
    dev = _copy(layouts, "dcase2018", tmp_path) / "DCASE2018-task5-dev"
    edit(dev)
    with pytest.raises(ManifestError, match=message):
        load_manifest(dev)


def test_a_renamed_development_folder_is_recognised_by_its_file_names(layouts, tmp_path):
    dev = shutil.copytree(layouts["dcase2018"] / "DCASE2018-task5-dev", tmp_path / "my-copy")
    assert detect_layout(dev).name == "dcase2018" and len(load_manifest(dev)) == 20


@pytest.mark.parametrize("n_folds,per_fold", [(None, 2), (5, 2), (10, 1)])
def test_gtzan_stratified_contiguous_folds(layouts, n_folds, per_fold):
    m = load_manifest(layouts["gtzan"], n_folds=n_folds)
    assert m.layout == "gtzan" and m.label_names == ["blues", "classical", "country", "disco", "hiphop"]
    folds, labels = m.folds(), m.label_indices()
    expected = 10 // per_fold
    for c in range(5):
        assert np.bincount(folds[labels == c])[1:].tolist() == [per_fold] * expected
    blues = [c for c in m.clips if c.label == "blues"]
    assert [c.id for c in blues[:2]] == ["blues.00000", "blues.00001"]
    assert [c.fold for c in blues] == [k // per_fold + 1 for k in range(10)]  # contiguous blocks in file order


def test_gtzan_original_archive_layout(tmp_path, write_wav):
    for genre in ("jazz", "rock"):
        for k in range(5):
            write_wav(f"gtzan/genres/{genre}/{genre}.{k:05d}.au", tone(seconds=0.1), 16000, format="AU")
    m = load_manifest(tmp_path / "gtzan" / "genres")
    assert m.layout == "gtzan" and len(m) == 10 and m.folds().tolist() == [1, 2, 3, 4, 5] * 2
    with pytest.raises(ManifestError, match="fewer than the 10 folds"):
        load_manifest(tmp_path / "gtzan", n_folds=10)


def test_options_of_other_layouts_are_refused(layouts):
    with pytest.raises(ConfigError, match=r"n_folds \(--folds\) do not apply to the dcase2018 layout"):
        load_manifest(layouts["dcase2018"], n_folds=10)
    with pytest.raises(ConfigError, match="channels must be one of mix, each"):
        load_manifest(layouts["dcase2018"], channels="left")
    with pytest.raises(ConfigError, match="unknown dataset layout 'tut'"):
        load_manifest(layouts["dcase2018"], layout="tut")


def test_every_layout_documents_its_protocol():
    readers = dataset_readers()
    assert list(readers)[0] == "label_csv" and list(readers)[-1] == "folders"
    assert {"esc50", "urbansound8k", "dcase2017", "dcase2018", "gtzan", "label_csv", "folders"} <= set(readers)
    assert all(r.layout and r.protocol for r in readers.values())


def test_plot_writes_one_image_per_channel(layouts, tmp_path):
    from deepfeat.config import PlotConfig
    from deepfeat.plot import write_images

    n = write_images(load_manifest(layouts["dcase2018"], channels="each"), PlotConfig(size=(32, 32)), tmp_path, 4)
    assert n == 4 and sorted(p.name for p in tmp_path.iterdir()) == [f"DevNode1_ex1_1_ch{k}.png" for k in range(4)]


def test_demo_data_command_writes_each_layout(tmp_path, capsys):
    from deepfeat.cli.main import main

    main(["demo-data", str(tmp_path / "g"), "--layout", "gtzan", "--clips-per-class", "5", "--duration", "0.1"])
    assert "in the gtzan layout" in capsys.readouterr().out and load_manifest(tmp_path / "g").layout == "gtzan"
