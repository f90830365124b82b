"""``deepfeat crnn``: the CRNN (:class:`~deepfeat.crnn.classifier.CRNNClassifier`) on cached
log-mel spectrograms under the fold protocol (:mod:`deepfeat.protocol`).

Each clip is decoded, padded or cropped to a fixed duration and turned into a clipped log-mel
spectrogram with the plot stage's code (:func:`deepfeat.spectrogram.log_mel`), once, into the mel
cache (:mod:`deepfeat.mel_cache`), with one copy per waveform augmentation. The protocol then
trains one CRNN per development fold (out-of-fold probabilities) and one on all development folds
(test fold). Nothing is selected on a held-out fold: the model after the last epoch is used.
"""
from __future__ import annotations

import dataclasses
import platform
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone

from .. import __version__
from ..config import MelConfig
from ..datasets import Manifest
from ..errors import ConfigError
from ..io import write_json
from ..mel_cache import ORIGINAL, default_mel_cache, ensure_mel_cache, read_mels
from ..threads import torch_threads
from .classifier import CRNNClassifier, architecture_of
from .config import ARCHITECTURES, AUTO_PERCENTILE, CRNN_MEL, CRNN_TRAINING, DEFAULT_DURATION

def system_name(classifier: CRNNClassifier) -> str:
    """``crnn`` (ESC architecture), ``crnn-dcase``; ``-aug`` appended when augmenting, then the
    learning-rate schedule when not the default (``crnn-aug-cosine``)."""
    architecture = architecture_of(classifier.architecture)
    arch = next((name for name, a in ARCHITECTURES.items() if a == architecture), "custom")
    augmenting = classifier.augment is not None and classifier.augment.enabled
    schedule = classifier.training_config().schedule
    return ("crnn" + ("" if arch == "esc" else f"-{arch}") + ("-aug" if augmenting else "")
            + ("" if schedule == CRNN_TRAINING.schedule else f"-{schedule}"))


def labelled(manifest: Manifest) -> np.ndarray:
    """Class indices of every clip; :class:`ConfigError` when a clip has no label."""
    labels = manifest.label_indices()
    if (labels < 0).any():
        raise ConfigError(f"{manifest.root}: {int((labels < 0).sum())} clip(s) have no label; training needs "
                          "labelled data (ESC-50, UrbanSound8K, class folders or a label CSV with file,label,fold)")
    return labels


def crnn_run_config(manifest: Manifest, classifier: CRNNClassifier, mel: MelConfig, duration: float) -> dict:
    """What identifies a CRNN run (``metrics.json["config"]``; the experiment driver compares it).
    The training's ``monitor`` is what model selection (best epoch, early stopping) maximises."""
    augment = classifier.augment
    training = classifier.training_config()
    return {"training": training.to_dict(),
            "architecture": dataclasses.asdict(architecture_of(classifier.architecture)),
            "augment": augment.to_dict() if augment is not None else None,
            "validation_fraction": classifier.validation_fraction, "mel": dataclasses.asdict(mel),
            "duration": duration, "dataset": manifest.name, "manifest_sha256": manifest.fingerprint(),
            "select_metric": training.monitor}


def with_select_metric(classifier, metric: str):
    """A copy of a trained classifier whose training monitors ``metric`` on its validation split
    (best epoch, early stopping, plateau schedule)."""
    return clone(classifier).set_params(training=dataclasses.replace(classifier.training_config(), monitor=metric))


def load_crnn(run_dir: str | Path) -> CRNNClassifier:
    """The final model of a ``deepfeat crnn`` run folder."""
    return CRNNClassifier.load(run_dir)


def _write_histories(result, fold_dir: Path) -> None:
    histories = {f"oof-fold{k}": m.history_ for k, m in result.oof_models.items()}
    histories["final"] = result.model.history_
    write_json(fold_dir / "training.json", histories)
    epochs = [r["seconds"] for h in histories.values() for r in h]
    result.metrics["timings"]["seconds_per_epoch"] = float(np.mean(epochs)) if epochs else None


def auto_duration(manifest: Manifest) -> float:
    """The input length of ``--duration auto``, seconds: the :data:`AUTO_PERCENTILE`-th percentile
    of the clips' lengths (file headers), rounded up to 0.1 s, so that short clips (a 0.4 s
    spoken digit) are not padded to 5 s and few clips are cropped; :data:`DEFAULT_DURATION` when
    no header gives a length. Up to 10 ms above a tenth counts as that tenth: an encoder's padding
    (ESC-10's Ogg headers say 5.001 s) does not add 0.1 s of silence to every clip."""
    from ..audio import native_durations

    lengths = native_durations(dict.fromkeys(c.path for c in manifest.clips))
    lengths = lengths[lengths > 0]
    if not len(lengths):
        return DEFAULT_DURATION
    return float(np.ceil((np.percentile(lengths, AUTO_PERCENTILE) - 0.01) * 10) / 10)


def run_crnn(manifest: Manifest, run_dir: str | Path, *, test_fold: int | str = 5,
             classifier: CRNNClassifier | None = None, mel: MelConfig = CRNN_MEL,
             duration: float | str = DEFAULT_DURATION,
             mel_cache: str | Path | None = None, workers: int | None = None, device: str | None = None,
             threads: int | None = 1, progress: bool = True, overwrite: bool = False, system: str | None = None,
             select_metric: str | None = None) -> dict:
    """The CRNN fold protocol on ``manifest``; writes the run to ``run_dir`` and returns its metrics.

    ``run_dir`` receives what :func:`deepfeat.protocol.run` writes (metrics.json, scores.h5,
    confusion matrix, model.pt + model.json), ``training.json`` (per-epoch loss of each training)
    and ``checkpoints/`` (resume state; ``overwrite`` starts again, and replaces a run of other
    data or settings in ``run_dir``, which is otherwise refused). The mel cache defaults to
    :func:`~deepfeat.mel_cache.default_mel_cache`. ``threads``: torch CPU threads while training
    (the small convolutions gain little from more; None: torch's default). ``test_fold``: a fold
    number or ``"evaluation"``. ``duration``: seconds, or ``"auto"`` (:func:`auto_duration`).
    ``select_metric`` (None: the dataset's primary metric) is recorded
    in metrics.json as what model selection maximises (the model after the last epoch is used now).
    """
    from ..extractors.base import pick_device
    from ..protocol import ProtocolData, run

    from ..svm import check_metric

    classifier = with_select_metric(classifier if classifier is not None else CRNNClassifier(),
                                    check_metric(select_metric) if select_metric else manifest.primary_metric)
    system = system or system_name(classifier)
    run_dir = Path(run_dir)
    pick_device(device)  # an unknown device fails before the mels are computed
    duration = auto_duration(manifest) if duration == "auto" else float(duration)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    labels = labelled(manifest)
    if overwrite and (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")
    waveform = classifier.augment.waveform() if classifier.augment is not None else []
    cache = Path(mel_cache) if mel_cache else default_mel_cache(manifest, mel, duration)
    ensure_mel_cache(cache, manifest, mel, duration, waveform, workers=workers, progress=progress,
                     overwrite=overwrite)
    mels = read_mels(cache, [ORIGINAL] + [a.name for a in waveform]).transpose(1, 0, 2, 3)  # [N, V, mels, frames]
    mel_seconds = time.perf_counter() - t_start
    run_config = {**crnn_run_config(manifest, classifier, mel, duration), "mel_cache": str(cache)}
    estimator = clone(classifier).set_params(device=device, progress=progress,
                                             frontend={"mel": run_config["mel"], "duration": duration})
    data = ProtocolData.from_rows(mels, labels, manifest.folds(), manifest.label_names, ids=manifest.ids(),
                                  source=str(manifest.root), evaluation_folds=manifest.evaluation_folds,
                                  primary_metric=manifest.primary_metric)

    def finish(result, fold_dir: Path) -> None:
        _write_histories(result, fold_dir)
        result.metrics["timings"].update(mel_seconds=mel_seconds, cpu_seconds=time.process_time() - cpu_start)

    provenance = {"dataset": manifest.name, "config": run_config, "select_metric": run_config["select_metric"],
                  "epochs": estimator.training_config().epochs,
                  "augmentation": (classifier.augment.names() if classifier.augment is not None else []),
                  "architecture": run_config["architecture"], "device": pick_device(device).type,
                  "versions": {"deepfeat": __version__, "torch": __import__("torch").__version__,
                               "python": platform.python_version()}}
    with torch_threads(threads):
        return run(estimator, data, run_dir, system=system, fold=test_fold, provenance=provenance,
                   score_config={"model": "crnn", **run_config}, checkpoints=True, on_result=finish,
                   inputs={"manifest_sha256": run_config["manifest_sha256"]}, overwrite=overwrite)
