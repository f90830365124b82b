"""The extract pipeline end to end: stores, windows, bad input, resume after kill -9."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfeat.config import MelConfig, PlotConfig
from deepfeat.datasets import load_manifest
from deepfeat.errors import AudioError, StoreError
from deepfeat.extract import extract_features
from deepfeat.extractors import create_extractor
from deepfeat.store import read_store

from .conftest import tone

PLOT = PlotConfig(mel=MelConfig(sample_rate=16000))
DEEPFEAT = [sys.executable, "-m", "deepfeat.cli.main"]


def lite0(**kw):
    return create_extractor("efficientnet_lite0", plot=kw.pop("plot", PLOT), device="cpu", **kw)


@pytest.fixture(scope="module")
def reference_store(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    return extract_features(load_manifest(demo_dir), lite0(), out, clips_per_batch=4, workers=0, progress=False)


def test_store_contents(reference_store, demo_dir):
    fs = read_store(reference_store)
    m = load_manifest(demo_dir)
    assert fs.features.shape == (25, 1280) and np.isfinite(fs.features).all()
    assert fs.ids.tolist() == m.ids() and fs.labels.tolist() == m.label_indices().tolist()
    assert fs.folds.tolist() == m.folds().tolist() and fs.label_names == m.label_names
    assert fs.config["extractor"]["network"] == "efficientnet_lite0"
    assert fs.config["extractor"]["plot"]["mel"]["sample_rate"] == 16000
    assert fs.attrs["weights_sha256"].startswith("57934424") and fs.attrs["manifest_sha256"] == m.fingerprint()
    assert "torch" in fs.attrs["versions"] and fs.attrs["extract_seconds"] > 0
    log = Path(str(reference_store) + ".log").read_text()
    assert "committed 25/25 clips" in log


@pytest.mark.parametrize("workers,threads", [(2, None), (1, 1), (0, 3)])
def test_features_do_not_depend_on_the_plan(reference_store, demo_dir, tmp_path, workers, threads):
    """Bit for bit, for Lite0 (frozen; deepfeat.threads says which networks round differently)."""
    out = extract_features(load_manifest(demo_dir), lite0(), tmp_path / "w.h5", clips_per_batch=4, workers=workers,
                           threads=threads, progress=False)
    np.testing.assert_array_equal(read_store(out).features, read_store(reference_store).features)
    attrs = read_store(out).attrs
    assert attrs["workers"] == workers and attrs["threads"] == (threads or attrs["threads"]) >= 1


def test_plan_and_load_are_reported(demo_dir, tmp_path, capsys):
    out = extract_features(load_manifest(demo_dir), lite0(), tmp_path / "p.h5", workers=0, threads=1, progress=True)
    err = capsys.readouterr().err
    assert "loading efficientnet_lite0 (imagenet weights, cpu; 1 torch thread, front end in this process" in err
    attrs = read_store(out).attrs
    assert attrs["load_seconds"] > 0 and attrs["threads"] == 1 and attrs["workers"] == 0
    assert "plan: 1 torch thread, front end in this process" in Path(str(out) + ".log").read_text()


def test_complete_store_is_not_recomputed(reference_store, demo_dir):
    before = os.stat(reference_store).st_mtime_ns
    extract_features(load_manifest(demo_dir), lite0(), reference_store, workers=0, progress=False)
    assert os.stat(reference_store).st_mtime_ns == before


def test_other_configuration_refused(reference_store, demo_dir):
    other = lite0(plot=PlotConfig(mel=MelConfig(sample_rate=16000), colormap="gray"))
    with pytest.raises(StoreError, match="different configuration .*colormap: 'magma' -> 'gray'"):
        extract_features(load_manifest(demo_dir), other, reference_store, workers=0, progress=False)


def test_windowed_extraction_rows_per_window(tmp_path, write_wav):
    for name, seconds in (("a/x.wav", 1.0), ("b/y.wav", 2.0)):
        write_wav(name, tone(440, seconds), 16000)
    plot = PlotConfig(mel=MelConfig(sample_rate=16000), segment=(1.0, 0.5))
    out = extract_features(load_manifest(tmp_path), lite0(plot=plot), tmp_path / "win.h5", workers=0, progress=False)
    fs = read_store(out)
    assert fs.windowed and fs.ids.tolist() == ["a/x", "b/y", "b/y", "b/y"]
    assert fs.window_starts.tolist() == [0.0, 0.0, 0.5, 1.0] and fs.labels.tolist() == [0, 1, 1, 1]


@pytest.fixture
def awkward_dataset(tmp_path):
    """Every kind of awkward clip, in a folder per class."""
    rng = np.random.default_rng(0)
    d = tmp_path / "awkward"
    clips = {
        "ok/tone.wav": (tone(440, 1.0, 16000), 16000),
        "ok/stereo.wav": (np.stack([tone(440), tone(660)], 1), 16000),
        "ok/rate8k.wav": (tone(440, 1.0, 8000), 8000),
        "ok/rate96k.flac": (tone(440, 1.0, 96000), 96000),
        "ok/short.wav": (tone(440, 0.1, 16000), 16000),
        "ok/long.ogg": (0.1 * rng.standard_normal(60 * 16000).astype(np.float32), 16000),
        "ok/silent.wav": (np.zeros(16000, np.float32), 16000),
    }
    for name, (x, rate) in clips.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(d / name, x, rate)
    (d / "bad").mkdir()
    (d / "bad" / "empty.wav").write_bytes(b"")
    (d / "bad" / "corrupt.wav").write_bytes(b"RIFF" + rng.bytes(3000))
    (d / "bad" / "text.mp3").write_text("this is not audio")
    return d


def test_bad_clips_are_skipped_and_listed(awkward_dataset, tmp_path):
    out = extract_features(load_manifest(awkward_dataset), lite0(), tmp_path / "a.h5", workers=0, progress=False)
    fs = read_store(out)
    assert sorted(fs.ids) == sorted(f"ok/{n}" for n in ("tone", "stereo", "rate8k", "rate96k", "short", "long", "silent"))
    assert np.isfinite(fs.features).all()
    skipped = dict(fs.skipped)
    assert sorted(skipped) == ["bad/corrupt", "bad/empty", "bad/text"]
    assert all(str(awkward_dataset / "bad") in reason and "\n" not in reason for reason in skipped.values())
    log = Path(str(out) + ".log").read_text()
    assert "skipped bad/empty" in log and "skipped bad/corrupt" in log


def test_on_error_fail_stops_naming_the_file(awkward_dataset, tmp_path):
    with pytest.raises(AudioError, match="corrupt.wav"):
        extract_features(load_manifest(awkward_dataset), lite0(), tmp_path / "f.h5", workers=0, progress=False,
                         on_error="fail")


def _wait_for(path: Path, text: str, timeout: float = 120.0):
    end = time.time() + timeout
    while time.time() < end:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


@pytest.fixture(scope="module")
def many_clips(demo_dir, tmp_path_factory):
    """200 clips (symbolic links to the demo clips) in a folder per class: long enough a run to
    interrupt reliably."""
    root = tmp_path_factory.mktemp("many") / "many"
    clips = sorted((demo_dir / "audio").glob("*.wav"))
    for i in range(200):
        source = clips[i % len(clips)]
        target = root / f"class{i % 5}" / f"{i:03d}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
    return root


def _extract_cmd(data, out, batch_size):
    return DEEPFEAT + ["extract", str(data), "-n", "efficientnet_lite0", "-o", str(out), "--sample-rate", "16000",
                       "--batch-size", str(batch_size), "--workers", "0", "--device", "cpu", "-q"]


def test_resume_after_kill_minus_9_ends_identical(many_clips, tmp_path):
    reference = tmp_path / "uninterrupted.h5"
    subprocess.run(_extract_cmd(many_clips, reference, 8), check=True, capture_output=True)
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(_extract_cmd(many_clips, out, 8), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(Path(str(out) + ".log"), "committed 16/200")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    partial = Path(str(out) + ".partial")
    assert partial.exists() and not out.exists()
    resumed = subprocess.run(_extract_cmd(many_clips, out, 8), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    log = Path(str(out) + ".log").read_text()
    assert "resuming" in log
    a, b = read_store(out), read_store(reference)
    np.testing.assert_array_equal(a.features, b.features)
    assert a.ids.tolist() == b.ids.tolist() and a.labels.tolist() == b.labels.tolist()


def test_ctrl_c_keeps_finished_batches(many_clips, tmp_path):
    out = tmp_path / "int.h5"
    proc = subprocess.Popen(_extract_cmd(many_clips, out, 4), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(Path(str(out) + ".log"), "committed 4/200")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun the same command to resume" in err
    assert Path(str(out) + ".partial").exists()


@pytest.mark.parametrize("share", [True, False])
def test_worker_batches_are_unpacked_as_they_were_packed(share):
    from deepfeat.extract import PreparedClip, _pack, _unpack

    rng = np.random.default_rng(0)
    shapes = [(1, 4, 5, 3), None, (3, 4, 5, 3)]
    items = [PreparedClip(i, rng.integers(0, 255, s, dtype=np.uint8), np.array([s[0]]), np.zeros(1)) if s else
             PreparedClip(i, None, None, None, "x.wav: cannot decode") for i, s in enumerate(shapes)]
    expected = [None if c.inputs is None else c.inputs.copy() for c in items]
    packed = _pack(items, share)
    assert (packed[1] is not None) == share and (items[0].inputs is None) == share
    for clip, want in zip(_unpack(packed), expected):
        assert (clip.inputs is None and want is None) or np.array_equal(clip.inputs, want)
