"""Self-supervised pre-training as a task of the training engine (:mod:`deepfeat.training.engine`),
and the collapse guard.

Each epoch every clip is drawn once, in batches of ``batch_size`` clips (the last incomplete batch
is dropped: contrastive losses and batch norm want full batches); each batch gives two views per
clip (:mod:`.views`), rendered to normalised images (:mod:`.render`).

The collapse guard: every batch, the standard deviation over the batch of the L2-normalised
online embeddings of the first view, per dimension, averaged over dimensions
(``lightly.utils.debug.std_of_l2_normalized``; the embedding the method's loss compares, taken
from the training forward pass, so it costs nothing extra). Embeddings spread evenly over the
unit sphere give about 1/sqrt(d); a collapsed network, which maps every clip to the same point,
gives 0. Its mean over the epoch is the epoch's ``val_embedding_std`` (training history, progress
bar, the weights file's history, the log), and a :class:`CollapseWarning` is issued when it falls
below ``COLLAPSE_FRACTION / sqrt(d)``.
"""
from __future__ import annotations

import logging
import math
import warnings

import torch

from ..config import PlotConfig
from ..training.engine import Task
from .config import COLLAPSE_FRACTION, ViewConfig
from .methods import SSLMethod
from .render import render
from .views import draw_view

log = logging.getLogger("deepfeat.ssl")


class CollapseWarning(UserWarning):
    """The embeddings of different clips have (nearly) collapsed onto one point."""


def embedding_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the std of the L2-normalised rows of ``z`` [N, d]."""
    from lightly.utils.debug import std_of_l2_normalized

    return float(std_of_l2_normalized(z.float()))


def check_collapse(std: float, dim: int, epoch: int | None = None) -> bool:
    """Warn (:class:`CollapseWarning`) and return True when ``std`` is below
    ``COLLAPSE_FRACTION / sqrt(dim)``."""
    healthy = 1.0 / math.sqrt(dim)
    if std >= COLLAPSE_FRACTION * healthy:
        return False
    when = f"after epoch {epoch}: " if epoch is not None else ""
    warnings.warn(f"{when}embedding std {std:.4g} is below {COLLAPSE_FRACTION:g} x 1/sqrt({dim}) = "
                  f"{COLLAPSE_FRACTION * healthy:.3g}: the embeddings are collapsing onto one point; lower the learning "
                  "rate, use larger batches or stronger views, or try another method", CollapseWarning, stacklevel=2)
    return True


class PretrainTask(Task):
    """Two views per clip of cached spectrogram ``planes`` (each [N, n_mels, frames] dB, on the
    training device), rendered as ``plot`` draws them and normalised with ``mean``/``std``."""

    def __init__(self, module: SSLMethod, planes: list[torch.Tensor], plot: PlotConfig, mean, std,
                 views: ViewConfig, batch_size: int):
        self.module, self.planes, self.plot, self.views = module, planes, plot, views
        self.mean, self.std = mean, std
        self.n = int(planes[0].shape[0])
        self.steps_per_epoch = steps_per_epoch(self.n, batch_size)
        self.step = self.epoch = 0
        self.stds: list[float] = []  #: the collapse guard's value of each batch of the epoch
        self.dim = 0

    def images(self, planes: list[torch.Tensor]) -> torch.Tensor:
        return render(planes, self.plot, self.mean, self.std)

    def batches(self, epoch: int, batch_size: int):
        order = torch.randperm(self.n).to(self.planes[0].device)
        size = min(batch_size, self.n)
        self.stds = []
        for i in range(self.n // size):
            clean = [p[order[i * size:(i + 1) * size]] for p in self.planes]
            x0, x1 = (self.images(draw_view(clean, self.views, self.plot.mel.clip_db)) for _ in range(2))
            self.epoch, self.step = epoch, epoch * self.steps_per_epoch + i
            yield x0, x1

    def loss(self, batch) -> torch.Tensor:
        loss = self.module.loss(*batch, step=self.step, epoch=self.epoch)
        z = self.module.last_embedding
        self.stds.append(embedding_std(z))
        self.dim = int(z.shape[1])
        return loss

    def after_step(self) -> None:
        self.module.after_step(self.step)

    def validate(self) -> dict[str, float]:
        """The collapse guard: the epoch's mean embedding std (module docstring)."""
        if not self.stds:
            return {}
        std = sum(self.stds) / len(self.stds)
        log.info("epoch %d: embedding std %.4g (1/sqrt(d) = %.4g)", self.epoch + 1, std, 1 / math.sqrt(self.dim))
        check_collapse(std, self.dim, self.epoch + 1)
        return {"embedding_std": std}


def steps_per_epoch(n_clips: int, batch_size: int) -> int:
    """Full batches of ``batch_size`` clips in an epoch (one batch of every clip when fewer)."""
    return max(1, n_clips // max(1, batch_size))
