"""The six self-supervised methods, each a module around a backbone built from lightly's parts:
losses (``NTXentLoss`` with or without its memory bank, ``NegativeCosineSimilarity``,
``DINOLoss``, ``BarlowTwinsLoss``, ``SwaVLoss``), projection and prediction heads, prototypes
(``SwaVPrototypes``), queues (``MemoryBankModule``) and momentum encoders (``deactivate_requires_grad``,
``update_momentum`` with ``cosine_schedule``), set up as lightly's examples set them up.

A method is registered with :func:`register_method`; :func:`build_method` makes one. Every method
takes two views ``x0, x1`` (normalised images [B, 3, H, W]) and returns the loss
(:meth:`SSLMethod.loss`), keeps the online embedding of the first view for the collapse guard
(:meth:`SSLMethod.online`) and updates its momentum encoders after each optimiser step
(:meth:`SSLMethod.after_step`). Memory banks and queues are part of the module's state dict (their
buffers are not persistent in lightly), so a resumed training continues with the same negatives.
"""
from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy

import torch
from torch import nn

from ..extractors.image_cnn import StagedNetwork
from .config import MethodConfig, check_method

_METHODS: dict[str, Callable[..., SSLMethod]] = {}


def register_method(name: str):
    """Class decorator: make the method available as ``deepfeat pretrain --method NAME``."""

    def wrap(cls):
        _METHODS[check_method(name)] = cls
        cls.name = name
        return cls

    return wrap


class Backbone(nn.Module):
    """A whole image network (``net``, whose state dict is saved in its official key layout) and
    its stages up to the extractor's default layer: ``forward`` gives those features [B, D]."""

    def __init__(self, net: nn.Module, staged: StagedNetwork, dim: int):
        super().__init__()
        self.net, self.dim = net, dim
        self._staged = staged  # its modules are ``net``'s, so they are registered (and copied) once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._staged.features(x)


def momentum_copy(module: nn.Module, copy: bool = True) -> nn.Module:
    """A copy of ``module`` (``module`` itself if not ``copy``) without gradients: a momentum
    encoder (lightly's ``deactivate_requires_grad``)."""
    from lightly.models.utils import deactivate_requires_grad

    target = deepcopy(module) if copy else module
    deactivate_requires_grad(target)
    return target


class SSLMethod(nn.Module):
    """Base: ``backbone`` (what pre-training is for) plus the method's heads and loss.

    Parameters
    ----------
    backbone : Backbone
    config : MethodConfig
    n_clips : int
        Training clips (bounds memory banks and queues).
    steps_per_epoch, epochs : int
        The schedule (momentum, frozen prototypes).
    """

    name = ""
    #: (online, momentum) module pairs updated after each step
    momentum_pairs: tuple[tuple[str, str], ...] = ()

    def __init__(self, backbone: Backbone, config: MethodConfig, n_clips: int, steps_per_epoch: int, epochs: int):
        super().__init__()
        self.backbone, self.config = backbone, config
        self.n_clips, self.steps_per_epoch, self.total_steps = n_clips, steps_per_epoch, steps_per_epoch * epochs

    def loss(self, x0: torch.Tensor, x1: torch.Tensor, step: int, epoch: int) -> torch.Tensor:
        """The method's loss on two views [B, 3, H, W]; by default its criterion on both views'
        online embeddings (SimCLR, Barlow Twins)."""
        return self.criterion(self.online(x0), self.embedding(x1))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The online embedding the loss compares, [B, d]: by default the projection head on the backbone."""
        return self.head(self.backbone(x))

    def online(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`embedding`, kept (detached) as :attr:`last_embedding` in training mode: the
        collapse guard reads it, so it costs no forward pass of its own."""
        z = self.embedding(x)
        if self.training:
            self.last_embedding = z.detach()
        return z

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Move every momentum encoder towards its online network (cosine schedule of the momentum)."""
        if not self.momentum_pairs:
            return
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(step, max(self.total_steps, 1), *self.config.momentum)
        for online, target in self.momentum_pairs:
            update_momentum(getattr(self, online), getattr(self, target), m=m)

    def _banks(self) -> list[nn.Module]:
        from lightly.models.modules.memory_bank import MemoryBankModule

        return [m for m in self.modules() if isinstance(m, MemoryBankModule) and m.size[0] > 0]

    def get_extra_state(self) -> dict:
        return {f"bank{i}": {"bank": b.bank.clone(), "ptr": b.bank_ptr.clone()} for i, b in enumerate(self._banks())}

    def set_extra_state(self, state: dict) -> None:
        for i, b in enumerate(self._banks()):
            b.bank.copy_(state[f"bank{i}"]["bank"])
            b.bank_ptr.copy_(state[f"bank{i}"]["ptr"])


@register_method("simclr")
class SimCLR(SSLMethod):
    """SimCLR (Chen et al. 2020): NT-Xent between the projections of two views, in-batch negatives."""

    def __init__(self, backbone, config, *args):
        super().__init__(backbone, config, *args)
        from lightly.loss import NTXentLoss
        from lightly.models.modules.heads import SimCLRProjectionHead

        self.head = SimCLRProjectionHead(backbone.dim, config.hidden_dim, config.out_dim)
        self.criterion = NTXentLoss(temperature=config.simclr_temperature)


@register_method("moco")
class MoCo(SSLMethod):
    """MoCo v2 (Chen et al. 2020): queries of one view against momentum keys of the other, with a
    memory bank of past keys as negatives."""

    momentum_pairs = (("backbone", "backbone_momentum"), ("head", "head_momentum"))

    def __init__(self, backbone, config, *args):
        super().__init__(backbone, config, *args)
        from lightly.loss import NTXentLoss
        from lightly.models.modules.heads import MoCoProjectionHead

        self.head = MoCoProjectionHead(backbone.dim, config.hidden_dim, config.out_dim)
        self.backbone_momentum, self.head_momentum = momentum_copy(backbone), momentum_copy(self.head)
        bank = min(config.memory_bank, self.n_clips)
        self.criterion = NTXentLoss(temperature=config.moco_temperature,
                                    memory_bank_size=(bank, config.out_dim) if bank else 0)

    def loss(self, x0, x1, step, epoch):
        with torch.no_grad():
            key = self.head_momentum(self.backbone_momentum(x1))
        return self.criterion(self.online(x0), key)


@register_method("byol")
class BYOL(SSLMethod):
    """BYOL (Grill et al. 2020): the online prediction of each view regresses the momentum
    projection of the other (negative cosine similarity, symmetrised)."""

    momentum_pairs = (("backbone", "backbone_momentum"), ("projection", "projection_momentum"))

    def __init__(self, backbone, config, *args):
        super().__init__(backbone, config, *args)
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead

        self.projection = BYOLProjectionHead(backbone.dim, config.hidden_dim, config.out_dim)
        self.prediction = BYOLPredictionHead(config.out_dim, config.hidden_dim, config.out_dim)
        self.backbone_momentum, self.projection_momentum = momentum_copy(backbone), momentum_copy(self.projection)
        self.criterion = NegativeCosineSimilarity()

    def embedding(self, x):
        return self.projection(self.backbone(x))

    def loss(self, x0, x1, step, epoch):
        p0, p1 = self.prediction(self.online(x0)), self.prediction(self.embedding(x1))
        with torch.no_grad():
            z0, z1 = (self.projection_momentum(self.backbone_momentum(x)) for x in (x0, x1))
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))


@register_method("dino")
class DINO(SSLMethod):
    """DINO (Caron et al. 2021): the student's softmax over prototype logits matches the centred,
    sharpened softmax of a momentum teacher, across the two views (no local crops)."""

    momentum_pairs = (("backbone", "teacher_backbone"), ("head", "teacher_head"))

    def __init__(self, backbone, config, *args):
        super().__init__(backbone, config, *args)
        from lightly.loss import DINOLoss
        from lightly.models.modules.heads import DINOProjectionHead

        self.head = DINOProjectionHead(backbone.dim, config.hidden_dim, 64, config.dino_dim)
        # the head's weight-normalised layer cannot be deep-copied: the teacher is a new head
        # loaded with the student's weights (as the DINO authors initialise it)
        teacher_head = DINOProjectionHead(backbone.dim, config.hidden_dim, 64, config.dino_dim)
        teacher_head.load_state_dict(self.head.state_dict())
        self.teacher_backbone, self.teacher_head = momentum_copy(backbone), momentum_copy(teacher_head, copy=False)
        self.criterion = DINOLoss(output_dim=config.dino_dim)

    def loss(self, x0, x1, step, epoch):
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone(x)) for x in (x0, x1)]
        return self.criterion(teacher, [self.online(x0), self.embedding(x1)])


@register_method("barlow")
class BarlowTwins(SSLMethod):
    """Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views' projections
    is pushed to the identity."""

    def __init__(self, backbone, config, *args):
        super().__init__(backbone, config, *args)
        from lightly.loss import BarlowTwinsLoss
        from lightly.models.modules.heads import BarlowTwinsProjectionHead

        self.head = BarlowTwinsProjectionHead(backbone.dim, config.barlow_dim, config.barlow_dim)
        self.criterion = BarlowTwinsLoss()


@register_method("swav")
class SwAV(SSLMethod):
    """SwAV (Caron et al. 2020): each view predicts the other's Sinkhorn assignment to learned
    prototypes (frozen during the first epoch); a queue of past features per view joins the
    assignment from the second epoch, as small batches need."""

    def __init__(self, backbone, config, *args):
        super().__init__(backbone, config, *args)
        from lightly.loss import SwaVLoss
        from lightly.loss.memory_bank import MemoryBankModule
        from lightly.models.modules.heads import SwaVProjectionHead, SwaVPrototypes

        self.head = SwaVProjectionHead(backbone.dim, config.hidden_dim, config.out_dim)
        self.prototypes = SwaVPrototypes(config.out_dim, config.prototypes, n_steps_frozen_prototypes=self.steps_per_epoch)
        queue = min(config.swav_queue, self.n_clips)
        self.queues = nn.ModuleList([MemoryBankModule(size=(queue, config.out_dim)) for _ in range(2)] if queue else [])
        self.criterion = SwaVLoss()

    def embedding(self, x):
        return nn.functional.normalize(self.head(self.backbone(x)), dim=1)

    def loss(self, x0, x1, step, epoch):
        self.prototypes.normalize()
        features = [self.online(x0), self.embedding(x1)]
        scores = [self.prototypes(f, step) for f in features]
        queued = None
        if len(self.queues):
            with torch.no_grad():  # lightly's banks are [dim, size]: transpose to rows of features
                banks = [queue(f.detach(), update=True)[1].T for queue, f in zip(self.queues, features)]
                queued = [self.prototypes(b, step) for b in banks] if epoch >= 1 else None
        return self.criterion(scores, [], queue_outputs=queued).squeeze()


def build_method(name: str, backbone: Backbone, config: MethodConfig, *, n_clips: int, steps_per_epoch: int,
                 epochs: int) -> SSLMethod:
    """The method ``name`` (one of :data:`~deepfeat.ssl.config.METHODS`) around ``backbone``."""
    return _METHODS[check_method(name)](backbone, config, n_clips, steps_per_epoch, epochs)
