"""The protocol with an evaluation partition (a fold that is never a development fold), channel
rows in stores, and the selection metric defaulting to the dataset's primary metric."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deepfeat.classify import run_svm, store_data
from deepfeat.errors import ConfigError
from deepfeat.evaluation import development_folds
from deepfeat.fusion import run_fusion, select_group
from deepfeat.protocol import ProtocolData, chosen_test_folds, evaluate_fold, resolve_test_fold
from deepfeat.report import write_report
from deepfeat.scores import read_scores
from deepfeat.store import StoreWriter, read_store
from deepfeat.svm import TunedSVM

from .helpers import blobs, feature_set

#: blobs() folds 1-5 where fold 5 plays the evaluation set
EVALUATION = (5,)


def _data(**kw) -> ProtocolData:
    d = blobs(n_folds=5, per_cell=3, **kw)
    return ProtocolData.from_rows(d["features"], d["labels"], d["folds"], d["label_names"], ids=d["ids"],
                                  evaluation_folds=EVALUATION, primary_metric="macro_f1")


def test_development_folds_never_include_an_evaluation_partition():
    folds = [1, 2, 3, 4, 5]
    assert development_folds(folds, 5, evaluation_folds=EVALUATION) == [1, 2, 3, 4]
    assert development_folds(folds, 2, evaluation_folds=EVALUATION) == [1, 3, 4]
    assert development_folds(folds, 2) == [1, 3, 4, 5]


def test_the_evaluation_partition_as_test_fold():
    result = evaluate_fold(TunedSVM(Cs=(0.1, 1.0), n_jobs=1), _data(), resolve_test_fold("evaluation", EVALUATION),
                           system="svm-toy")
    m = result.metrics
    assert m["test_fold"] == 5 and m["test_partition"] == "evaluation" and m["development_folds"] == [1, 2, 3, 4]
    assert m["primary_metric"] == "macro_f1" and m["evaluation_folds"] == [5]
    assert len(result.scores.ids) == 5 * 3 * 3 and result.scores.evaluation_folds == EVALUATION


def test_with_a_development_fold_as_test_the_evaluation_partition_is_left_out():
    seen = []

    class Recorder(TunedSVM):
        def fit(self, X, y, groups=None, clips=None):
            seen.append(set(np.unique(groups).tolist()))
            return super().fit(X, y, groups=groups, clips=clips)

    data = _data()
    result = evaluate_fold(Recorder(Cs=(1.0,), n_jobs=1), data, 2, system="svm-toy")
    assert all(5 not in folds for folds in seen) and {1, 3, 4} in seen  # never trained on fold 5
    assert result.metrics["development_folds"] == [1, 3, 4] and result.metrics["test_partition"] == "fold"
    assert set(result.scores.folds.tolist()) == {1, 2, 3, 4} and np.isfinite(result.scores.scores).all()
    assert result.metrics["n_devel"] == 27 and result.metrics["n_test"] == 9


def test_cv_runs_every_development_fold_but_not_the_evaluation_partition():
    assert chosen_test_folds(_data(), None, cv=True) == [1, 2, 3, 4]
    assert chosen_test_folds(_data(), "evaluation", cv=False) == [5]


@pytest.mark.parametrize("fold,evaluation,message", [
    ("evaluation", (), "has no evaluation partition"),
    ("last", (5,), "pass a fold number or 'evaluation'"),
])
def test_bad_test_folds(fold, evaluation, message):
    with pytest.raises(ConfigError, match=message):
        resolve_test_fold(fold, evaluation)


def _store(path, data, channels=None, attrs=None):
    config = {"extractor": {"network": path.stem, "kind": "audio", "weights": "none"}}
    writer = StoreWriter(path, config, data["label_names"], len(set(data["ids"])),
                         attrs={"network": "toynet", "weights": "none", "dataset": "toy", **(attrs or {})})
    writer.commit(data["features"], list(data["ids"]), data["labels"], data["folds"],
                  window_starts=data["window_starts"], clips_done=len(set(data["ids"])), channels=channels)
    return writer.finish()


def test_stores_record_the_channel_of_each_row_and_svm_pools_them_per_clip(tmp_path):
    data = blobs(n_folds=5, per_cell=2, windows=2)  # two rows per clip: its two channels
    data["window_starts"] = None
    channels = np.tile([0, 1], len(data["ids"]) // 2)
    path = _store(tmp_path / "each.h5", data, channels,
                  {"primary_metric": "macro_f1", "evaluation_folds": json.dumps([5])})
    fs = read_store(path)
    assert fs.channels.tolist() == channels.tolist() and read_store(_store(tmp_path / "mix.h5", blobs(n_folds=5, per_cell=2))).channels is None
    metrics = run_svm(path, fold="evaluation", run_dir=tmp_path / "run", n_jobs=1)
    assert metrics["select_metric"] == "macro_f1" and metrics["test_partition"] == "evaluation"
    scores = read_scores(tmp_path / "run" / "scores.h5")
    assert len(scores.ids) == len(set(data["ids"])) and scores.primary_metric == "macro_f1"
    per_row = store_data(fs, per_window=True)  # every channel row its own unit, with a unique id
    assert len(set(per_row.units.ids)) == len(data["ids"]) and per_row.units.ids[1].endswith("#ch1@0.000s")


def test_fusion_selects_by_the_primary_metric_and_finds_the_evaluation_runs(tmp_path):
    data = blobs(n_folds=5, per_cell=2)
    attrs = {"primary_metric": "uar", "evaluation_folds": json.dumps([5])}
    for name in ("a", "b"):
        run_svm(_store(tmp_path / f"{name}.h5", data, attrs={**attrs, "network": name}), fold="evaluation",
                run_dir=tmp_path / "results" / name, n_jobs=1)
    paths = select_group(tmp_path / "results", "all", test_fold="evaluation")
    assert len(paths) == 2 and select_group(tmp_path / "results", "all", test_fold=5) == paths
    metrics = run_fusion(paths, method="stacking", fold="evaluation", run_dir=tmp_path / "results" / "fused")
    assert metrics["select_metric"] == "uar" and metrics["fusion"]["params"]["select_metric"] == "uar"
    readme = write_report(tmp_path / "results").read_text()
    assert "| Devel UAR [%] | Test UAR [%] | Test acc [%] | Test macro-F1 [%] |" in readme
    assert "Test: the evaluation set (fold 5" in readme and (tmp_path / "results" / "test_uar.png").is_file()


def test_feature_sets_default_to_accuracy():
    data = store_data(feature_set(blobs()))
    assert data.primary_metric == "accuracy" and data.evaluation_folds == ()


def test_exports_name_the_channel_of_each_row(tmp_path):
    from deepfeat.export import write_arff, write_csv

    data = blobs(n_folds=2, per_cell=1, windows=2)
    data["window_starts"] = None
    fs = read_store(_store(tmp_path / "each.h5", data, np.tile([0, 1], len(data["ids"]) // 2)))
    lines = write_csv(fs, tmp_path / "each.csv").read_text().splitlines()
    assert lines[0].startswith("name,channel,neuron_1") and lines[1].startswith("f1-c0-0,0,")
    assert lines[2].startswith("f1-c0-0,1,")
    assert "@attribute channel numeric" in write_arff(fs, tmp_path / "each.arff").read_text()
