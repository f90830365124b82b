"""Training of the CRNN: Adam, cross-entropy on (soft) targets, augmentation, a checkpoint per
epoch and an exact resume on CPU.

Adam (β 0.9, 0.999, learning rate 1e-3), batch 64, 100 epochs, all randomness from one seed.
After every epoch a checkpoint (model, optimiser, gradient scaler, epoch, RNG states) is written;
a rerun resumes from it and, on CPU, ends with the same weights as an uninterrupted run. Mixed
precision (float16 autocast) on CUDA.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..config import canonical_json
from ..errors import ConfigError, StoreError
from ..io import atomic_path
from ..store import describe_difference
from .config import TrainingConfig
from .model import CRNN


@dataclass
class TrainingResult:
    model: CRNN
    history: list[dict]  #: per epoch: loss, seconds, and val_accuracy when validated
    resumed_from: int  #: epochs already done when this call started


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path: Path, config_json: str) -> dict | None:
    """The checkpoint at ``path`` if it exists; refuses one written with another configuration."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise StoreError(f"{path}: unreadable checkpoint ({str(e).splitlines()[0][:100]}); "
                         "delete it (or pass --overwrite) to train this model again") from None
    if not isinstance(state, dict) or state.get("config") != config_json:
        old = json.loads(state.get("config", "{}")) if isinstance(state, dict) else {}
        raise ConfigError(f"{path}: checkpoint of a different configuration "
                          f"({describe_difference(old, json.loads(config_json))}); rerun with the same options, "
                          "choose another -o, or pass --overwrite to start again")
    return state

def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@torch.inference_mode()
def predict_proba(model: CRNN, mels: torch.Tensor, batch_size: int = 64,
                  device: torch.device | None = None) -> np.ndarray:
    """Class probabilities float32 [N, C] of log-mels ``[N, n_mels, frames]`` (dB)."""
    device = device or next(model.parameters()).device
    model.eval()
    out = [torch.zeros(0, model.classifier.out_features)]
    for start in range(0, len(mels), batch_size):
        xb = mels[start:start + batch_size].to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model(xb)
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def train_crnn(mels: torch.Tensor, labels: np.ndarray, n_classes: int, config: TrainingConfig, *,
               checkpoint: str | Path | None = None, identity: dict | None = None,
               validation: tuple[torch.Tensor, np.ndarray] | None = None, device: str | torch.device | None = None,
               progress: bool = True, desc: str = "crnn") -> TrainingResult:
    """Train a CRNN on ``mels [V, N, n_mels, frames]`` (version 0: plain; 1..V-1: waveform-augmented
    copies) with integer ``labels [N]``.

    Every epoch each clip is replaced by a random augmented copy with probability
    ``config.augment.waveform_probability`` (when V > 1), the batch transforms of ``config.augment``
    are applied, and a checkpoint is written to ``checkpoint``; an existing checkpoint of the same
    configuration (``config`` plus ``identity``) is resumed, a finished one is loaded as is.
    ``validation = (mels [M, n_mels, frames], labels [M])`` is scored after each epoch for display.
    """
    from ..extractors.base import pick_device

    device = pick_device(str(device) if device is not None else None)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    mels = torch.as_tensor(mels)
    if mels.ndim != 4 or mels.shape[1] != len(labels):
        raise ValueError(f"mels must be [versions, {len(labels)}, n_mels, frames], got {tuple(mels.shape)}")
    versions, n, n_mels, _ = mels.shape
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    config_json = canonical_json({"training": config.to_dict(), "versions": versions, "n_classes": n_classes,
                                  **(identity or {})})
    checkpoint = Path(checkpoint) if checkpoint else None
    state = load_checkpoint(checkpoint, config_json) if checkpoint else None
    use_amp = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model = CRNN(n_mels, n_classes, config.architecture)
        plain = mels[0]
        model.set_standardization(plain.mean(dim=(0, 2)), plain.std(dim=(0, 2)))
        model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=config.betas)
        scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
        history: list[dict] = []
        start_epoch = 0
        if state is not None:
            model.load_state_dict(state["model"])
            history = list(state["history"])
            start_epoch = int(state["epoch"])
            if start_epoch < config.epochs:
                optimizer.load_state_dict(state["optimizer"])
                scaler.load_state_dict(state["scaler"])
                _set_rng_state(state["rng"], device)
        bar = None
        if progress and start_epoch < config.epochs:
            from tqdm import tqdm

            bar = tqdm(total=config.epochs, initial=start_epoch, unit="epoch", desc=desc)
        aug = config.augment
        for epoch in range(start_epoch, config.epochs):
            tic = time.perf_counter()
            model.train()
            order = torch.randperm(n)
            version = torch.zeros(n, dtype=torch.long)
            if versions > 1:
                swap = torch.rand(n) < aug.waveform_probability
                version = torch.where(swap, torch.randint(1, versions, (n,)), version)
            total_loss = 0.0
            for first in range(0, n, config.batch_size):
                idx = order[first:first + config.batch_size]
                xb = mels[version[idx], idx].to(device, non_blocking=True)
                yb = F.one_hot(y[idx], n_classes).float().to(device)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    x = model.standardize(xb)
                    x, yb = aug.augment_batch(x, yb)
                    logits = model.classify(x)
                loss = F.cross_entropy(logits.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total_loss += float(loss.detach()) * len(idx)
            record = {"epoch": epoch + 1, "loss": total_loss / n}
            if validation is not None:
                proba = predict_proba(model, torch.as_tensor(validation[0]), config.batch_size, device)
                record["val_accuracy"] = float(np.mean(proba.argmax(1) == np.asarray(validation[1])))
            record["seconds"] = time.perf_counter() - tic
            history.append(record)
            done = epoch + 1 == config.epochs
            ckpt = {"config": config_json, "epoch": epoch + 1, "model": model.state_dict(), "history": history}
            if not done:  # a finished training keeps only its weights
                ckpt.update(optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), rng=_rng_state(device))
            if checkpoint:
                _save_checkpoint(checkpoint, ckpt)
            if bar is not None:
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in ("loss", "val_accuracy")},
                                refresh=False)
                bar.update(1)
        if bar is not None:
            bar.close()
    model.eval()
    return TrainingResult(model=model, history=history, resumed_from=start_epoch)
