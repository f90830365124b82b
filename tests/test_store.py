import h5py
import numpy as np
import pytest

from deepfeat.errors import StoreError
from deepfeat.store import StoreWriter, describe_difference, read_store, store_status

CONFIG = {"extractor": {"network": "toy", "plot": {"colormap": "magma"}}, "dataset": {"n_clips": 4}}


def write_rows(writer, start, stop, dim=3, windowed=False):
    rows = np.arange(start, stop, dtype=np.float32)[:, None] * np.ones(dim, np.float32)
    writer.commit(rows, [f"c{i}" for i in range(start, stop)], [i % 2 for i in range(start, stop)],
                  [1 + i % 2 for i in range(start, stop)], np.zeros(stop - start) if windowed else None, clips_done=stop)


def test_round_trip(tmp_path):
    w = StoreWriter(tmp_path / "s.h5", CONFIG, ["a", "b"], 4, attrs={"network": "toy"})
    write_rows(w, 0, 2)
    write_rows(w, 2, 4)
    w.commit(np.zeros((0, 3)), [], [], [], clips_done=5, skipped=[("c4", "bad.wav: cannot decode")])
    path = w.finish({"extract_seconds": 1.5})
    assert path == tmp_path / "s.h5" and not (tmp_path / "s.h5.partial").exists()
    fs = read_store(path)
    np.testing.assert_array_equal(fs.features[:, 0], [0, 1, 2, 3])
    assert fs.ids.tolist() == ["c0", "c1", "c2", "c3"] and fs.labels.tolist() == [0, 1, 0, 1]
    assert fs.folds.tolist() == [1, 2, 1, 2] and fs.label_names == ["a", "b"]
    assert fs.config == CONFIG and fs.attrs["network"] == "toy" and fs.attrs["extract_seconds"] == 1.5
    assert fs.skipped == [("c4", "bad.wav: cannot decode")] and fs.window_starts is None
    with h5py.File(path) as f:  # chunked and compressed for h5py users
        assert f["features"].compression == "gzip" and f["features"].chunks is not None


def test_windowed_store_keeps_window_starts(tmp_path):
    w = StoreWriter(tmp_path / "w.h5", CONFIG, ["a", "b"], 2)
    write_rows(w, 0, 2, windowed=True)
    fs = read_store(w.finish())
    assert fs.windowed and fs.window_starts.tolist() == [0.0, 0.0]


def test_resume_continues_after_last_committed_batch(tmp_path):
    w = StoreWriter(tmp_path / "r.h5", CONFIG, ["a", "b"], 4)
    write_rows(w, 0, 2)
    # killed while writing the next batch: a temporary file, never renamed into place
    (tmp_path / "r.h5.partial" / "batch-0000001.tmp").write_bytes(b"half a batch")
    w.close()  # the process ends: the OS releases its lock
    resumed = StoreWriter(tmp_path / "r.h5", CONFIG, ["a", "b"], 4)
    assert resumed.clips_done == 2
    assert not list((tmp_path / "r.h5.partial").glob("*.tmp"))
    write_rows(resumed, 2, 4)
    fs = read_store(resumed.finish())
    np.testing.assert_array_equal(fs.features[:, 0], [0, 1, 2, 3])
    assert not (tmp_path / "r.h5.partial").exists()


def test_other_configuration_refused_unless_overwrite(tmp_path):
    w = StoreWriter(tmp_path / "c.h5", CONFIG, ["a"], 1)
    write_rows(w, 0, 1)
    w.finish()
    other = {**CONFIG, "extractor": {"network": "toy", "plot": {"colormap": "gray"}}}
    with pytest.raises(StoreError, match=r"different configuration \(extractor.plot.colormap: 'magma' -> 'gray'\).*--overwrite"):
        StoreWriter(tmp_path / "c.h5", other, ["a"], 1)
    assert store_status(tmp_path / "c.h5", CONFIG) == "complete"
    w2 = StoreWriter(tmp_path / "c.h5", other, ["a"], 1, overwrite=True)
    assert not (tmp_path / "c.h5").exists() and w2.clips_done == 0
    w2.close()


def test_partial_store_is_not_readable_as_complete(tmp_path):
    w = StoreWriter(tmp_path / "p.h5", CONFIG, ["a"], 4)
    write_rows(w, 0, 1)
    w.close()
    with pytest.raises(StoreError, match="unfinished p.h5.partial exists: rerun"):
        read_store(tmp_path / "p.h5")


@pytest.mark.parametrize("content", [b"not hdf5", None])
def test_not_a_store(tmp_path, content):
    path = tmp_path / "x.h5"
    if content is None:
        with h5py.File(path, "w") as f:
            f["a"] = 1
        match = "not a deepfeat feature store"
    else:
        path.write_bytes(content)
        match = "not a readable HDF5 file"
    with pytest.raises(StoreError, match=match):
        read_store(path)


def test_nothing_extracted_is_an_error(tmp_path):
    w = StoreWriter(tmp_path / "e.h5", CONFIG, ["a"], 1)
    w.commit(np.zeros((0, 3)), [], [], [], clips_done=1, skipped=[("c0", "empty")])
    with pytest.raises(StoreError, match="no clip could be processed"):
        w.finish()


def test_non_finite_features_are_refused(tmp_path):
    w = StoreWriter(tmp_path / "n.h5", CONFIG, ["a"], 1)
    with pytest.raises(StoreError, match="non-finite"):
        w.commit(np.array([[np.nan, 1.0]]), ["c0"], [0], [1], clips_done=1)
    w.close()


def test_describe_difference_finds_nested_key():
    assert describe_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == "a.c: 2 -> 3"
    assert describe_difference({"a": [1, 2]}, {"a": (1, 2)}) == "no difference"
