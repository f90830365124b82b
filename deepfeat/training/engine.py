"""The one training loop of deepfeat: every network deepfeat trains (the CRNN, fine-tuned CNNs,
self-supervised backbones) is a :class:`Task` run by :func:`train`.

Per epoch: the task's mini-batches (its own augmentation, drawn from torch's generator), the
task's loss, AdamW/Adam/SGD, gradient clipping, mixed precision on CUDA (bf16 or fp16 autocast,
a gradient scaler for fp16), then the task's validation metrics, the learning-rate schedule
(``torch.optim.lr_scheduler``: constant, cosine with linear warm-up, or ReduceLROnPlateau), early
stopping on a monitored validation metric, and a checkpoint. The checkpoint holds the model,
optimiser, scheduler, scaler, history, the best weights so far and every random-number state, so
a run killed at any moment (Ctrl-C, ``kill -9``) resumes where it stopped and, on CPU, ends with
exactly the weights of an uninterrupted run. All randomness comes from ``TrainConfig.seed``; the
caller's global random state is left as it was.
"""
from __future__ import annotations

import abc
import copy
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import canonical_json
from ..errors import ConfigError, StoreError
from ..io import atomic_path
from ..store import describe_difference
from .config import TrainConfig

class Task(abc.ABC):
    """What is trained: a module, its mini-batches, its loss, and (optionally) its validation."""

    module: torch.nn.Module

    @abc.abstractmethod
    def batches(self, epoch: int, batch_size: int) -> Iterable:
        """One epoch of training batches (on the device), drawn with torch's global generator."""

    @abc.abstractmethod
    def loss(self, batch) -> torch.Tensor:
        """The scalar loss of one batch (called under autocast, module in training mode)."""

    def validate(self) -> dict[str, float]:
        """Validation metrics after an epoch (module in eval mode); empty: no validation."""
        return {}

    def after_step(self) -> None:
        """Called after every optimiser step (e.g. a momentum encoder's update); default: nothing."""

    def batch_size_of(self, batch) -> int:
        """Examples in ``batch`` (weights the epoch's mean loss)."""
        return len(batch[0])


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  #: per epoch: loss, lr, seconds and validation metrics
    best_epoch: int | None = None  #: the epoch whose weights were kept (with validation)
    resumed_from: int = 0  #: epochs already done when this call started
    stopped_early: bool = False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: full float32)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16" or (precision == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    params = [p for p in parameters if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.learning_rate, momentum=0.9, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    """Stepped once per epoch; ``plateau`` with the monitored validation value."""
    from torch.optim import lr_scheduler

    if config.schedule == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min" if config.monitor == "loss" else "max",
                                              factor=0.5, patience=max(1, (config.patience or 6) // 3))
    warmup, epochs = config.warmup_epochs, config.epochs

    def factor(epoch: int) -> float:  # learning-rate multiplier of epoch `epoch` (0-based)
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        if config.schedule == "constant":
            return 1.0
        progress = (epoch - warmup) / max(1, epochs - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return lr_scheduler.LambdaLR(optimizer, factor)


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path: Path, identity_json: str) -> dict | None:
    """The checkpoint at ``path`` if there is one; one of another training is refused."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise StoreError(f"{path}: unreadable checkpoint ({str(e).splitlines()[0][:100]}); "
                         "delete it (or pass --overwrite) to train this model again") from None
    if not isinstance(state, dict) or state.get("identity") != identity_json:
        old = json.loads(state.get("identity", "{}")) if isinstance(state, dict) else {}
        raise ConfigError(f"{path}: checkpoint of a different training "
                          f"({describe_difference(old, json.loads(identity_json))}); rerun with the same options, "
                          "choose another -o, or pass --overwrite to start again")
    return state


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _improved(config: TrainConfig, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if config.monitor == "loss" else value > best


class _Run:
    """The state of one training: module, optimiser, schedule, scaler, history, best weights."""

    def __init__(self, task: Task, config: TrainConfig, device: torch.device):
        self.task, self.config, self.device = task, config, device
        self.dtype = autocast_dtype(config.precision, device)
        self.optimizer = make_optimizer(config, task.module.parameters())
        self.scheduler = make_scheduler(config, self.optimizer)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.result = TrainResult()
        self.epoch = 0
        self.best_value: float | None = None
        self.best_state: dict | None = None
        self.bad_epochs = 0

    def state(self, done: bool) -> dict:
        state = {"epoch": self.epoch, "module": self.task.module.state_dict(), "history": self.result.history,
                 "best_value": self.best_value, "best_epoch": self.result.best_epoch, "bad_epochs": self.bad_epochs,
                 "stopped_early": self.result.stopped_early}
        if self.best_state is not None:
            state["best_state"] = self.best_state
        if not done:  # a finished training keeps only its weights
            state.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                         scaler=self.scaler.state_dict(), rng=_rng_state(self.device))
        return state

    def restore(self, state: dict) -> None:
        self.task.module.load_state_dict(state["module"])
        self.epoch = self.result.resumed_from = int(state["epoch"])
        self.result.history = list(state["history"])
        self.result.best_epoch, self.result.stopped_early = state["best_epoch"], state["stopped_early"]
        self.best_value, self.bad_epochs = state["best_value"], state["bad_epochs"]
        self.best_state = state.get("best_state")
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"], self.device)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs or self.result.stopped_early

    def train_epoch(self) -> dict:
        tic = time.perf_counter()
        module, total, count = self.task.module.train(), 0.0, 0
        for batch in self.task.batches(self.epoch, self.config.batch_size):
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = self.task.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.config.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(module.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.task.after_step()
            n = self.task.batch_size_of(batch)
            total, count = total + float(loss.detach()) * n, count + n
        record = {"epoch": self.epoch + 1, "loss": total / max(count, 1), "lr": self.optimizer.param_groups[0]["lr"]}
        module.eval()
        with torch.no_grad():
            record.update({f"val_{k}": float(v) for k, v in self.task.validate().items()})
        record["seconds"] = time.perf_counter() - tic
        return record

    def end_epoch(self, record: dict) -> None:
        """Best weights, early stopping and the schedule after an epoch's ``record``."""
        self.epoch += 1
        self.result.history.append(record)
        value = record.get(f"val_{self.config.monitor}")
        if value is not None:
            if _improved(self.config, value, self.best_value):
                self.best_value, self.result.best_epoch, self.bad_epochs = value, self.epoch, 0
                self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.task.module.state_dict().items()})
            else:
                self.bad_epochs += 1
                self.result.stopped_early = self.config.patience is not None and self.bad_epochs >= self.config.patience
        if self.config.schedule == "plateau":
            if value is not None:
                self.scheduler.step(value)
        else:
            self.scheduler.step()


def train(task: Task, config: TrainConfig, *, checkpoint: str | Path | None = None, identity: dict | None = None,
          device: torch.device | None = None, progress: bool = False, desc: str = "train") -> TrainResult:
    """Train ``task.module`` (already on ``device``) by ``config``; resumable through ``checkpoint``.

    Parameters
    ----------
    task : Task
    config : TrainConfig
    checkpoint : path, optional
        Written after every epoch (atomically); an existing one of the same training (``config``
        plus ``identity``) is resumed, a finished one loaded without training.
    identity : dict, optional
        What else identifies this training (data fingerprint, task settings).
    device : torch.device, optional
        Default: the module's.
    progress : bool
        A tqdm bar with the loss and the validation metrics.

    Returns
    -------
    TrainResult
        The module is left in eval mode with the best validation epoch's weights when the task
        validates, else the last epoch's.
    """
    from tqdm import tqdm

    device = device or next(task.module.parameters()).device
    identity_json = canonical_json({"training": config.to_dict(), **(identity or {})})
    path = Path(checkpoint) if checkpoint else None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        run = _Run(task, config, device)
        state = load_checkpoint(path, identity_json) if path else None
        if state is not None:
            run.restore(state)
        with tqdm(total=config.epochs, initial=run.epoch, unit="epoch", desc=desc,
                  disable=not progress or run.finished) as bar:
            while not run.finished:
                record = run.train_epoch()
                run.end_epoch(record)
                if path:
                    save_checkpoint(path, {"identity": identity_json, **run.state(run.finished)})
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k == "loss" or k.startswith("val_")},
                                refresh=False)
                bar.update(1)
    if run.best_state is not None:
        task.module.load_state_dict(run.best_state)
    task.module.eval()
    return run.result


@torch.no_grad()
def recalibrate_batch_norm(module: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate every batch-norm layer's running statistics as the plain average over
    ``batches`` (model inputs), with dropout off: the statistics then describe the activations the
    network sees in eval mode, not those of training with dropout (the variance shift of dropout
    feeding batch norm, Li et al. 2019). The module is left in eval mode."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    module.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for x in batches:
        module(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    module.eval()
