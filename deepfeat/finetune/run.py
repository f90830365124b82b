"""``deepfeat finetune``: an image CNN fine-tuned on mel-spectrogram images (or a deep ensemble of
them) under the fold protocol (:mod:`deepfeat.protocol`), with the outputs of every stage: out-of-fold
probabilities for development clips, the refit's for the test fold, metrics, confusion matrix,
``scores.h5`` (so ``deepfeat fuse`` takes fine-tuned systems like any other) and the model.

The frozen trunk's activations of every clip and version are computed once into a feature store
(:class:`~deepfeat.finetune.inputs.TrunkExtractor`, default ``features/<dataset>-finetune-…h5``),
then every training of the protocol reads them.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from ..augment import AugmentConfig
from ..config import PlotConfig, canonical_json, field_default
from ..datasets import Manifest
from ..errors import ConfigError
from ..io import write_json
from .classifier import FineTunedCNN
from .config import DEFAULT_TRAIN_BLOCKS, MASKED_COPIES


def system_name(classifier: FineTunedCNN, ensemble: int = 1, plot: PlotConfig | None = None) -> str:
    """``finetune-<network>-<weights>``, then ``-k<K>``/``-all`` for non-default trainable stages,
    the colour map when not the default, ``-ens<M>`` for an ensemble of M."""
    weights = Path(classifier.weights).stem if "/" in str(classifier.weights) else classifier.weights
    parts = ["finetune", classifier.network, weights]
    if classifier.train_blocks != DEFAULT_TRAIN_BLOCKS:
        parts.append("all" if classifier.train_blocks is None else f"k{classifier.train_blocks}")
    if plot is not None and plot.colormap != field_default(PlotConfig, "colormap"):
        parts.append(plot.colormap)
    if ensemble > 1:
        parts.append(f"ens{ensemble}")
    return "-".join(parts)


def trunk_extractor(classifier: FineTunedCNN, plot: PlotConfig | None, augment: AugmentConfig, masked_copies: int,
                    device: str | None = None, size: tuple[int, int] | None = None):
    """The :class:`~deepfeat.finetune.inputs.TrunkExtractor` whose activations ``classifier`` trains
    on; ``size`` (H, W) pixels replaces the network's own input size (e.g. 128 x 250)."""
    from ..extractors import create_extractor, get_extractor_class
    from ..extractors.image_cnn import ImageCNNExtractor
    from .inputs import TrunkExtractor

    if not issubclass(get_extractor_class(classifier.network), ImageCNNExtractor):
        raise ConfigError(f"{classifier.network}: fine-tuning needs an image CNN (`deepfeat extract --list`, kind "
                          "image), not an audio model")
    base = create_extractor(classifier.network, weights=classifier.weights, plot=plot or PlotConfig(), device=device,
                            input_size=size)
    return TrunkExtractor(base, classifier.train_blocks, augment, masked_copies)


#: development clips whose plain images re-estimate a random trunk's batch-norm statistics
CALIBRATION_CLIPS = 256


def calibrate_trunk(manifest: Manifest, trunk, test_fold: int, clips: int = CALIBRATION_CLIPS) -> None:
    """Re-estimate the frozen ``trunk``'s batch-norm statistics
    (:meth:`~deepfeat.finetune.inputs.TrunkExtractor.calibrate`) from the plain images of up to
    ``clips`` development clips, evenly spread in manifest order: never the test fold or an
    evaluation partition (the clips of the out-of-fold refits' held-out folds are among them, as
    unlabelled images). Clips that fail to decode are left out (extraction reports them). These
    clips are decoded again by the extraction that follows: the statistics must be fixed before
    the first activation is stored."""
    from ..audio import load_audio, segments
    from ..errors import AudioError
    from ..evaluation import development_folds
    from .inputs import version_images

    folds = development_folds(manifest.folds(), test_fold, str(manifest.root), manifest.evaluation_folds)
    rows = [i for i, clip in enumerate(manifest.clips) if clip.fold in folds]
    picked = np.unique(np.linspace(0, len(rows) - 1, min(clips, len(rows))).round().astype(int))
    images = []
    for i in picked:
        clip = manifest.clips[rows[i]]
        try:
            samples, rate = load_audio(clip.path, trunk.sample_rate, clip.channel)
        except AudioError:
            continue
        pieces, _ = segments(samples, rate, trunk.duration, trunk.segment)
        images += [version_images(piece, trunk.base.plot, AugmentConfig(), 0)[0] for piece in pieces]
    if not images:
        raise ConfigError(f"{manifest.root}: no development clip could be decoded to calibrate the trunk")
    trunk.calibrate(np.stack(images), {"folds": folds, "clips": len(picked)})


def default_cache(manifest: Manifest, trunk) -> Path:
    """``features/<dataset>-finetune-<network>-<hash>.h5``: one store per trunk and input setting."""
    from ..extract import store_config

    digest = hashlib.sha256(canonical_json(store_config(manifest, trunk)).encode()).hexdigest()[:10]
    return Path("features") / f"{manifest.name}-finetune-{trunk.name}-{digest}.h5"


def _member_metrics(result, data) -> list[dict]:
    """Devel and test metrics of each member of an ensemble (its own out-of-fold and test scores)."""
    from ..protocol import class_scores, fold_metrics, pool_scores

    units, names = data.units, data.label_names
    members = []
    for m in range(len(result.model.estimators_)):
        scores = np.full((len(units), len(names)), np.nan)
        for k, model in [*result.oof_models.items(), (result.metrics["test_fold"], result.model)]:
            rows = np.flatnonzero(data.folds == k)
            pooled = pool_scores(class_scores(model.estimators_[m], data.X[rows], names), units.row_unit[rows], len(units))
            scores[units.folds == k] = pooled[units.folds == k]
        metrics = fold_metrics(units, scores.argmax(axis=1), names, result.metrics["development_folds"],
                               result.metrics["test_fold"])
        members.append({k: v for k, v in metrics.items() if k.startswith(("devel_", "test_")) and k != "test_fold"})
    return members


def _finish(result, fold_dir: Path, data) -> None:
    models = {f"oof-fold{k}": m for k, m in result.oof_models.items()} | {"final": result.model}
    histories = {name: ([e.history_ for e in m.estimators_] if hasattr(m, "estimators_") else m.history_)
                 for name, m in models.items()}
    write_json(fold_dir / "training.json", histories)
    if hasattr(result.model, "estimators_"):
        members = _member_metrics(result, data)
        result.metrics["members"] = members
        for key in ("devel_accuracy", "test_accuracy"):
            result.metrics[f"members_mean_{key}"] = float(np.mean([m[key] for m in members]))


def run_finetune(manifest: Manifest, run_dir: str | Path, *, test_fold: int = 5, classifier: FineTunedCNN | None = None,
                 plot: PlotConfig | None = None, augment: AugmentConfig | None = None,
                 masked_copies: int | None = None, size: tuple[int, int] | None = None, ensemble: int = 1,
                 cache: str | Path | None = None, calibrate: bool | None = None,
                 workers: int | None = None, device: str | None = None, threads: int | None = None,
                 progress: bool = True, overwrite: bool = False, system: str | None = None) -> dict:
    """The fine-tuning fold protocol on ``manifest``; writes the run to ``run_dir``, returns its metrics.

    Parameters
    ----------
    classifier : FineTunedCNN, optional
        The unfitted estimator (network, weights, trainable stages, training, MixUp …); default
        ``FineTunedCNN()``.
    plot : PlotConfig, optional
        The image front end (as ``extract``'s; the network's input size unless ``plot.size`` is set).
    augment : AugmentConfig, optional
        Waveform augmentations and SpecAugment (versions of each clip, cached); MixUp is the
        classifier's ``mixup_alpha``.
    masked_copies : int, optional
        SpecAugment copies per clip (default :data:`~deepfeat.finetune.config.MASKED_COPIES` when
        ``augment.spec_augment``, else 0).
    size : (int, int), optional
        Image height and width in pixels (default: the network's input size).
    ensemble : int
        Members of a deep ensemble (:class:`~deepfeat.training.ensemble.SeedEnsemble`); 1: one model.
    cache : path, optional
        The trunk activations' store (default :func:`default_cache`).
    calibrate : bool, optional
        Re-estimate the frozen trunk's batch-norm statistics on development clips first
        (:func:`calibrate_trunk`); default: only for randomly initialised weights (``none``), whose
        statistics describe no data.
    """
    import shutil

    from sklearn.base import clone

    from ..extract import extract_features
    from ..protocol import ProtocolData, resolve_test_fold, run
    from ..store import read_store
    from ..threads import torch_threads
    from ..training.ensemble import SeedEnsemble
    from .inputs import save_statistics, statistics_record

    t_start = time.perf_counter()
    classifier = classifier if classifier is not None else FineTunedCNN()
    augment = augment or AugmentConfig()
    masked_copies = (MASKED_COPIES if augment.spec_augment else 0) if masked_copies is None else masked_copies
    run_dir = Path(run_dir)
    if overwrite and (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")
    with torch_threads(threads):
        trunk = trunk_extractor(classifier, plot, augment, masked_copies, device, size)
        if calibrate or (calibrate is None and classifier.weights == "none"):
            calibrate_trunk(manifest, trunk, resolve_test_fold(test_fold, manifest.evaluation_folds, str(manifest.root)))
        cache = Path(cache) if cache else default_cache(manifest, trunk)
        extract_features(manifest, trunk, cache, workers=workers, progress=progress)
        fs = read_store(cache)
        X = fs.features.reshape(len(fs.features), *trunk.row_shape)
        data = ProtocolData.from_rows(X, fs.labels, fs.folds, fs.label_names, ids=fs.ids, source=str(cache))
        plot_used = trunk.base.plot
        frontend = {"plot": plot_used.to_dict(), "mean": list(trunk.base.spec.mean), "std": list(trunk.base.spec.std),
                    "duration": plot_used.duration, "batch_norm": statistics_record(trunk)}
        estimator = clone(classifier).set_params(device=device, progress=progress, frontend=frontend)
        estimator = SeedEnsemble(estimator, ensemble) if ensemble > 1 else estimator
        system = system or system_name(classifier, ensemble, plot_used)
        provenance = {"dataset": manifest.name, "network": classifier.network, "weights": classifier.weights,
                      "train_blocks": classifier.train_blocks, "ensemble": ensemble, "versions": int(X.shape[1]),
                      "augmentation": augment.names(), "mixup_alpha": classifier.mixup_alpha,
                      "training": classifier.training_config().to_dict(), "activations": str(cache),
                      "trunk_batch_norm": trunk.calibration, "cache_seconds": time.perf_counter() - t_start}
        score_config = {"model": "finetune", "network": classifier.network, "weights": classifier.weights,
                        "dataset": manifest.name, "store_config": fs.config, "ensemble": ensemble}
        metrics = run(estimator, data, run_dir, system=system, fold=test_fold, provenance=provenance,
                      score_config=score_config, checkpoints=True, on_result=lambda r, d: _finish(r, d, data),
                      inputs={"store_config": fs.config}, overwrite=overwrite)
    save_statistics(trunk, run_dir)  # after run(): it refuses a folder holding another run before anything is written
    return metrics
