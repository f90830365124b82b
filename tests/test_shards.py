"""Sharded extraction: the shard plan, the merge, runs in this process and on a Dask LocalCluster
(a worker killed mid-shard included), progress, resume of a failed shard alone."""
from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepfeat.cli.main import cli, main
from deepfeat.config import MelConfig, PlotConfig
from deepfeat.datasets import load_manifest
from deepfeat.cluster import _shard_error
from deepfeat.errors import AudioError, ClusterError, ConfigError, StoreError
from deepfeat.extract import extract_features
from deepfeat.extractors.base import Extractor, seeded
from deepfeat.merge import merge_stores
from deepfeat.shards import ExtractorSpec, Shard, extract_sharded, plan_shards, shard_dir
from deepfeat.store import StoreWriter, read_store

from .test_store import CONFIG, write_rows

BATCH = 4  #: clips per batch: the 25 demo clips make 7 batches, 3 shards of 2, 2 and 3 batches


class BandEnergy(Extractor):
    """A tiny audio "network": log energies of 8 frequency bands through a seeded linear layer.

    ``fail_at``: raise at that call of :meth:`embed`; ``kill_marker``: the first process to reach
    its second call of :meth:`embed` creates this file and kills itself (SIGKILL)."""

    kind = "audio"
    default_weights = "none"
    sample_rate = 16000
    dim = 8

    def __init__(self, name="bands", fail_at=None, kill_marker=None, **kw):
        super().__init__(name, **kw)
        self.fail_at, self.kill_marker, self.calls = fail_at, kill_marker, 0

    def frontend(self, samples):
        power = np.abs(np.fft.rfft(samples)) ** 2
        return np.log1p([band.sum() for band in np.array_split(power, self.dim)]).astype(np.float32)[None]

    def load(self):
        with seeded(self.seed):
            self.model = torch.nn.Linear(self.dim, self.dim)

    def embed(self, inputs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated failure")
        if self.kill_marker and self.calls >= 2:
            try:
                open(self.kill_marker, "x").close()
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        with torch.no_grad():
            return self.model(torch.from_numpy(inputs)).numpy()


@dataclass(frozen=True)
class BandSpec(ExtractorSpec):
    """The spec of :class:`BandEnergy`; Dask workers import it from this module."""

    network: str = "bands"
    fail_at: int | None = None
    kill_marker: str | None = None

    def build(self, device=None):
        return BandEnergy(self.network, seed=self.seed, device="cpu", fail_at=self.fail_at,
                          kill_marker=self.kill_marker)


@pytest.fixture(scope="module")
def manifest(demo_dir):
    return load_manifest(demo_dir)


@pytest.fixture(scope="module")
def single_run(manifest, tmp_path_factory):
    """The store of a single unsharded run of the toy network."""
    out = tmp_path_factory.mktemp("single") / "single.h5"
    return extract_features(manifest, BandSpec().build(), out, clips_per_batch=BATCH, workers=0, progress=False)


#: how a run computed, not what: timings and the CPU plan (a Dask worker's threads are its own)
TIMINGS = {"extract_seconds", "clips_per_second", "load_seconds", "workers", "threads"}


def assert_same_store(path, reference):
    """Same ids, order, labels, folds, features (bit for bit), skipped clips and attributes but timings."""
    a, b = read_store(path), read_store(reference)
    assert a.ids.tolist() == b.ids.tolist() and a.labels.tolist() == b.labels.tolist()
    assert a.folds.tolist() == b.folds.tolist() and a.label_names == b.label_names and a.skipped == b.skipped
    np.testing.assert_array_equal(a.features, b.features)
    assert {k: v for k, v in a.attrs.items() if k not in TIMINGS} == {k: v for k, v in b.attrs.items() if k not in TIMINGS}


@pytest.mark.parametrize("n_clips, count, batch, expected", [
    (25, 3, 4, [(0, 8), (8, 16), (16, 25)]),
    (100, 4, 10, [(0, 20), (20, 50), (50, 70), (70, 100)]),
    (10, 3, 32, [(0, 10)]),  # fewer batches than shards: fewer shards
    (64, 2, 32, [(0, 32), (32, 64)]),
])
def test_plan_is_contiguous_whole_batches(n_clips, count, batch, expected):
    plan = plan_shards(n_clips, count, batch)
    assert [(s.start, s.stop) for s in plan] == expected and plan == plan_shards(n_clips, count, batch)
    assert all(s.count == len(plan) and s.index == i for i, s in enumerate(plan))
    assert all(s.start % batch == 0 for s in plan)


def test_plan_refuses_zero_shards():
    with pytest.raises(ConfigError, match="at least 1"):
        plan_shards(10, 0)


SKIPPED = [("c9", "c9.wav: cannot decode")]


def write_shard(path, start, stop, count, index, config=CONFIG, label_names=("a", "b"), seconds=1.0, skipped=()):
    writer = StoreWriter(path, {**config, "shard": Shard(index, count, start, stop).to_dict()}, list(label_names),
                         stop - start, attrs={"network": "toy", "device": "cpu"})
    write_rows(writer, start, stop, windowed=True)
    writer.commit(np.zeros((0, 3)), [], [], [], clips_done=stop, skipped=skipped)
    return writer.finish({"extract_seconds": seconds})


def test_merge_equals_one_store_of_every_row(tmp_path):
    parts = [write_shard(tmp_path / f"p{i}.h5", lo, hi, 3, i, skipped=SKIPPED if i == 1 else ())
             for i, (lo, hi) in enumerate([(0, 2), (2, 3), (3, 6)])]
    whole = StoreWriter(tmp_path / "whole.h5", CONFIG, ["a", "b"], 6, attrs={"network": "toy", "device": "cpu"})
    write_rows(whole, 0, 6, windowed=True)
    whole.commit(np.zeros((0, 3)), [], [], [], clips_done=6, skipped=SKIPPED)
    whole.finish({"extract_seconds": 3.0, "clips_per_second": 2.0})
    merged = merge_stores(parts, tmp_path / "merged.h5")
    assert_same_store(merged, tmp_path / "whole.h5")
    fs = read_store(merged)
    assert fs.config == CONFIG and fs.attrs["n_clips"] == 6 and fs.attrs["extract_seconds"] == 3.0
    assert fs.skipped == SKIPPED and fs.window_starts.tolist() == [0.0] * 6


@pytest.mark.parametrize("case, message", [
    ("config", r"p2\.h5: made with a different configuration than p0\.h5 \(extractor\.network: 'toy' -> 'other'\)"),
    ("labels", "label_names differ"),
    ("order", "is shard 3 of 3 starting at clip 3, but shard 2 of 3 starting at clip 2 is needed"),
    ("missing", "is one of 3 shards, but 2 were given"),
    ("plain", "not a shard store"),
])
def test_merge_refuses_shards_of_another_run(tmp_path, case, message):
    other = {**CONFIG, "extractor": {**CONFIG["extractor"], "network": "other"}}
    parts = [write_shard(tmp_path / "p0.h5", 0, 2, 3, 0), write_shard(tmp_path / "p1.h5", 2, 3, 3, 1),
             write_shard(tmp_path / "p2.h5", 3, 6, 3, 2, config=other if case == "config" else CONFIG,
                         label_names=("a", "c") if case == "labels" else ("a", "b"))]
    if case == "order":
        parts = [parts[0], parts[2], parts[1]]
    elif case == "missing":
        parts = [parts[0], parts[2]]
    elif case == "plain":
        plain = StoreWriter(tmp_path / "plain.h5", CONFIG, ["a", "b"], 2)
        write_rows(plain, 0, 2)
        parts = [plain.finish(), *parts[1:]]
    with pytest.raises(StoreError, match=message):
        merge_stores(parts, tmp_path / "merged.h5")
    assert not (tmp_path / "merged.h5").exists() and not list(tmp_path.glob("merged*"))


def test_sharded_run_in_process_equals_single_run(manifest, single_run, tmp_path, capsys):
    out = extract_sharded(manifest, BandSpec(), tmp_path / "s.h5", shards=3, clips_per_batch=BATCH, workers=0)
    assert_same_store(out, single_run)
    bar = capsys.readouterr().err  # one progress bar over the clips of every shard
    assert "extract bands (3 shards): 100%" in bar and "25/25" in bar
    assert not shard_dir(out).exists()  # removed after the merge
    log = Path(str(out) + ".log").read_text()
    assert "--- shard 3 of 3 (clips 16-24) ---" in log and "merged 3 shards" in log


def test_keep_shards_keeps_every_shard_store(manifest, single_run, tmp_path):
    out = extract_sharded(manifest, BandSpec(), tmp_path / "k.h5", shards=3, clips_per_batch=BATCH, workers=0,
                          progress=False, keep_shards=True)
    names = sorted(p.name for p in shard_dir(out).glob("*.h5"))
    assert names == [f"shard-0000{i}-of-00003.h5" for i in (1, 2, 3)]
    assert json.loads(read_store(shard_dir(out) / names[1]).attrs["config"])["shard"] == \
        {"index": 1, "count": 3, "start": 8, "stop": 16}


def test_failed_shard_is_rerun_alone(manifest, single_run, tmp_path):
    out = tmp_path / "f.h5"
    with pytest.raises(RuntimeError, match="simulated failure"):  # the 4th batch: shard 2's second
        extract_sharded(manifest, BandSpec(fail_at=4), out, shards=3, clips_per_batch=BATCH, workers=0, progress=False)
    first = Shard(0, 3, 0, 8).path(out)
    done_before = os.stat(first).st_mtime_ns
    assert Shard(1, 3, 8, 16).clips_done(out) == 4 and not Shard(2, 3, 16, 25).path(out).exists()
    assert not out.exists()

    extract_sharded(manifest, BandSpec(), out, clips_per_batch=BATCH, workers=0, progress=False, keep_shards=True)
    assert os.stat(first).st_mtime_ns == done_before  # shard 1 was not extracted again
    shard_logs = {p.name: p.read_text() for p in shard_dir(out).glob("*.log")}
    assert "resuming" in shard_logs["shard-00002-of-00003.h5.log"] and "at clip 12/25" in \
        shard_logs["shard-00002-of-00003.h5.log"]
    assert "resuming" not in shard_logs["shard-00001-of-00003.h5.log"] + shard_logs["shard-00003-of-00003.h5.log"]
    assert_same_store(out, single_run)


def test_unfinished_run_with_another_shard_count_is_refused(manifest, tmp_path):
    out = tmp_path / "c.h5"
    with pytest.raises(RuntimeError):
        extract_sharded(manifest, BandSpec(fail_at=2), out, shards=3, clips_per_batch=BATCH, workers=0, progress=False)
    with pytest.raises(ConfigError, match=r"unfinished run in 3 shards; rerun with --shards 3"):
        extract_sharded(manifest, BandSpec(), out, shards=2, clips_per_batch=BATCH, workers=0, progress=False)
    extract_sharded(manifest, BandSpec(), out, shards=2, clips_per_batch=BATCH, workers=0, progress=False,
                    overwrite=True)
    assert read_store(out).features.shape == (25, 8) and not shard_dir(out).exists()


def test_more_shards_than_batches_resume_with_the_same_option(manifest, tmp_path):
    out = tmp_path / "m.h5"  # 25 clips in batches of 16: 2 batches, so 2 shards of the 5 asked for
    with pytest.raises(RuntimeError):
        extract_sharded(manifest, BandSpec(fail_at=2), out, shards=5, clips_per_batch=16, workers=0, progress=False)
    assert sorted(p.name for p in shard_dir(out).glob("*.h5")) == ["shard-00001-of-00002.h5"]
    extract_sharded(manifest, BandSpec(), out, shards=5, clips_per_batch=16, workers=0, progress=False)
    assert read_store(out).features.shape == (25, 8)


def test_progress_counts_clips_committed_in_each_shard(tmp_path):
    shard = Shard(1, 3, 8, 16)
    assert shard.clips_done(tmp_path / "o.h5") == 0
    writer = StoreWriter(shard.path(tmp_path / "o.h5"), {"shard": shard.to_dict()}, ["a", "b"], len(shard))
    writer.commit(np.ones((4, 3)), [f"c{i}" for i in range(4)], [0] * 4, [1] * 4, clips_done=12)
    assert shard.clips_done(tmp_path / "o.h5") == 4
    writer.commit(np.ones((4, 3)), [f"d{i}" for i in range(4)], [0] * 4, [1] * 4, clips_done=16)
    writer.finish()
    assert shard.clips_done(tmp_path / "o.h5") == 8


def test_cli_scheduler_from_environment_and_options_that_do_nothing(demo_dir, tmp_path, monkeypatch, capsys):
    base = ["extract", str(demo_dir), "-n", "efficientnet_lite0", "-w", "none", "-o", str(tmp_path / "x.h5")]
    result = CliRunner().invoke(cli, [*base, "--keep-shards"])
    assert result.exit_code == 2 and "--keep-shards applies to sharded runs" in result.output
    monkeypatch.setenv("DEEPFEAT_SCHEDULER", "local:1")
    with pytest.raises(SystemExit) as e:
        main([*base, "--workers", "2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("Error: --workers") and err.count("\n") == 1
    assert "on Dask each worker process plans its own front end and threads" in err and not list(tmp_path.iterdir())


def test_unreachable_scheduler_is_one_error_line(demo_dir, tmp_path, capsys):
    pytest.importorskip("distributed")
    with pytest.raises(SystemExit) as e:
        main(["extract", str(demo_dir), "-n", "efficientnet_lite0", "-o", str(tmp_path / "x.h5"), "--scheduler", "nowhere"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "cannot reach the Dask scheduler 'nowhere'" in err


def test_failed_shards_are_named_and_their_errors_kept(tmp_path):
    distributed = pytest.importorskip("distributed")
    plan = plan_shards(25, 3, BATCH)
    error = _shard_error(tmp_path / "o.h5", [(plan[1], AudioError("b.wav: cannot decode"))])
    assert isinstance(error, AudioError) and str(error).startswith("shard 2 of 3: b.wav: cannot decode (the other")
    killed = distributed.KilledWorker("deepfeat-shard-3", SimpleNamespace(address="tcp://w:1"), allowed_failures=3)
    error = _shard_error(tmp_path / "o.h5", [(plan[0], killed), (plan[2], killed)])
    assert isinstance(error, ClusterError) and "shard(s) 1, 3 of 3: their worker died" in str(error)
    bug = KeyError("x")
    assert _shard_error(tmp_path / "o.h5", [(plan[0], bug)]) is bug  # a bug keeps its traceback


# --- on a Dask LocalCluster ----------------------------------------------------------------------
@pytest.mark.slow
def test_three_shards_on_two_local_workers_equal_single_run(manifest, single_run, tmp_path):
    out = extract_sharded(manifest, BandSpec(), tmp_path / "d.h5", shards=3, scheduler="local:2",
                          clips_per_batch=BATCH, progress=False)
    assert_same_store(out, single_run)
    runs = re.findall(r"--- shard (\d) of 3 \(clips \d+-\d+\) on \S+ pid (\d+) \(cpu; networks loaded in that "
                      r"process: (\d+)\) ---", Path(str(out) + ".log").read_text())
    assert sorted(r[0] for r in runs) == ["1", "2", "3"]
    assert len({r[1] for r in runs}) <= 2 and {r[2] for r in runs} == {"1"}  # one load per process, not per shard


@pytest.fixture
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.mark.slow
def test_worker_killed_mid_shard_is_replaced_and_the_shard_resumes(manifest, single_run, cluster, tmp_path):
    marker = tmp_path / "killed"
    out = extract_sharded(manifest, BandSpec(kill_marker=str(marker)), tmp_path / "k.h5", shards=3,
                          scheduler=cluster.scheduler_address, clips_per_batch=BATCH, progress=False, keep_shards=True)
    assert marker.exists()  # a worker did die, after committing its shard's first batch
    logs = [p.read_text() for p in sorted(shard_dir(out).glob("*.log"))]
    resumed = [log for log in logs if "resuming" in log]
    assert len(resumed) == 1 and re.search(r"resuming \S+ at clip (4|12|20)/25", resumed[0])
    assert_same_store(out, single_run)
    with h5py.File(out) as f:
        assert f.attrs["complete"]
