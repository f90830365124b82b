"""What a fine-tuned CNN trains on: every clip's images (the plain one and its augmented
versions) passed once through the frozen part of the network, cached in a feature store.

Fine-tuning the last K stages of a network (:class:`~deepfeat.extractors.image_cnn.StagedNetwork`)
on a CPU is feasible because the frozen trunk's activations do not change during training: they are
computed once per clip and version by :class:`TrunkExtractor` (an extractor, so the store is
written by :func:`deepfeat.extract.extract_features`: worker processes, crash-safe journal,
resume, skipped clips) and an epoch runs only the trainable stages.

A randomly initialised trunk (``-w none``) is frozen with batch-norm statistics that describe no
data (zero mean, unit variance), under which its activations shrink layer by layer (to ~1e-7 at
EfficientNet-Lite0's last stages): :meth:`TrunkExtractor.calibrate` first re-estimates them from
plain images of development clips, and the store's configuration records which.

Versions of a clip, in this order: the plain image; one per waveform augmentation of ``augment``
(time stretch, pitch shift, noise at an SNR); ``masked_copies`` SpecAugment copies of the plain
spectrogram (time and frequency bands set to the floor before rendering). Random draws are
seeded by the clip's samples, so a clip always gets the same versions.
"""
from __future__ import annotations

import hashlib
import zlib

import numpy as np
import torch

from ..augment import AugmentConfig
from ..config import PlotConfig
from ..extractors.base import Extractor, row_batches
from ..extractors.image_cnn import ImageCNNExtractor, StagedNetwork, _frozen_for_cpu, flush_denormals
from ..render import render, render_mel3
from ..spectrogram import log_mel, mel3_stack
from ..training.engine import recalibrate_batch_norm

_STATISTICS = ("running_mean", "running_var")


def _band(rng: np.random.Generator, size: int, max_width: int) -> slice:
    width = int(rng.integers(0, min(max_width, size) + 1))
    start = int(rng.integers(0, size - width + 1))
    return slice(start, start + width)


def masked_image(samples: np.ndarray, plot: PlotConfig, augment: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """The image of ``samples`` with SpecAugment masks: ``augment.freq_masks`` bands of mel bins
    and ``augment.time_masks`` bands of frames (widths up to ``augment.mask_width``, time widths in
    frames of the finest resolution) set to the floor (``plot.mel.clip_db``) before rendering;
    ``mel3``'s three planes get the same masks in seconds."""
    planes = mel3_stack(samples, plot.mel) if plot.colormap == "mel3" else [log_mel(samples, plot.mel)]
    n_mels, frames = planes[0].shape
    freq = [_band(rng, n_mels, augment.mask_width) for _ in range(augment.freq_masks)]
    time = [_band(rng, frames, augment.mask_width) for _ in range(augment.time_masks)]
    out = []
    for plane in planes:
        plane = plane.copy()
        scale = plane.shape[1] / frames
        for band in freq:
            plane[band] = plot.mel.clip_db
        for band in time:
            plane[:, int(band.start * scale):int(np.ceil(band.stop * scale))] = plot.mel.clip_db
        out.append(plane)
    return render_mel3(out, plot) if plot.colormap == "mel3" else render(out[0], plot)


def version_images(samples: np.ndarray, plot: PlotConfig, augment: AugmentConfig, masked_copies: int) -> np.ndarray:
    """uint8 images [V, H, W, 3] of one clip (mono, at ``plot.mel.sample_rate`` Hz): plain, one per
    waveform augmentation, ``masked_copies`` SpecAugment copies (module docstring)."""
    from ..audio import fix_length
    from ..render import spectrogram_image

    rate = plot.mel.sample_rate
    seed = zlib.crc32(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    waves = [samples] + [aug.apply(samples, rate, str(seed)) for aug in augment.waveform()]
    images = [spectrogram_image(fix_length(w, rate, plot.duration), plot) for w in waves]
    rng = np.random.default_rng(seed)
    images += [masked_image(samples, plot, augment, rng) for _ in range(masked_copies)]
    return np.stack(images)


def trunk_and_tail(staged: StagedNetwork, train_blocks: int | None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(frozen trunk, trainable tail)`` of a staged network: the tail is the last
    ``train_blocks`` stages and the pooling (None: every stage; 0: the trunk ends pooled)."""
    stages = staged.stages
    k = len(stages) if train_blocks is None else int(train_blocks)
    if not 0 <= k <= len(stages):
        from ..errors import ConfigError

        raise ConfigError(f"--train-blocks {train_blocks}: the network has {len(stages)} stages; choose 0 … "
                          f"{len(stages)} or all")
    trunk = list(stages[:len(stages) - k]) + ([staged.pool] if k == 0 else [])
    tail = list(stages[len(stages) - k:]) + ([staged.pool] if k > 0 else [])
    return torch.nn.Sequential(*trunk), torch.nn.Sequential(*tail)


class TrunkExtractor(Extractor):
    """Clip → images of every version → frozen trunk activations, one store row per clip
    ([V, C, h, w] flattened). Not a network of its own: built by ``deepfeat finetune`` around an
    image CNN extractor (whose plot front end, normalisation, weights and device it uses)."""

    kind = "image"
    default_weights = "imagenet"

    def __init__(self, base: ImageCNNExtractor, train_blocks: int | None, augment: AugmentConfig, masked_copies: int):
        super().__init__(base.name, weights=base.weights, device=str(base.device), seed=base.seed,
                         duration=base.duration, segment=None)
        self.base, self.train_blocks, self.augment, self.masked_copies = base, train_blocks, augment, masked_copies
        self.sample_rate = base.sample_rate
        self.layer = f"trunk-{'all' if train_blocks is None else train_blocks}"
        self.model = None
        self.norm_statistics: dict[str, torch.Tensor] | None = None  #: set by :meth:`calibrate`
        self.calibration: dict | None = None  #: what :meth:`calibrate` used, for the store's configuration

    @property
    def versions(self) -> int:
        return 1 + len(self.augment.waveform()) + self.masked_copies

    def frontend(self, samples: np.ndarray) -> np.ndarray:
        """Audio → one input [1, V, H, W, 3] uint8 holding every version's image."""
        return version_images(samples, self.base.plot, self.augment, self.masked_copies)[None]

    def resolve_weights(self):
        """The base network's weights file; sets :attr:`weights_sha256` (a store's identity needs it
        before the trunk loads)."""
        path = self.base.resolve_weights()
        self.weights_sha256 = self.base.weights_sha256
        return path

    def _trunk(self) -> torch.nn.Module:
        """The frozen part of the network with the ``-w`` weights (eval mode, on the device)."""
        staged = self.base.staged_network()
        self.weights_sha256 = self.base.weights_sha256
        trunk, _ = trunk_and_tail(staged, self.train_blocks)
        return trunk.eval().to(self.device)

    def load(self) -> None:
        trunk = self._trunk()
        if self.norm_statistics is not None:
            trunk.load_state_dict(self.norm_statistics, strict=False)
        if self.device.type == "cpu" and len(trunk):
            trunk = _frozen_for_cpu(trunk, (self.base.batch_size, 3, *self.base.plot.size))
        self.model = trunk

    def _inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 images [n, H, W, 3] → the network's normalised input [n, 3, H, W] on the device."""
        mean = torch.tensor(self.base.spec.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.base.spec.std, device=self.device).view(1, 3, 1, 1)
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2)
        return (x.float() / 255.0 - mean) / std

    def activations(self, images: np.ndarray) -> torch.Tensor:
        """uint8 images [n, H, W, 3] → trunk activations [n, C, h, w] (float32, CPU)."""
        with torch.inference_mode(), flush_denormals():
            outs = [self.model(self._inputs(batch)).float().cpu() for batch in row_batches(images, self.base.batch_size)]
        return torch.cat(outs)

    def calibrate(self, images: np.ndarray, source: dict) -> None:
        """Re-estimate the frozen trunk's batch-norm statistics (running mean and variance of every
        layer) as their average over uint8 images [n, H, W, 3]; later activations use them.

        ``source`` says which clips the images are of (e.g. ``{"folds": [1, 2, 3, 4], "clips":
        256}``: development clips only, never the test fold); it goes into :meth:`config` with a
        digest of the statistics, so a store of a calibrated trunk is never mistaken for another.
        """
        trunk = self._trunk()
        if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in trunk.modules()):
            return  # nothing to calibrate (e.g. --train-blocks all: the trunk is empty)
        with flush_denormals():
            recalibrate_batch_norm(trunk, (self._inputs(b) for b in row_batches(images, self.base.batch_size)))
        self.norm_statistics = {k: v.detach().cpu().clone() for k, v in trunk.state_dict().items()
                                if k.rsplit(".", 1)[-1] in _STATISTICS}
        digest = hashlib.sha256()
        for key in sorted(self.norm_statistics):
            digest.update(key.encode() + self.norm_statistics[key].numpy().tobytes())
        self.calibration = {**source, "images": int(len(images)), "sha256": digest.hexdigest()[:16]}
        self.model = None

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """Inputs [k, V, H, W, 3] → rows [k, V * C * h * w] float32."""
        if self.model is None:
            self.load()
        k, v = inputs.shape[:2]
        acts = self.activations(inputs.reshape(k * v, *inputs.shape[2:]))
        return acts.reshape(k, -1).numpy()

    @property
    def dim(self) -> int:
        return int(np.prod(self.row_shape))

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of one clip's activations: (V, C, h, w) (or (V, D) when the trunk ends pooled)."""
        if self.model is None:
            self.load()
        probe = self.activations(np.zeros((1, *self.base.plot.size, 3), dtype=np.uint8))
        return (self.versions, *probe.shape[1:])

    def config(self) -> dict:
        trunk = {"train_blocks": self.train_blocks}
        if self.calibration is not None:
            trunk["batch_norm"] = self.calibration
        return {**self.base.config(), "layer": self.layer, "trunk": trunk,
                "versions": {"augment": self.augment.to_dict(), "masked_copies": self.masked_copies}}


#: where a run folder keeps its calibrated trunk's batch-norm statistics
STATISTICS_FILE = "trunk_batch_norm.pt"


def statistics_record(trunk: TrunkExtractor) -> dict | None:
    """What a fine-tuned model's front end records of its trunk's calibration (None: the weights'
    own batch-norm statistics): the file :func:`save_statistics` writes and what made it."""
    return None if trunk.calibration is None else {"file": STATISTICS_FILE, **trunk.calibration}


def save_statistics(trunk: TrunkExtractor, run_dir) -> None:
    """Write ``trunk``'s calibrated batch-norm statistics into ``run_dir`` (``deepfeat explain``
    rebuilds the trunk with them); nothing when it was not calibrated."""
    from pathlib import Path

    from ..io import atomic_path

    if trunk.norm_statistics is not None:
        with atomic_path(Path(run_dir) / STATISTICS_FILE) as tmp:
            torch.save(trunk.norm_statistics, tmp)


def frozen_trunk(staged: StagedNetwork, train_blocks: int | None, frontend: dict | None, run_dir) -> torch.nn.Module:
    """The frozen trunk a fine-tuned model of ``run_dir`` was trained on: ``staged``'s first stages,
    with the batch-norm statistics its front end says were calibrated (:func:`save_statistics`)."""
    from pathlib import Path

    trunk, _ = trunk_and_tail(staged, train_blocks)
    calibrated = (frontend or {}).get("batch_norm")
    if calibrated:
        from ..errors import StoreError

        path = Path(run_dir) / calibrated["file"]
        if not path.is_file():
            raise StoreError(f"{path}: missing; the model's frozen trunk needs its calibrated batch-norm statistics "
                             "(rerun deepfeat finetune)")
        trunk.load_state_dict(torch.load(path, weights_only=True), strict=False)
    return trunk.eval()
