"""Classifying stores larger than memory: the lazy row view (deepfeat.rows), StreamingSVM
(deepfeat.sgd) and ``deepfeat svm --svm sgd`` through the fold protocol."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from deepfeat.classify import run_svm, store_data
from deepfeat.rows import StoreRows
from deepfeat.sgd import StreamingSVM
from deepfeat.store import read_store

from .helpers import blobs, write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """3 separable classes x 5 folds x 40 clips, 32 features (chunks of 256 rows)."""
    return write_store(tmp_path_factory.mktemp("sgd") / "blobs.h5", blobs(n_classes=3, per_cell=40, dim=32, seed=1))


@pytest.mark.parametrize("select", [
    slice(None), np.arange(599, -1, -3), np.r_[5, 300, 1, 599, 256, 255], np.arange(600) % 7 == 2, slice(250, 270)])
@pytest.mark.parametrize("block_rows", [1, 100, 5000])
def test_view_reads_the_rows_it_names_block_by_block(store, select, block_rows):
    features = read_store(store).features
    view = StoreRows(store)[select]
    expected = features[select]
    assert isinstance(view, StoreRows) and view.shape == expected.shape and len(view) == len(expected)
    seen = np.zeros(len(view), dtype=int)
    for positions, X in view.blocks(block_rows):
        assert len(X) <= max(block_rows, 256) and X.dtype == np.float32
        np.testing.assert_array_equal(X, expected[positions])
        seen[positions] += 1
    assert (seen == 1).all()  # every row once
    np.testing.assert_array_equal(view.read(), expected)


def test_view_of_a_view_and_random_epochs(store):
    features = read_store(store).features
    view = StoreRows(store)[np.arange(100, 600)][np.arange(0, 500, 2)]
    np.testing.assert_array_equal(view.read(), features[100:600:2])
    orders = [np.concatenate([p for p, _ in view.blocks(64, np.random.default_rng(seed))]) for seed in (0, 1)]
    assert sorted(orders[0]) == list(range(250)) and not np.array_equal(orders[0], orders[1])
    with pytest.raises(TypeError, match="array of rows"):
        view[3]


def test_lazy_store_is_the_same_protocol_data(store):
    eager, lazy = store_data(read_store(store)), store_data(read_store(store, lazy=True))
    assert isinstance(lazy.X, StoreRows) and len(lazy.X) == len(eager.X) == 600
    np.testing.assert_array_equal(lazy.X[np.arange(10, 20)].read(), eager.X[10:20])
    assert lazy.units.ids.tolist() == eager.units.ids.tolist()


@pytest.mark.parametrize("lazy", [False, True])
def test_separable_classes_are_learnt(store, lazy):
    fs = read_store(store, lazy=lazy)
    train, test = fs.folds != 5, fs.folds == 5
    X = fs.features
    model = StreamingSVM(Cs=(0.01, 1.0), epochs=5, block_rows=64).fit(X[np.flatnonzero(train)], fs.labels[train],
                                                                    groups=fs.folds[train])
    assert (model.predict(X[np.flatnonzero(test)]) == fs.labels[test]).mean() >= 0.97
    assert model.best_C_ in (0.01, 1.0) and len(model.cv_results_) == 2
    assert model.summary_["best_C"] == model.best_C_ and model.best_params_ == {"Cs": (model.best_C_,)}


def test_lazy_and_in_memory_fits_agree(store):
    fs, lazy = read_store(store), read_store(store, lazy=True)
    a = StreamingSVM(Cs=(1.0,), epochs=3, block_rows=10_000).fit(fs.features, fs.labels)
    b = StreamingSVM(Cs=(1.0,), epochs=3, block_rows=10_000).fit(lazy.features, fs.labels)
    np.testing.assert_allclose(a.scaler_.mean_, b.scaler_.mean_, rtol=1e-6)
    assert (a.predict(fs.features) == b.predict(lazy.features)).mean() >= 0.99


def peak_bytes(fit) -> int:
    tracemalloc.start()
    try:
        fit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_block_not_the_store(tmp_path):
    """Stores of 3000 and 12000 rows x 256 features (3 and 12 MB in float32): a fit reading 128 rows
    at a time peaks at the same few hundred kB on both; the same fit in one block of every row
    holds more than the whole store."""
    def fit_peaks(per_cell: int) -> tuple[int, int, int]:
        data = blobs(n_classes=3, n_folds=5, per_cell=per_cell, dim=256, seed=3)
        fs = read_store(write_store(tmp_path / f"{per_cell}.h5", data), lazy=True)

        def fit(block_rows):
            return lambda: StreamingSVM(Cs=(1.0,), epochs=1, block_rows=block_rows).fit(fs.features, fs.labels)

        fit(128)()  # imports and caches outside the measurement
        return fs.features.shape[0] * 256 * 4, peak_bytes(fit(128)), peak_bytes(fit(10 ** 6))

    small_store, small_peak, _ = fit_peaks(200)
    big_store, big_peak, whole_peak = fit_peaks(800)
    assert big_store == 4 * small_store and big_peak < 1.25 * small_peak  # does not grow with the rows
    assert big_peak < big_store / 4 and whole_peak > big_store


def test_svm_sgd_runs_the_protocol_on_a_store_read_in_blocks(store, tmp_path, monkeypatch):
    def refuse(*_):
        raise AssertionError("read the whole store")

    monkeypatch.setattr(StoreRows, "read", refuse)
    metrics = run_svm(store, fold=5, run_dir=tmp_path / "run", kind="sgd", c_grid=(0.01, 1.0), n_jobs=1)
    assert metrics["svm"] == "sgd" and metrics["test_accuracy"] >= 0.97 and metrics["devel_accuracy"] >= 0.97
    assert metrics["best_C"] in (0.01, 1.0) and "SGDClassifier" in metrics["sgd"]
    assert (tmp_path / "run" / "scores.h5").exists() and (tmp_path / "run" / "model.joblib").exists()
