"""The Python API: deepfeat.embed / embed_frames / load_extractor / load_features, FeatureSet.to_pandas."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import deepfeat
from deepfeat.cli.main import main
from deepfeat.errors import AudioError, ConfigError

from .conftest import tone
from .helpers import blobs, write_store


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    """Two clips (a tone and a noise burst, 16 kHz float WAV) and a label CSV naming them."""
    folder = tmp_path_factory.mktemp("two")
    rng = np.random.default_rng(0)
    clips = {"tone.wav": tone(660.0, 1.2), "noise.wav": (0.3 * rng.standard_normal(14000)).astype(np.float32)}
    for name, samples in clips.items():
        sf.write(folder / name, samples, 16000, subtype="FLOAT")
    (folder / "labels.csv").write_text("file,label\ntone.wav,tonal\nnoise.wav,noisy\n")
    return folder, [folder / name for name in clips], list(clips.values())


def clip_ids(folder, paths) -> list[str]:
    """The store ids of ``paths`` (as the dataset reader names clips)."""
    from deepfeat.datasets import load_manifest

    ids = {clip.path.resolve(): clip.id for clip in load_manifest(folder / "labels.csv").clips}
    return [ids[p.resolve()] for p in paths]


def cli_store(folder, out, *options):
    try:
        main(["extract", str(folder / "labels.csv"), "-n", "efficientnet_lite0", "--device", "cpu", "--workers", "0",
              "-q", "-o", str(out), *options])
    except SystemExit as e:
        assert e.code in (0, None)
    return deepfeat.load_features(out)


@pytest.mark.slow  # two extractions (CLI, API), each building and tracing the network
def test_embed_of_two_files_equals_the_rows_of_a_cli_store(two_files, tmp_path):
    folder, paths, _ = two_files
    store = cli_store(folder, tmp_path / "cli.h5")
    features = deepfeat.embed([str(p) for p in paths], device="cpu")
    assert features.shape == (2, 1280) and features.dtype == np.float32
    rows = [int(np.flatnonzero(store.ids == i)[0]) for i in clip_ids(folder, paths)]
    np.testing.assert_allclose(features, store.features[rows], rtol=1e-5, atol=1e-6)
    assert not np.allclose(features[0], features[1])  # two different clips, two different rows


@pytest.mark.slow
def test_embed_frames_equals_the_rows_of_a_windowed_cli_store(two_files, tmp_path):
    folder, paths, _ = two_files
    store = cli_store(folder, tmp_path / "cli-t.h5", "-t", "0.5", "0.25")
    frames = deepfeat.embed_frames(paths, window=(0.5, 0.25), device="cpu")
    assert len(frames) == 2
    for clip, (features, starts) in zip(clip_ids(folder, paths), frames):
        rows = store.ids == clip
        np.testing.assert_allclose(starts, store.window_starts[rows])
        np.testing.assert_allclose(features, store.features[rows], rtol=1e-5, atol=1e-6)
    single, starts = deepfeat.embed_frames(paths[0], window=(0.5, 0.25), device="cpu")
    np.testing.assert_array_equal(single, frames[0][0])
    # embed with a window: the mean of the windows' rows
    np.testing.assert_allclose(deepfeat.embed(paths[0], window=(0.5, 0.25), device="cpu")[0], single.mean(axis=0),
                               rtol=1e-6)


def test_arrays_need_their_rate_and_are_resampled(two_files):
    _, paths, samples = two_files
    from_file = deepfeat.embed(paths[0], device="cpu")
    np.testing.assert_array_equal(deepfeat.embed(samples[0], sr=16000, device="cpu"), from_file)
    import torch

    np.testing.assert_array_equal(deepfeat.embed([torch.from_numpy(samples[0])], sr=16000, device="cpu"), from_file)
    with pytest.raises(ConfigError, match=r"pass its sample rate, e\.g\. sr=16000"):
        deepfeat.embed(samples[0], device="cpu")
    assert not np.allclose(deepfeat.embed(samples[0], sr=32000, device="cpu"), from_file)  # the rate matters


@pytest.mark.parametrize("bad, error, message", [
    (np.zeros((16000, 2), np.float32), ConfigError, "ambiguous"),
    ([np.zeros((2, 8000), np.float32)], ConfigError, "1-D mono samples"),
    ([np.array([0.0, np.nan, 0.0], np.float32)], AudioError, "NaN"),
    ([np.zeros(0, np.float32)], AudioError, "no samples"),
    (["/no/such/file.wav"], AudioError, "no such audio file"),
])
def test_bad_inputs_are_one_line_errors(bad, error, message):
    with pytest.raises(error, match=message) as e:
        deepfeat.embed(bad, sr=16000, device="cpu")
    assert "\n" not in str(e.value)


def test_the_extractor_is_loaded_once_and_reused(monkeypatch):
    from deepfeat.extractors.image_cnn import ImageCNNExtractor

    first = deepfeat.load_extractor(device="cpu")
    loads = []
    monkeypatch.setattr(ImageCNNExtractor, "load", lambda self: loads.append(self))
    assert deepfeat.load_extractor("efficientnet_lite0", device="cpu") is first and first.is_loaded
    deepfeat.embed(tone(seconds=0.5), sr=16000, device="cpu")
    assert loads == []  # cached: nothing built again
    assert deepfeat.load_extractor(device="cpu", window=(0.5, 0.5)) is not first


def test_an_empty_list_gives_no_rows():
    assert deepfeat.embed([], device="cpu").shape == (0, 1280)


def test_import_deepfeat_is_light_and_lists_its_api():
    code = ("import sys, deepfeat; print(sorted(m for m in ('torch', 'sklearn', 'pandas', 'h5py') if m in sys.modules));"
            "print(' '.join(dir(deepfeat)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert {"embed", "embed_frames", "load_extractor", "load_features", "FeatureSet", "TunedSVM"} <= set(out[1].split())


# --- FeatureSet ---------------------------------------------------------------------------------
@pytest.mark.parametrize("windows", [1, 3])
def test_to_pandas_round_trips_ids_labels_folds_and_features(tmp_path, windows):
    data = blobs(n_classes=3, per_cell=2, dim=5, windows=windows)
    fs = deepfeat.load_features(write_store(tmp_path / "s.h5", data))
    assert all(type(i) is str for i in fs.ids) and all(type(n) is str for n in fs.label_names)
    frame = fs.to_pandas()
    assert list(frame.index.names) == ["file", "start", "end"] and len(frame) == len(data["ids"])
    assert list(frame.columns[:2]) == ["label", "fold"] and list(frame.columns[2:]) == fs.feature_names
    assert frame.index.get_level_values("file").tolist() == list(data["ids"])
    assert frame["label"].cat.categories.tolist() == data["label_names"]
    np.testing.assert_array_equal(frame["label"].cat.codes.to_numpy(), data["labels"])
    np.testing.assert_array_equal(frame["fold"].to_numpy(), data["folds"])
    np.testing.assert_array_equal(frame[fs.feature_names].to_numpy(), data["features"])
    np.testing.assert_array_equal(fs.to_numpy(), data["features"])
    starts = frame.index.get_level_values("start")
    assert starts.dtype.kind == "m"
    expected = data["window_starts"] if windows > 1 else np.zeros(len(data["ids"]))
    np.testing.assert_allclose(starts.total_seconds(), expected)


def test_to_pandas_index_ends_windows_and_marks_unlabelled_rows(tmp_path):
    data = blobs(n_classes=2, per_cell=1, dim=3, windows=2)
    data["labels"][0] = -1
    fs = deepfeat.load_features(write_store(tmp_path / "s.h5", data))
    fs.config = {"extractor": {"segment": [0.5, 0.5]}}
    frame = fs.to_pandas()
    ends = frame.index.get_level_values("end").total_seconds()
    np.testing.assert_allclose(ends, data["window_starts"] + 0.5)
    assert pd.isna(frame["label"].iloc[0]) and frame["label"].iloc[1] == "class0"
    fs.config, fs.window_starts = {}, None  # whole clips of unknown length: to the end of the file
    assert frame.shape[0] == fs.to_pandas().shape[0] and fs.to_pandas().index.get_level_values("end").isna().all()
