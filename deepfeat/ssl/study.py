"""The linear-probe vs fine-tune study of self-supervised pre-training (``deepfeat ssl-study DATA``,
``make ssl``), resumable.

For one backbone at one image size, each starting point — random initialisation, ImageNet where
its weights can be found, the backbone pre-trained by each self-supervised method on the
development folds' audio (:func:`deepfeat.ssl.pretrain` with the study's test fold held out),
and optionally an ImageNet reference network — is evaluated two ways under the fold protocol:

* **linear probe**: frozen features (:func:`deepfeat.extract.extract_features`, ``-w`` the
  starting point) and the linear SVM of ``deepfeat svm`` (:func:`deepfeat.classify.run_svm`);
* **fine-tune**: ``deepfeat finetune`` (:func:`deepfeat.finetune.run_finetune`) from the same weights.

Outputs: weights files and feature stores under ``<work>/ssl/<dataset>/``, one run folder per row
and evaluation under ``<out>/runs/`` (``metrics.json`` … and ``row.json``: what identifies the row
and its compute budget), and ``<out>/README.md`` with the table and chart (:mod:`.study_report`).
Rerunning skips every row whose ``row.json`` has the same identity; interrupted pre-trainings,
extractions and fine-tunings resume where they stopped.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PlotConfig, canonical_json
from ..errors import WeightsError
from ..evaluation import RESULTS_DIR
from ..training.config import TrainConfig
from .config import DEFAULT_BACKBONE, DEFAULT_DURATION, DEFAULT_SIZE, METHODS, PRETRAIN_TRAINING, embedding_dim

#: Pre-training budget of the study by default (epochs of ESC-10's 320 development clips).
STUDY_PRETRAIN = dataclasses.replace(PRETRAIN_TRAINING, epochs=30, warmup_epochs=3)
EVALUATIONS = ("probe", "finetune")


@dataclass(frozen=True)
class Start:
    """A starting point: a row of the study (``weights`` as ``-w`` takes it)."""

    name: str  #: random, imagenet, a method, or the reference's name
    network: str
    weights: str  #: none, imagenet or a weights file
    method: str | None = None  #: the self-supervised method (its weights file is made first)


@dataclass
class Study:
    """What ``deepfeat ssl-study`` runs (see the module docstring).

    ``limit``: at most this many clips per fold and class (quick end-to-end checks; the dataset
    is then named ``<dataset>-limit<N>`` so its results stay apart).
    """

    data: Path
    backbone: str = DEFAULT_BACKBONE
    methods: tuple[str, ...] = METHODS
    fold: int = 5
    size: tuple[int, int] = DEFAULT_SIZE
    pretrain: TrainConfig = STUDY_PRETRAIN
    finetune_epochs: int = 30
    train_blocks: int | None = 2
    reference: str | None = "efficientnet_lite0"  #: an ImageNet network as a reference row (None: none)
    limit: int | None = None
    out: Path | None = None  #: default results/<dataset>/ssl
    work: Path = Path("features")
    device: str | None = None
    threads: int | None = None
    workers: int | None = None
    overwrite: bool = False
    progress: bool = True
    command: str = ""  #: the command line that ran the study (for the report)
    skipped: dict[str, str] = field(default_factory=dict)  #: starting points left out → why

    def plot(self) -> PlotConfig:
        return PlotConfig(size=tuple(self.size), duration=DEFAULT_DURATION)

    def manifest(self):
        from ..datasets import load_manifest

        manifest = load_manifest(self.data)
        return limit_clips(manifest, self.limit) if self.limit else manifest

    def folder(self, dataset: str) -> Path:
        return Path(self.work) / "ssl" / dataset

    def results(self, dataset: str) -> Path:
        return Path(self.out) if self.out else RESULTS_DIR / dataset / "ssl"


def limit_clips(manifest, per_cell: int):
    """The first ``per_cell`` clips of each fold and class, named ``<dataset>-limit<per_cell>``."""
    seen: dict[tuple, int] = {}
    clips = []
    for clip in manifest.clips:
        key = (clip.fold, clip.label)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= per_cell:
            clips.append(clip)
    return dataclasses.replace(manifest, clips=tuple(clips), name=f"{manifest.name}-limit{per_cell}")


def _obtainable(network: str, weights: str) -> str | None:
    """None when ``network``'s ``weights`` can be found here, else why not (one line)."""
    from ..extractors import get_extractor_class
    from ..weights import resolve_choice

    try:
        resolve_choice(network, weights, get_extractor_class(network).weights_names(network))
    except WeightsError as e:
        return str(e).split(";")[0]
    return None


def starts(study: Study, folder: Path) -> list[Start]:
    """The study's rows in order; ImageNet rows whose weights are not here go to ``study.skipped``."""
    h, w = study.size
    rows = [Start("random", study.backbone, "none")]
    candidates = [Start("imagenet", study.backbone, "imagenet")]
    if study.reference and study.reference != study.backbone:
        candidates.append(Start(f"imagenet-{study.reference}", study.reference, "imagenet"))
    for start in candidates[:1]:
        reason = _obtainable(start.network, start.weights)
        rows += [start] if reason is None else []
        study.skipped.update({} if reason is None else {f"{start.network} ImageNet": reason})
    for method in study.methods:
        name = f"{study.backbone}-{method}-{h}x{w}-e{study.pretrain.epochs}-fold{study.fold}.pt"
        rows.append(Start(method, study.backbone, str(folder / name), method))
    for start in candidates[1:]:
        reason = _obtainable(start.network, start.weights)
        rows += [start] if reason is None else []
        study.skipped.update({} if reason is None else {f"{start.network} ImageNet": reason})
    return rows


class StudyStages:
    """The library calls the study makes (tests replace them with quick ones)."""

    def __init__(self, study: Study):
        self.study = study

    def pretrain(self, manifest, start: Start) -> dict:
        from .run import pretrain

        s = self.study
        return pretrain(manifest, start.weights, method=start.method, backbone=start.network, test_fold=s.fold,
                        plot=s.plot(), size=s.size, training=s.pretrain, device=s.device, threads=s.threads,
                        workers=s.workers, cache_dir=s.work, progress=s.progress, overwrite=s.overwrite)

    def probe(self, manifest, start: Start, store: Path, run_dir: Path, overwrite: bool) -> dict:
        from ..classify import run_svm
        from ..extract import extract_features, make_extractor
        from ..threads import torch_threads

        s = self.study
        with torch_threads(s.threads):
            extractor = make_extractor(start.network, weights=start.weights, plot=s.plot(), device=s.device,
                                       size=s.size)
            extract_features(manifest, extractor, store, workers=s.workers, overwrite=overwrite, progress=s.progress)
        return run_svm(store, fold=s.fold, run_dir=run_dir)

    def finetune(self, manifest, start: Start, run_dir: Path, overwrite: bool) -> dict:
        from ..finetune import FineTunedCNN, run_finetune
        from ..finetune.config import DEFAULT_MIXUP, FINETUNE_TRAINING

        s = self.study
        classifier = FineTunedCNN(network=start.network, weights=start.weights, train_blocks=s.train_blocks,
                                  training=dataclasses.replace(FINETUNE_TRAINING, epochs=s.finetune_epochs),
                                  mixup_alpha=DEFAULT_MIXUP, validation_fraction=0.1)
        return run_finetune(manifest, run_dir, test_fold=s.fold, classifier=classifier, plot=s.plot(), size=s.size,
                            workers=s.workers, device=s.device, threads=s.threads, progress=s.progress,
                            overwrite=overwrite)


def _row_identity(study: Study, manifest, start: Start, evaluation: str, weights_sha256: str | None) -> dict:
    identity = {"evaluation": evaluation, "start": start.name, "network": start.network,
                "weights_sha256": weights_sha256, "size": list(study.size), "test_fold": study.fold,
                "manifest_sha256": manifest.fingerprint()}
    if evaluation == "finetune":
        identity.update(finetune_epochs=study.finetune_epochs, train_blocks=study.train_blocks)
        if start.weights == "none":  # its frozen trunk's batch-norm statistics are calibrated (finetune.calibrate_trunk)
            identity["trunk_batch_norm"] = "calibrated"
    return identity


def _read_row(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "row.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


Echo = Callable[[str], None]


def _pretrain_budget(info: dict) -> dict:
    """A pre-training's budget and end state, from its weights file's info."""
    history = info.get("history") or [{}]
    return {"epochs": info["epochs"], "train_seconds": info["train_seconds"], "mel_seconds": info["mel_seconds"],
            "device": info["device"], "n_clips": info["data"]["n_clips"], "loss": [history[0].get("loss"),
                                                                                  history[-1].get("loss")],
            "embedding_std": history[-1].get("val_embedding_std"),
            "dim": embedding_dim(info["method"], info["method_config"])}


def _eval_seconds(evaluation: str, metrics: dict, run_dir: Path) -> float:
    """What the evaluation cost: feature extraction and the SVM (probe), or the trunk cache and every
    training epoch (fine-tune; counted from the histories, so resumed trainings count once)."""
    if evaluation == "probe":
        from ..report import extraction

        return (extraction(metrics)[0] or 0.0) + metrics["timings"]["total_seconds"]
    histories = json.loads((run_dir / "training.json").read_text())
    epochs = [e for h in histories.values() for run in (h if h and isinstance(h[0], list) else [h]) for e in run]
    return metrics.get("cache_seconds", 0.0) + sum(e.get("seconds", 0.0) for e in epochs)


def _evaluate(study: Study, stages: StudyStages, manifest, start: Start, evaluation: str, weights_sha256,
              pre: dict | None, echo: Echo) -> dict:
    """One row of the table: the evaluation of ``start`` (skipped when its ``row.json`` matches)."""
    from ..io import write_json

    run_dir = study.results(manifest.name) / "runs" / f"{evaluation}-{start.name}"
    identity = _row_identity(study, manifest, start, evaluation, weights_sha256)
    old = _read_row(run_dir)
    if old is not None and canonical_json(old.get("identity")) == canonical_json(identity) and not study.overwrite:
        echo(f"  skip {run_dir}: row.json matches")
        return {**old, "pretrain": pre and _pretrain_budget(pre)}  # as the weights file says
    overwrite = study.overwrite or old is not None
    echo(f"== {evaluation} {start.name} ({start.network}, -w {start.weights})")
    if evaluation == "probe":
        h, w = study.size
        store = study.folder(manifest.name) / f"{start.network}-{Path(start.weights).stem}-{h}x{w}.h5"
        metrics = stages.probe(manifest, start, store, run_dir, overwrite)
    else:
        metrics = stages.finetune(manifest, start, run_dir, overwrite)
    row = {"identity": identity, "start": start.name, "method": start.method, "network": start.network,
           "weights": start.weights, "evaluation": evaluation, "metric": metrics.get("primary_metric", "accuracy"),
           **{k: metrics.get(k) for k in ("devel_accuracy", "test_accuracy", "devel_macro_f1", "test_macro_f1",
                                          "n_test", "development_folds")},
           "eval_seconds": _eval_seconds(evaluation, metrics, run_dir), "pretrain": pre and _pretrain_budget(pre)}
    write_json(run_dir / "row.json", row)
    return row


def _weights_sha256(start: Start, pre: dict | None) -> str | None:
    if pre is not None:
        return pre["sha256"]
    if start.weights == "none":
        return None
    from ..extractors import get_extractor_class
    from ..weights import resolve_choice

    return resolve_choice(start.network, start.weights, get_extractor_class(start.network).weights_names(start.network))[1]


def run_study(study: Study, *, stages: StudyStages | None = None, echo: Echo = print) -> Path:
    """Run every unfinished row of ``study`` and write its report; returns the README's path."""
    from .study_report import write_study_report

    manifest = study.manifest()
    folder = study.folder(manifest.name)
    folder.mkdir(parents=True, exist_ok=True)
    stages = stages or StudyStages(study)
    rows: list[dict] = []
    plan = starts(study, folder)
    for reason in study.skipped.items():
        echo("  left out: {}: {}".format(*reason))
    for start in plan:
        pre = None
        if start.method:
            echo(f"== pretrain {start.method} ({start.network}, {study.pretrain.epochs} epochs) -> {start.weights}")
            pre = stages.pretrain(manifest, start)
        for evaluation in EVALUATIONS:
            rows.append(_evaluate(study, stages, manifest, start, evaluation, _weights_sha256(start, pre), pre, echo))
        path = write_study_report(study.results(manifest.name), study, manifest, rows)
    echo(f"wrote {path}")
    return path
