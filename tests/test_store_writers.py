"""One writer per store: the journal lock, what a journal's batches must share, and stores whose
rows repeat (issue 14, case 1)."""
import subprocess
import sys

import numpy as np
import pytest

from deepfeat.classify import run_svm
from deepfeat.errors import StoreError
from deepfeat import store
from deepfeat.store import StoreWriter, read_store

from .helpers import blobs, write_store

CONFIG = {"extractor": {"network": "toy"}, "dataset": {"n_clips": 4}}
BATCHING = {"clips_per_batch": 2}
HOLD = ("import sys, time\n"
        "from deepfeat.store import StoreWriter\n"
        "w = StoreWriter(sys.argv[1], {'extractor': {'network': 'toy'}, 'dataset': {'n_clips': 4}}, ['a', 'b'], 4,\n"
        "                batching={'clips_per_batch': 2})\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n")


def writer(path, batching=BATCHING, **kw):
    return StoreWriter(path, CONFIG, ["a", "b"], 4, batching=batching, **kw)


def commit(w, start, stop, **kw):
    ids = [f"c{i}" for i in range(start, stop)]
    w.commit(np.full((stop - start, 3), start, np.float32), ids, [i % 2 for i in range(start, stop)],
             [1 + i % 2 for i in range(start, stop)], clips_done=stop, **kw)


def test_second_writer_stops_naming_the_first_process_and_kill_9_releases_the_lock(tmp_path):
    path = tmp_path / "s.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=rf"s\.h5: another process \(pid {holder.pid}\) is writing it"):
            writer(path)
        with pytest.raises(StoreError, match="another process"):  # --overwrite does not take a store away either
            writer(path, overwrite=True)
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the OS drops the lock
        holder.wait()
    with writer(path) as w:  # the journal the killed process started is resumed
        assert w.clips_done == 0
        commit(w, 0, 4)
        w.finish()
    assert read_store(path).ids.tolist() == ["c0", "c1", "c2", "c3"]
    assert not (tmp_path / "s.h5.partial").exists()


def test_a_writer_in_the_same_process_is_refused_until_closed(tmp_path):
    first = writer(tmp_path / "p.h5")
    with pytest.raises(StoreError, match="another writer in this process"):
        writer(tmp_path / "p.h5")
    first.close()
    writer(tmp_path / "p.h5").close()


def test_resume_with_other_batching_is_refused(tmp_path):
    with writer(tmp_path / "b.h5") as w:
        commit(w, 0, 2)
    with pytest.raises(StoreError, match=r"written with clips_per_batch: 2 \(this run: 16\).*--overwrite"):
        writer(tmp_path / "b.h5", batching={"clips_per_batch": 16})
    with writer(tmp_path / "b.h5") as w:  # the same batching resumes
        assert w.clips_done == 2
    with writer(tmp_path / "b.h5", batching={"clips_per_batch": 16}, overwrite=True) as w:
        assert w.clips_done == 0


def test_journal_of_another_version_is_refused(tmp_path):
    import json

    with writer(tmp_path / "v.h5") as w:
        commit(w, 0, 2)
    header = tmp_path / "v.h5.partial" / "header.json"
    old = json.loads(header.read_text())
    del old["journal_version"], old["batching"]  # as the journals before version 2 were
    header.write_text(json.dumps(old))
    with pytest.raises(StoreError, match="journal version 1 .*--overwrite"):
        writer(tmp_path / "v.h5")


def test_batches_that_do_not_follow_each_other_are_refused(tmp_path):
    import shutil

    with writer(tmp_path / "g.h5") as w:
        commit(w, 0, 2)
        commit(w, 2, 4)
    partial = tmp_path / "g.h5.partial"
    # a second process that also started at clip 0 numbered its first batch after the first one's
    shutil.copy(partial / "batch-0000000.npz", partial / "batch-0000002.npz")
    with pytest.raises(StoreError, match="batch-0000002.npz starts at clip 0 but the batches before it end at clip 4"):
        writer(tmp_path / "g.h5")


def test_commit_must_continue_the_journal(tmp_path):
    with writer(tmp_path / "c.h5") as w:
        commit(w, 0, 2)
        with pytest.raises(StoreError, match="does not follow the journal"):
            commit(w, 0, 2, clips_start=0)


@pytest.mark.parametrize("ids,starts,message", [
    (["a", "b", "a"], None, "rows of clip 'a' are not contiguous"),
    (["a", "a", "b"], None, "clip 'a' has more than one row"),
    (["a", "a", "b"], [0.5, 0.5, 0.0], r"clip 'a' has more than one row with window_starts = 0.5"),
    (["a", "b", "a"], [0.0, 0.0, 0.5], "rows of clip 'a' are not contiguous"),
])
def test_repeated_rows_are_refused(ids, starts, message):
    with pytest.raises(StoreError, match=message):
        store.check_rows("x.h5", np.array(ids, dtype=object), None if starts is None else {"window_starts": starts})


def test_windows_of_a_clip_are_not_repeats():
    store.check_rows("x.h5", np.array(["a", "a", "a", "b"], dtype=object), {"window_starts": [0.0, 0.5, 1.0, 0.0]})
    store.check_rows("x.h5", np.array(["a", "b"], dtype=object))


def test_svm_refuses_a_store_with_repeated_clips(tmp_path):
    data = blobs(n_classes=2, per_cell=2)
    for key in ("features", "ids", "labels", "folds"):  # the clips of fold 1 written a second time
        data[key] = np.concatenate([data[key], data[key][data["folds"] == 1]])
    store = write_store(tmp_path / "twice.h5", data)
    with pytest.raises(StoreError, match="twice.h5: the rows of clip 'f1-c0-0' are not contiguous"):
        run_svm(store, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_extract_processes_on_one_store(demo_dir, tmp_path):
    """The audit's case: a second `deepfeat extract` to the same store (another batch size) while
    the first runs. The second stops at once, naming the first; the first's store is whole."""
    import time
    from pathlib import Path

    data = tmp_path / "many"
    clips = sorted((demo_dir / "audio").glob("*.wav"))
    for i in range(120):
        target = data / f"class{i % 5}" / f"{i:03d}-{clips[i % len(clips)].name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(clips[i % len(clips)])
    out = tmp_path / "c.h5"

    def extract(batch_size):
        return [sys.executable, "-m", "deepfeat.cli.main", "extract", str(data), "-n", "efficientnet_lite0", "-o",
                str(out), "-sr", "16000", "--batch-size", str(batch_size), "--workers", "0", "--device", "cpu", "-q"]

    first = subprocess.Popen(extract(4), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = Path(str(out) + ".log")
    deadline = time.time() + 300
    while not (log.exists() and "committed 4/120" in log.read_text()):
        assert time.time() < deadline and first.poll() is None, "the first writer never committed a batch"
        time.sleep(0.05)
    second = subprocess.run(extract(16), capture_output=True, text=True)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
    assert second.stderr.strip() == f"Error: {out}: another process (pid {first.pid}) is writing it; wait for that " \
                                    "process to finish (or stop it), then rerun this command to resume"
    assert first.poll() is None, "the first writer ended before the second one stopped: the runs did not overlap"
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    fs = read_store(out)
    assert len(fs.ids) == len(set(fs.ids)) == 120
