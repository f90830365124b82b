"""When a stage of ``deepfeat paper`` (:mod:`deepfeat.experiment`) is finished, and the
estimators the experiment trains: each ``*_done`` returns a reason the stage's run folder already
holds its result (its ``metrics.json`` matches what the stage would run), or None."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .config import canonical_json

if TYPE_CHECKING:
    from .experiment import Experiment, FeatureSpec


def _metrics(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _same(a, b) -> bool:
    return canonical_json(a) == canonical_json(b)


# --- done checks: a reason the stage is finished, or None ---------------------------------------
def svm_done(run_dir: Path, store: Path, fold: int, select_metric: str = "accuracy") -> str | None:
    from .classify import DEFAULT_C_GRID
    from .weights import file_sha256

    m = _metrics(run_dir)
    if m is None:
        return None
    if (m.get("test_fold") == fold and m.get("store_sha256") == file_sha256(store) and m.get("svm") == "svc"
            and m.get("select_metric", "accuracy") == select_metric
            and m.get("class_weight") is None and _same(m.get("c_grid"), list(DEFAULT_C_GRID))):
        return "metrics.json matches the store and protocol"
    return None


def crnn_classifier(exp: Experiment):
    """The (unfitted) CRNN of this experiment: the default one, ``exp.crnn_epochs`` epochs and
    ``exp.crnn_augment``."""
    import dataclasses

    from .augment import AugmentConfig
    from .crnn import CRNN_TRAINING, CRNNClassifier

    return CRNNClassifier(training=dataclasses.replace(CRNN_TRAINING, epochs=exp.crnn_epochs),
                          augment=AugmentConfig.from_names(exp.crnn_augment.split(",")))


def crnn_expected(exp: Experiment) -> tuple[str, dict]:
    """(system name, the ``metrics["config"]`` entries a matching CRNN run has)."""
    from .crnn.config import CRNN_MEL, DEFAULT_DURATION
    from .crnn.run import crnn_run_config, system_name, with_select_metric

    manifest = exp.manifest()
    classifier = with_select_metric(crnn_classifier(exp), exp.select_metric or manifest.primary_metric)
    expected = crnn_run_config(manifest, classifier, CRNN_MEL, DEFAULT_DURATION)
    return system_name(classifier), {k: v for k, v in expected.items() if k != "dataset"}


def crnn_done(run_dir: Path, exp: Experiment, expected: dict) -> str | None:
    m = _metrics(run_dir)
    if m is None or m.get("test_fold") != exp.fold:
        return None
    config = m.get("config") or {}
    if all(_same(config.get(k), v) for k, v in expected.items()):
        return "metrics.json matches the training configuration"
    return None


def finetune_classifier(exp: Experiment, spec: FeatureSpec):
    """(the unfitted :class:`~deepfeat.finetune.FineTunedCNN` of ``spec``, its augmentations): the
    ``deepfeat finetune`` defaults with ``exp.finetune_epochs`` and ``exp.finetune_augment``."""
    import dataclasses

    from .augment import AugmentConfig
    from .finetune import FineTunedCNN
    from .finetune.config import DEFAULT_MIXUP, FINETUNE_TRAINING

    augment = AugmentConfig.from_names(exp.finetune_augment.split(","))
    return FineTunedCNN(network=spec.network, weights=spec.weights or "imagenet",
                        training=dataclasses.replace(FINETUNE_TRAINING, epochs=exp.finetune_epochs),
                        mixup_alpha=DEFAULT_MIXUP if augment.mixup_alpha > 0 else 0.0), augment


def finetune_done(run_dir: Path, exp: Experiment, spec: FeatureSpec) -> str | None:
    """Finished when ``metrics.json`` has this test fold, network, weights, trainable stages,
    ensemble, augmentations, MixUp and training."""
    m = _metrics(run_dir)
    if m is None or m.get("test_fold") != exp.fold:
        return None
    classifier, augment = finetune_classifier(exp, spec)
    expected = {"network": classifier.network, "weights": classifier.weights, "train_blocks": classifier.train_blocks,
                "ensemble": exp.finetune_ensemble, "augmentation": augment.names(),
                "mixup_alpha": classifier.mixup_alpha, "training": classifier.training_config().to_dict()}
    if all(_same(m.get(k), v) for k, v in expected.items()):
        return "metrics.json matches the fine-tuning configuration"
    return None


def _fusion_identity(config) -> dict | None:
    """A fusion configuration without its input paths (provenance only: a moved results folder
    holds the same runs; the checksums identify the inputs)."""
    if not isinstance(config, dict):
        return None
    return {**config, "inputs": [{k: v for k, v in i.items() if k != "path"} for i in config.get("inputs", [])]}


def fuse_done(run_dir: Path, expected: dict) -> str | None:
    m = _metrics(run_dir)
    if m is not None and _same(_fusion_identity(m.get("fusion")), _fusion_identity(expected)):
        return "metrics.json matches the inputs and method"
    return None
