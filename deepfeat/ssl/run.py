"""``deepfeat pretrain``: self-supervised pre-training of an image CNN on the mel-spectrogram images
of unlabelled clips, resumable, written as a weights file every ``-w PATH`` accepts.

The output holds ``{"state_dict": ..., "deepfeat_pretrain": {...}}``: the whole network's state
dict in its official key layout (torchvision's for torchvision networks), which
:func:`deepfeat.weights.load_state_dict` unwraps, so ``deepfeat extract -n NETWORK -w CKPT`` (the
linear probe: frozen features and the SVM) and ``deepfeat finetune -n NETWORK -w CKPT`` load it like
any checkpoint, with its sha256; and what made it (method, backbone, the pre-training clips'
manifest sha256 and held-out folds, epochs, image size and front end, training and method
settings, per-epoch loss and embedding std, seconds). Everything loads with
``torch.load(weights_only=True)``.

While training, the engine's checkpoint ``<CKPT>.training`` is written after every epoch; a rerun
of the same command resumes it (exactly, on CPU), and removes it once the weights file is written.
A rerun after that finds the weights file of the same pre-training and returns at once; one of
another pre-training is refused unless ``overwrite``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from ..config import PlotConfig, canonical_json
from ..datasets import Manifest
from ..errors import ConfigError, WeightsError
from ..io import atomic_path, jsonable
from ..store import describe_difference
from ..training.config import TrainConfig
from .config import (
    DEFAULT_BACKBONE, DEFAULT_DURATION, DEFAULT_SIZE, PRETRAIN_TRAINING, MethodConfig, ViewConfig, check_method,
)

log = logging.getLogger("deepfeat.ssl")

INFO_KEY = "deepfeat_pretrain"  #: the entry of a weights file that says how it was pre-trained


def training_checkpoint(output: str | Path) -> Path:
    """The engine's per-epoch checkpoint of the pre-training that writes ``output``."""
    return Path(str(output) + ".training")


def pretrain_info(path: str | Path) -> dict:
    """What pre-trained the weights file ``path`` (its ``deepfeat_pretrain`` entry)."""
    from ..weights import load_checkpoint

    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or not isinstance(obj.get(INFO_KEY), dict):
        raise WeightsError(f"{path}: not a weights file written by `deepfeat pretrain` (no {INFO_KEY} entry)")
    return obj[INFO_KEY]


def _image_extractor(backbone: str, weights: str, plot: PlotConfig, size, device):
    from ..extractors import create_extractor, get_extractor_class
    from ..extractors.image_cnn import ImageCNNExtractor

    if not issubclass(get_extractor_class(backbone), ImageCNNExtractor):
        raise ConfigError(f"{backbone}: pre-training needs an image CNN (`deepfeat extract --list`, kind image)")
    return create_extractor(backbone, weights=weights, plot=plot, device=device, input_size=size)


def _check_training(training: TrainConfig) -> None:
    if training.schedule == "plateau" or training.patience is not None:
        raise ConfigError("pre-training has no validation metric to follow: use --schedule cosine or constant, "
                          "and no --patience")


def _identity(method: str, extractor, data: Manifest, held: list[int], duration: float, views: ViewConfig,
              method_config: MethodConfig) -> dict:
    """Everything but the training settings that determines the pre-trained weights."""
    return {"method": method, "backbone": extractor.name, "init_weights": extractor.weights,
            "init_sha256": extractor.weights_sha256, "image_size": list(extractor.plot.size),
            "plot": extractor.plot.to_dict(), "duration": duration,
            "normalisation": {"mean": list(extractor.spec.mean), "std": list(extractor.spec.std)},
            "data": {"dataset": data.name, "manifest_sha256": data.fingerprint(), "n_clips": len(data),
                     "held_out_folds": held},
            "views": views.to_dict(), "method_config": method_config.to_dict()}


def _existing(output: Path, identity: dict, training: TrainConfig, overwrite: bool) -> dict | None:
    """The info of an existing ``output`` of this very pre-training (None: train). Another
    pre-training's file is refused, or removed with ``overwrite``."""
    if not output.exists():
        return None
    expected = {**identity, "training": training.to_dict()}
    try:
        info = pretrain_info(output)
        old = json.loads(info.get("identity", "{}"))
    except WeightsError:
        info, old = None, None
    if info is not None and canonical_json(old) == canonical_json(jsonable(expected)) and not overwrite:
        return info
    if not overwrite:
        what = (f"made by another pre-training ({describe_difference(old, jsonable(expected))})" if old is not None
                else "not a deepfeat pretrain weights file")
        raise ConfigError(f"{output}: exists, {what}; choose another -o or pass --overwrite to replace it")
    output.unlink()
    return None


def pretrain(manifest: Manifest, output: str | Path, *, method: str = "simclr", backbone: str = DEFAULT_BACKBONE,
             weights: str = "none", test_fold: int | str | None = 5, plot: PlotConfig | None = None,
             size: tuple[int, int] = DEFAULT_SIZE, duration: float | None = None, training: TrainConfig | None = None,
             views: ViewConfig | None = None, method_config: MethodConfig | None = None, device: str | None = None,
             threads: int | None = None, workers: int | None = None, cache_dir: str | Path = "features",
             progress: bool = True, overwrite: bool = False) -> dict:
    """Pre-train ``backbone`` with ``method`` on the clips of ``manifest`` outside ``test_fold``
    and write the weights file ``output`` (module docstring); resumes an interrupted run.

    Parameters
    ----------
    manifest : Manifest
        Any dataset (labels are ignored) or a plain folder of audio.
    output : path
        The weights file to write.
    method : str
        One of :data:`~deepfeat.ssl.config.METHODS`.
    backbone : str
        An image CNN of the extractor registry.
    weights : str
        Where the backbone starts: ``none`` (fixed-seed random initialisation), ``imagenet``, a path.
    test_fold : int, "evaluation" or None
        The fold that is never read (evaluation partitions never are either); None: every clip.
    plot : PlotConfig, optional
        The front end (colour map or ``mel3``, mel settings); its size is replaced by ``size``.
    size : (int, int)
        Image (height, width), pixels.
    duration : float, optional
        Seconds every clip is padded or cropped to (default: ``plot.duration``, else 5 s).
    training, views, method_config : optional
        Defaults :data:`~deepfeat.ssl.config.PRETRAIN_TRAINING`, :class:`ViewConfig`, :class:`MethodConfig`.
    device, threads, workers
        Training device, torch CPU threads, processes computing the spectrograms.
    cache_dir : path
        Folder of the mel caches.

    Returns
    -------
    dict
        The weights file's ``deepfeat_pretrain`` entry plus ``path`` and ``sha256``.
    """
    from ..threads import torch_threads
    from ..weights import file_sha256
    from .data import held_out_folds, pretraining_manifest

    method, output = check_method(method), Path(output)
    training, views = training or PRETRAIN_TRAINING, views or ViewConfig()
    method_config = method_config or MethodConfig()
    _check_training(training)
    plot = plot or PlotConfig()
    duration = float(duration or plot.duration or DEFAULT_DURATION)
    data = pretraining_manifest(manifest, test_fold)
    with torch_threads(threads):
        extractor = _image_extractor(backbone, weights, plot, size, device)
        net = extractor.load_network()  # resolves -w (path and sha256) before anything is computed
        identity = _identity(method, extractor, data, held_out_folds(manifest, test_fold), duration, views,
                             method_config)
        info = _existing(output, identity, training, overwrite)
        if info is None:
            if overwrite:
                training_checkpoint(output).unlink(missing_ok=True)
            info = _train(extractor, net, data, identity, training, views, method_config, output,
                          workers=workers, cache_dir=cache_dir, progress=progress)
    return {**info, "path": str(output), "sha256": file_sha256(output)}


def _train(extractor, net, data: Manifest, identity: dict, training: TrainConfig, views: ViewConfig,
           method_config: MethodConfig, output: Path, *, workers, cache_dir, progress: bool) -> dict:
    """Train (or resume) the pre-training of ``identity`` and write ``output``; returns its info."""
    from ..extractors.base import seeded
    from ..training.engine import train
    from .data import load_planes
    from .methods import Backbone, build_method
    from .task import PretrainTask, steps_per_epoch

    tic = time.perf_counter()
    plot, device = extractor.plot, extractor.device
    planes = load_planes(data, plot, identity["duration"], folder=cache_dir, workers=workers, progress=progress)
    mel_seconds = time.perf_counter() - tic
    steps = steps_per_epoch(len(data), training.batch_size)
    with seeded(training.seed):  # heads, prototypes and banks: the same on every (re)start
        staged = extractor.split(net)
        with torch.no_grad():
            dim = int(staged.features(torch.zeros(1, 3, *plot.size)).shape[1])
        module = build_method(identity["method"], Backbone(net, staged, dim), method_config, n_clips=len(data),
                              steps_per_epoch=steps, epochs=training.epochs).to(device)
    task = PretrainTask(module, [torch.from_numpy(p).to(device) for p in planes], plot, extractor.spec.mean,
                        extractor.spec.std, views, training.batch_size)
    result = train(task, training, checkpoint=training_checkpoint(output), identity={"pretrain": identity},
                   device=device, progress=progress, desc=f"pretrain {identity['method']} {extractor.name}")
    history = result.history
    info = jsonable({**identity, "epochs": training.epochs, "training": training.to_dict(),
                     "steps_per_epoch": steps, "device": str(device), "mel_seconds": mel_seconds,
                     "train_seconds": sum(r["seconds"] for r in history),
                     "history": [{k: v for k, v in r.items() if k != "lr"} for r in history],
                     "versions": _versions()})
    info["identity"] = canonical_json(jsonable({**identity, "training": training.to_dict()}))
    state = {k: v.detach().cpu() for k, v in module.backbone.net.state_dict().items()}
    with atomic_path(output) as tmp:
        torch.save({"state_dict": state, INFO_KEY: info}, tmp)
    training_checkpoint(output).unlink(missing_ok=True)
    last = history[-1] if history else {}
    log.info("wrote %s: %s %s, %d epochs, loss %.4g, embedding std %.4g", output, identity["method"],
             extractor.name, training.epochs, last.get("loss", float("nan")), last.get("val_embedding_std", float("nan")))
    return info


def _versions() -> dict:
    import lightly

    from .. import __version__

    # plain str: torch's version is a str subclass that weights-only loading refuses
    return {"deepfeat": str(__version__), "torch": str(torch.__version__), "lightly": str(lightly.__version__)}


def with_training(training: TrainConfig | None, **changes) -> TrainConfig:
    """:data:`PRETRAIN_TRAINING` (or ``training``) with ``changes``."""
    return dataclasses.replace(training or PRETRAIN_TRAINING, **changes)
