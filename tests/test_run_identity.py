"""Runs never overwrite each other silently (issue 14, case 5): the identity a run folder records,
refusal without --overwrite, system names of non-default store settings, absolute store paths."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from deepfeat import classify
from deepfeat.classify import run_svm, system_name
from deepfeat.cli.main import main
from deepfeat.config import PlotConfig, plot_config
from deepfeat.errors import StoreError
from deepfeat.fusion import run_fusion
from deepfeat.protocol import ProtocolData, run
from deepfeat.svm import TunedSVM

from .helpers import blobs, feature_set, write_store


def _data(seed=0, per_cell=2):
    d = blobs(n_classes=3, sep=2.0, dim=6, seed=seed, per_cell=per_cell)
    return ProtocolData.from_rows(d["features"], d["labels"], d["folds"], d["label_names"], ids=d["ids"])


@pytest.fixture
def stores(tmp_path):
    """Two stores of the same network, weights and default settings, from different data."""
    return [write_store(tmp_path / f"store{seed}.h5", blobs(n_classes=2, per_cell=2, seed=seed),
                        attrs={"network": "toynet", "weights": "none", "dataset": "toy"}) for seed in (0, 1)]


def test_rerunning_the_same_run_is_allowed_and_recorded(tmp_path):
    first = run(TunedSVM(Cs=(1.0,), n_jobs=1), _data(), tmp_path / "r", system="s", fold=5)
    again = run(TunedSVM(Cs=(1.0,), n_jobs=4), _data(), tmp_path / "r", system="s", fold=5)  # n_jobs: not identity
    identity = json.loads((tmp_path / "r" / "run.json").read_text())
    assert first["run_identity"] == again["run_identity"] == identity["sha256"]
    assert identity["params"]["Cs"] == [1.0] and identity["test_folds"] == [5] and "n_jobs" not in identity["params"]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["run_identity"] == identity["sha256"]


@pytest.mark.parametrize("change,what", [
    (dict(data=_data(per_cell=3)), "data_sha256"),  # other clips (a store's content is its inputs' checksum)
    (dict(estimator=TunedSVM(Cs=(0.1,), n_jobs=1)), "params.Cs"),
    (dict(fold=4), "test_folds"),
    (dict(inputs={"store_sha256": "other"}), "inputs.store_sha256"),
])
def test_a_run_of_other_inputs_or_settings_is_refused_unless_overwrite(tmp_path, change, what):
    args = dict(estimator=TunedSVM(Cs=(1.0,), n_jobs=1), data=_data(), fold=5, inputs={"store_sha256": "one"})
    run(args["estimator"], args["data"], tmp_path / "r", system="s", fold=args["fold"], inputs=args["inputs"])
    before = (tmp_path / "r" / "metrics.json").read_bytes()
    args.update(change)
    with pytest.raises(StoreError, match=rf"r: holds a run of other inputs or settings \({what}.*--overwrite"):
        run(args["estimator"], args["data"], tmp_path / "r", system="s", fold=args["fold"], inputs=args["inputs"])
    assert (tmp_path / "r" / "metrics.json").read_bytes() == before
    run(args["estimator"], args["data"], tmp_path / "r", system="s", fold=args["fold"], inputs=args["inputs"],
        overwrite=True)
    assert (tmp_path / "r" / "metrics.json").read_bytes() != before


def test_a_folder_with_only_a_failed_start_is_not_a_run(tmp_path):
    with pytest.raises(Exception, match="fold 9 is not in the data"):
        run(TunedSVM(n_jobs=1), _data(), tmp_path / "r", system="s", fold=9)
    run(TunedSVM(Cs=(1.0,), n_jobs=1), _data(), tmp_path / "r", system="s", fold=5)  # nothing to protect there


def test_overwrite_drops_the_checkpoints_of_the_replaced_run(tmp_path):
    run(TunedSVM(Cs=(1.0,), n_jobs=1), _data(), tmp_path / "r", system="s", fold=5)
    (tmp_path / "r" / "checkpoints").mkdir()
    (tmp_path / "r" / "checkpoints" / "final.pt").write_bytes(b"old")
    run(TunedSVM(Cs=(0.1,), n_jobs=1), _data(), tmp_path / "r", system="s", fold=5, overwrite=True)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_run_from_before_identities_is_replaced_with_a_warning(tmp_path, caplog):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="deepfeat.runs"):
        run(TunedSVM(Cs=(1.0,), n_jobs=1), _data(), tmp_path / "r", system="s", fold=5)
    assert "recorded no identity of its inputs" in caplog.text and (tmp_path / "r" / "run.json").exists()


def test_svm_on_another_store_refuses_the_same_run_folder(stores, tmp_path, capsys):
    run_dir = tmp_path / "results" / "svm-toynet-none"
    first = run_svm(stores[0], run_dir=run_dir, n_jobs=1)
    assert first["store"] == str(stores[0].resolve()) and Path(first["store"]).is_absolute()
    assert json.loads((run_dir / "metrics.json").read_text())["store"] == str(stores[0].resolve())
    run_svm(stores[0], run_dir=run_dir, n_jobs=1)  # the same store again: not an overwrite
    with pytest.raises(SystemExit) as e:
        main(["svm", str(stores[1]), "-o", str(run_dir), "-q"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "holds a run of other inputs or settings (inputs.store_content_sha256" in err and "--overwrite" in err
    assert json.loads((run_dir / "metrics.json").read_text())["store"] == str(stores[0].resolve())
    main(["svm", str(stores[1]), "-o", str(run_dir), "-q", "--overwrite"])
    assert json.loads((run_dir / "metrics.json").read_text())["store"] == str(stores[1].resolve())


def test_fuse_refuses_a_run_folder_of_other_inputs(stores, tmp_path):
    from deepfeat.scores import read_scores

    scores = Path(run_svm(stores[0], run_dir=tmp_path / "svm", n_jobs=1)["run_dir"]) / "scores.h5"
    copy = read_scores(scores)  # a second system to fuse with: the same scores under another name
    copy.system = "other"
    copy.write(tmp_path / "other.h5")
    inputs, out = [scores, tmp_path / "other.h5"], tmp_path / "fused"
    run_fusion(inputs, method="mean", run_dir=out)
    with pytest.raises(StoreError, match="fused: holds a run of other inputs or settings"):
        run_fusion(inputs, method="vote", run_dir=out)
    run_fusion(inputs, method="mean", run_dir=out)  # the same fusion again
    main(["fuse", *map(str, inputs), "-m", "vote", "-o", str(out), "-q", "--overwrite"])
    assert json.loads((out / "metrics.json").read_text())["method"] == "vote"


# ------------------------------------------------------------------------------------------------
# System names


def _config(plot: PlotConfig, **extractor) -> dict:
    return {"extractor": {"network": "efficientnet_lite0", "plot": plot.to_dict(), "duration": plot.duration,
                          "segment": list(plot.segment) if plot.segment else None, "seed": 0, **extractor}}


@pytest.mark.parametrize("settings,extractor,tags", [
    ({}, {}, []),
    (dict(colormap="viridis"), {}, ["viridis"]),
    (dict(preset="paper"), {}, ["paper"]),
    (dict(window=0.05, hop=0.02), {}, ["win50ms-hop20ms"]),
    (dict(clip_db=-80.0), {}, ["clip-80dB"]),
    (dict(sample_rate=22050), {}, ["sr22050"]),
    (dict(n_mels=64, fmax=8000.0), {}, ["64mels", "fmax8000"]),
    (dict(renderer="matplotlib", interpolation="nearest"), {}, ["matplotlib", "nearest"]),
    (dict(segment=(1.0, 0.5)), {}, ["t1-0.5s"]),
    (dict(duration=5.0), {}, ["5s"]),
    ({}, {"seed": 3}, ["seed3"]),
    (dict(colormap="gray", preset="paper", clip_db=-30.0), {}, ["gray", "paper", "clip-30dB"]),
])
def test_setting_tags_name_every_non_default_setting(settings, extractor, tags):
    assert classify.setting_tags(_config(plot_config(**settings), **extractor), {}) == tags


@pytest.mark.parametrize("layer,default,name", [
    ("pool", "pool", "svm-efficientnet_lite0-imagenet"),
    ("logits", "pool", "svm-efficientnet_lite0-imagenet-layer-logits"),
    ("logits", None, "svm-efficientnet_lite0-imagenet"),  # a store from before default layers were recorded
])
def test_system_name_names_a_non_default_layer(layer, default, name):
    attrs = {"network": "efficientnet_lite0", "weights": "imagenet", "layer": layer}
    if default:
        attrs["default_layer"] = default
    fs = feature_set(blobs(n_folds=2, per_cell=1), attrs=attrs, config=_config(PlotConfig()))
    assert system_name(fs) == name


def test_stores_of_other_plot_settings_get_other_run_folders():
    names = {system_name(feature_set(blobs(n_folds=2, per_cell=1),
                                     attrs={"network": "efficientnet_lite0", "weights": "imagenet"},
                                     config=_config(plot_config(**settings))))
             for settings in ({}, {"preset": "paper"}, {"clip_db": -80.0}, {"sample_rate": 22050},
                              {"colormap": "viridis"})}
    assert len(names) == 5 and "svm-efficientnet_lite0-imagenet" in names


def test_extracted_stores_record_their_default_layer():
    from deepfeat.extractors import get_extractor_class

    assert get_extractor_class("efficientnet_lite0").default_layer("efficientnet_lite0") == "pool"
    assert get_extractor_class("vgg16").default_layer("vgg16") == "classifier.4"
    assert get_extractor_class("panns_cnn14").default_layer("panns_cnn14") == "embedding"
    assert get_extractor_class("openl3").default_layer("openl3") == "512"
    assert np.all([get_extractor_class(n).default_layer(n) for n in ("resnet50", "densenet121")])
