"""A CRNN trained directly on log-mel spectrograms (Amiriparian et al. 2020, §3.2), with the
mel cache, the resumable training loop and the fold protocol of ``deepfeat crnn``.

Input: each clip is decoded with :func:`deepfeat.audio.load_audio`, padded/cropped to a fixed
duration and turned into a clipped log-mel spectrogram with :func:`deepfeat.spectrogram.log_mel`
(the plot stage's code and :class:`~deepfeat.config.MelConfig`). The model standardises every mel
band with the training clips' mean and standard deviation (stored in the model as buffers).

Architectures (:data:`ARCHITECTURES`; channel counts and pooling are not given by the paper and
are chosen here):

* ``esc`` (§3.2.2, ESC-50/ESC-10): 4 blocks of 3×3 convolution → batch norm → ELU → 2×2 max
  pooling → 30 % dropout with 8, 16, 32, 64 channels; 2 GRU layers of 256 units on the
  [frames, channels × bands] sequence; 30 % dropout; a linear layer on the last hidden state.
  Small channel counts keep the 5 trainings of the ESC-10 protocol within 30 min on 2 CPU cores.
* ``dcase`` (§3.2.1, DCASE 2018): 3 blocks with 5×5, 4×4, 3×3 kernels and 16, 32, 64 channels,
  pooling 2×2, 2×2 and 32 (bands) × 2 (frames), which folds 128 bands into one.

ELU is strictly increasing, so each block max-pools *before* the ELU: the output and gradients
equal conv → BN → ELU → pool, and the ELU runs on a quarter of the values.

Training: Adam (β 0.9, 0.999, learning rate 1e-3), batch 64, cross-entropy on (soft) targets,
100 epochs, all randomness from one seed. After every epoch a checkpoint (model, optimiser,
gradient scaler, epoch, RNG states) is written; a rerun resumes from it and, on CPU, ends with
the same weights as an uninterrupted run. Mixed precision (float16 autocast) on CUDA.

Protocol (:func:`run_crnn`): for each development fold, train on the other development folds
and predict it (out-of-fold probabilities); then train on all development folds and predict the
test fold. The held-out fold's accuracy is shown per epoch for monitoring only: the model after
the last epoch is used, nothing is selected on it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import __version__
from .audio import fix_length, load_audio
from .augment import AugmentConfig, WaveformAugmentation
from .config import MelConfig, canonical_json
from .datasets import Manifest
from .errors import ConfigError, StoreError
from .spectrogram import log_mel
from .store import describe_difference

log = logging.getLogger("deepfeat.crnn")

#: Mel settings of the CRNN input: 128 bands, 80 ms Hann windows every 40 ms, clipped at -80 dB.
#: 5 s → 126 frames (coarser than speech framing, to fit 500 CPU epochs into 30 min).
CRNN_MEL = MelConfig(sample_rate=44100, n_mels=128, window=0.08, hop=0.04, fmin=0.0, fmax=None, clip_db=-80.0)
DEFAULT_DURATION = 5.0  #: seconds every clip is padded or cropped to
ORIGINAL = "original"  #: mel-cache name of the unaugmented spectrograms


# ============================================================================ model

@dataclass(frozen=True)
class CRNNArchitecture:
    """Convolutional blocks (channels, kernel and pooling as (bands, frames)) then GRU layers."""

    channels: tuple[int, ...]
    kernels: tuple[tuple[int, int], ...]
    pools: tuple[tuple[int, int], ...]  #: max-pooling per block, (mel bands, frames)
    gru_units: int = 256
    gru_layers: int = 2
    dropout: float = 0.3

    def __post_init__(self):
        for name in ("channels", "kernels", "pools"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(tuple(int(v) for v in x) if isinstance(x, (list, tuple)) else int(x)
                                                 for x in value))
        if not (len(self.channels) == len(self.kernels) == len(self.pools)) or not self.channels:
            raise ConfigError("channels, kernels and pools need one entry per convolutional block")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def output_size(self, n_mels: int, frames: int) -> tuple[int, int]:
        """(bands, frames) after the convolutional blocks."""
        for pool_f, pool_t in self.pools:
            n_mels, frames = n_mels // pool_f, frames // pool_t
        return n_mels, frames

    @classmethod
    def from_dict(cls, d: dict) -> "CRNNArchitecture":
        return cls(**d)


ARCHITECTURES: dict[str, CRNNArchitecture] = {
    "esc": CRNNArchitecture(channels=(8, 16, 32, 64), kernels=((3, 3),) * 4, pools=((2, 2),) * 4),
    "dcase": CRNNArchitecture(channels=(16, 32, 64), kernels=((5, 5), (4, 4), (3, 3)),
                              pools=((2, 2), (2, 2), (32, 2))),
}


def conv_block(c_in: int, c_out: int, kernel: tuple[int, int], pool: tuple[int, int], dropout: float) -> nn.Sequential:
    """'Same' zero padding → convolution → batch norm over channels → max pooling → ELU → dropout.

    Even kernels are padded one more at the end than at the start (as torch's ``padding="same"``).
    """
    k_f, k_t = kernel
    return nn.Sequential(nn.ZeroPad2d(((k_t - 1) // 2, k_t // 2, (k_f - 1) // 2, k_f // 2)),
                         nn.Conv2d(c_in, c_out, kernel), nn.BatchNorm2d(c_out),
                         nn.MaxPool2d(pool), nn.ELU(), nn.Dropout(dropout))


class CRNN(nn.Module):
    """Log-mel spectrograms in dB ``[B, n_mels, frames]`` → class logits ``[B, n_classes]``."""

    def __init__(self, n_mels: int, n_classes: int, architecture: CRNNArchitecture):
        super().__init__()
        self.architecture = architecture
        self.register_buffer("band_mean", torch.zeros(n_mels, 1))  #: dB, per mel band
        self.register_buffer("band_std", torch.ones(n_mels, 1))  #: dB, per mel band
        a = architecture
        bands = a.output_size(n_mels, 10 ** 6)[0]
        if bands < 1:
            raise ConfigError(f"{n_mels} mel bands cannot be pooled by {[p[0] for p in a.pools]}; use more bands")
        self.blocks = nn.Sequential(*(conv_block(c_in, c_out, k, p, a.dropout) for c_in, c_out, k, p in
                                      zip((1,) + a.channels[:-1], a.channels, a.kernels, a.pools)))
        self.gru = nn.GRU(a.channels[-1] * bands, a.gru_units, a.gru_layers, batch_first=True)
        self.dropout = nn.Dropout(a.dropout)
        self.classifier = nn.Linear(a.gru_units, n_classes)

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-band mean and standard deviation (dB, shape [n_mels]) of the training spectrograms."""
        self.band_mean.copy_(mean.reshape(-1, 1))
        self.band_std.copy_(std.reshape(-1, 1).clamp_min(1e-3))

    def standardize(self, mels_db: torch.Tensor) -> torch.Tensor:
        return (mels_db - self.band_mean) / self.band_std

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised spectrograms → logits."""
        z = self.blocks(x[:, None])  # [B, C, bands, frames]
        b, c, f, t = z.shape
        if t < 1:
            raise ConfigError("spectrograms are too short for the pooling; use a longer --duration or a shorter --hop")
        _, hidden = self.gru(z.permute(0, 3, 1, 2).reshape(b, t, c * f))
        return self.classifier(self.dropout(hidden[-1]))

    def forward(self, mels_db: torch.Tensor) -> torch.Tensor:
        return self.classify(self.standardize(mels_db))


# ============================================================================ mel cache

MEL_FORMAT = "deepfeat.mels"


def mel_cache_key(manifest: Manifest, mel: MelConfig, duration: float) -> dict:
    """What the cached spectrograms depend on: mel settings, clip duration, the dataset."""
    return {"mel": dataclasses.asdict(mel), "duration": float(duration), "dataset": manifest.name,
            "manifest_sha256": manifest.fingerprint()}


def default_mel_cache(manifest: Manifest, mel: MelConfig, duration: float) -> Path:
    """``features/<dataset>-crnn-mels-<hash>.h5``: one file per mel configuration."""
    import hashlib

    digest = hashlib.sha256(canonical_json(mel_cache_key(manifest, mel, duration)).encode()).hexdigest()[:10]
    return Path("features") / f"{manifest.name}-crnn-mels-{digest}.h5"


def clip_mels(path: Path, clip_id: str, mel: MelConfig, duration: float,
              augmentations: list[WaveformAugmentation | None]) -> list[np.ndarray]:
    """Log-mels [n_mels, frames] of one clip, one per augmentation (``None``: the clip as is).

    Augmentations act on the whole decoded clip; the result is then padded/cropped to ``duration``.
    """
    samples, rate = load_audio(path, mel.sample_rate)
    out = []
    for aug in augmentations:
        x = samples if aug is None else aug.apply(samples, rate, clip_id)
        out.append(log_mel(fix_length(x, rate, duration), mel))
    return out


def _map_clips(fn, calls: list[tuple], workers: int):
    """``fn(*args)`` for each of ``calls``, in order, in ``workers`` processes (in this one if <= 1)."""
    if workers <= 1:
        yield from (fn(*args) for args in calls)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(fn, *zip(*calls), chunksize=4)


def _check_mel_cache(path: Path, key: dict, overwrite: bool) -> None:
    """Refuse a file at ``path`` that is not the mel cache of ``key`` (delete it if ``overwrite``)."""
    if not path.exists():
        return
    try:
        with h5py.File(path, "r") as f:
            stored = f.attrs.get("key") if f.attrs.get("format") == MEL_FORMAT else None
    except OSError:
        stored = None
    if stored == canonical_json(key):
        return
    if overwrite:
        path.unlink()
    elif stored is None:
        raise StoreError(f"{path}: exists but is not a readable deepfeat mel cache; "
                         "delete it, choose another --mel-cache or pass --overwrite")
    else:
        raise StoreError(f"{path}: mel cache of a different configuration "
                         f"({describe_difference(json.loads(stored), key)}); "
                         "pass --overwrite to recompute it, or choose another --mel-cache")


def ensure_mel_cache(path: str | Path, manifest: Manifest, mel: MelConfig = CRNN_MEL,
                     duration: float = DEFAULT_DURATION, augmentations: list[WaveformAugmentation] = (),
                     workers: int | None = None, progress: bool = True, overwrite: bool = False) -> Path:
    """Make sure ``path`` holds the log-mels of every clip, plain and per waveform augmentation.

    Layout (``format = "deepfeat.mels"``): ``ids`` str [N]; ``mels/<name>`` float32
    [N, n_mels, frames] in dB for ``original`` and each augmentation name; attribute ``key``
    (canonical JSON of :func:`mel_cache_key`). Missing variants are computed (in ``workers``
    processes) and added; a cache with another key is refused unless ``overwrite``.
    """
    from .extract import default_workers

    path = Path(path)
    key = mel_cache_key(manifest, mel, duration)
    _check_mel_cache(path, key, overwrite)
    wanted: list[WaveformAugmentation | None] = [None, *augmentations]
    present = set()
    if path.exists():
        with h5py.File(path, "r") as f:
            present = {name for name, ds in f["mels"].items() if ds.attrs.get("complete", False)}
    todo = [aug for aug in wanted if (ORIGINAL if aug is None else aug.name) not in present]
    if not todo:
        return path
    names = [ORIGINAL if aug is None else aug.name for aug in todo]
    workers = default_workers() if workers is None else workers
    start = time.perf_counter()
    results = _map_clips(clip_mels, [(c.path, c.id, mel, duration, todo) for c in manifest.clips], workers)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(manifest), unit="clip", desc=f"mels {'+'.join(names)}"[:60])
    per_clip = list(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "a") as f:
        if "ids" not in f:
            f.attrs.update({"format": MEL_FORMAT, "format_version": 1, "key": canonical_json(key),
                            "deepfeat_version": __version__})
            f.create_dataset("ids", data=np.array(manifest.ids(), dtype=object), dtype=h5py.string_dtype("utf-8"))
            f.create_group("mels")
        for i, name in enumerate(names):
            if name in f["mels"]:
                del f["mels"][name]
            ds = f["mels"].create_dataset(name, data=np.stack([clip[i] for clip in per_clip]))
            ds.attrs["complete"] = True  # set last: a variant cut short by a crash is recomputed
            f.flush()
    log.info("mel cache %s: computed %s in %.1f s", path, ", ".join(names), time.perf_counter() - start)
    return path


def read_mels(path: str | Path, names: list[str]) -> np.ndarray:
    """Cached log-mels as float32 [len(names), N, n_mels, frames] (dB)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [n for n in names if n not in f["mels"] or not f["mels"][n].attrs.get("complete", False)]
            if missing:
                raise StoreError(f"{path}: mel cache lacks {', '.join(missing)}; rerun `deepfeat crnn` to compute it")
            return np.stack([f["mels"][n][()] for n in names])
    except OSError as e:
        raise StoreError(f"{path}: not a readable mel cache ({e}); delete it to recompute") from None


# ============================================================================ training

@dataclass(frozen=True)
class TrainingConfig:
    """Everything that determines a trained CRNN besides its data."""

    architecture: CRNNArchitecture = field(default_factory=lambda: ARCHITECTURES["esc"])
    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ConfigError("epochs and batch size must be >= 1 and the learning rate positive")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


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
    from .extractors.base import pick_device

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


# ============================================================================ protocol

def system_name(config: TrainingConfig) -> str:
    """``crnn`` (ESC architecture), ``crnn-dcase``; ``-aug`` appended when augmenting."""
    arch = next((name for name, a in ARCHITECTURES.items() if a == config.architecture), "custom")
    return "crnn" + ("" if arch == "esc" else f"-{arch}") + ("-aug" if config.augment.enabled else "")


def _check_labelled(manifest: Manifest) -> np.ndarray:
    labels = manifest.label_indices()
    if (labels < 0).any():
        raise ConfigError(f"{manifest.root}: {int((labels < 0).sum())} clip(s) have no label; crnn trains on "
                          "labelled data (ESC-50, UrbanSound8K, class folders or a label CSV with file,label,fold)")
    return labels


def write_model(run_dir: Path, model: CRNN, info: dict) -> Path:
    """``model.pt`` (a plain state dict) and ``model.json`` (what rebuilds and feeds the network)."""
    path = run_dir / "model.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    (run_dir / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


def load_crnn(run_dir: str | Path) -> tuple[CRNN, dict]:
    """Rebuild the final model of a ``deepfeat crnn`` run: ``(model in eval mode, model.json dict)``."""
    from .weights import load_state_dict

    run_dir = Path(run_dir)
    info_path = run_dir / "model.json"
    if not info_path.is_file():
        raise StoreError(f"{info_path}: missing; point at a finished `deepfeat crnn` run folder")
    info = json.loads(info_path.read_text())
    model = CRNN(info["mel"]["n_mels"], len(info["label_names"]), CRNNArchitecture.from_dict(info["architecture"]))
    model.load_state_dict(load_state_dict(run_dir / "model.pt"))
    return model.eval(), info


def run_crnn(manifest: Manifest, run_dir: str | Path, *, test_fold: int = 5, config: TrainingConfig | None = None,
             mel: MelConfig = CRNN_MEL, duration: float = DEFAULT_DURATION, mel_cache: str | Path | None = None,
             workers: int | None = None, device: str | None = None, progress: bool = True,
             overwrite: bool = False, system: str | None = None) -> dict:
    """The CRNN fold protocol on ``manifest``; writes the run to ``run_dir`` and returns its metrics.

    Out-of-fold probabilities for every development fold, then the model trained on all
    development folds scores ``test_fold``. ``run_dir`` receives what
    :func:`deepfeat.evaluation.write_run` writes (metrics.json, scores.h5, confusion matrix, ...),
    ``model.pt`` + ``model.json``, ``training.json`` (per-epoch loss / held-out accuracy) and
    ``checkpoints/`` (resume state). The mel cache defaults to :func:`default_mel_cache`.
    """
    from .evaluation import SCORE_NAMES, classification_metrics, development_folds, write_run
    from .extractors.base import pick_device
    from .scores import Scores

    config = config or TrainingConfig()
    system = system or system_name(config)
    run_dir = Path(run_dir)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    labels = _check_labelled(manifest)
    folds = manifest.folds()
    dev_folds = development_folds(folds, test_fold, source=str(manifest.root))
    label_names = manifest.label_names
    ckpt_dir = run_dir / "checkpoints"
    if overwrite and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    device = pick_device(device)
    timings: dict = {"train_seconds": {}}

    waveform = config.augment.waveform()
    cache = Path(mel_cache) if mel_cache else default_mel_cache(manifest, mel, duration)
    ensure_mel_cache(cache, manifest, mel, duration, waveform, workers=workers, progress=progress,
                     overwrite=overwrite)
    mels = torch.from_numpy(read_mels(cache, [ORIGINAL] + [a.name for a in waveform]))
    timings["mel_seconds"] = time.perf_counter() - t_start
    identity = {"mel_cache": mel_cache_key(manifest, mel, duration), "test_fold": test_fold}

    def rows(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(mask))

    def fit(train_mask: np.ndarray, name: str, held_out: np.ndarray | None) -> TrainingResult:
        tic = time.perf_counter()
        validation = None if held_out is None else (mels[0][rows(held_out)], labels[held_out])
        result = train_crnn(mels[:, rows(train_mask)], labels[train_mask], len(label_names), config,
                            checkpoint=ckpt_dir / f"{name}.pt", identity={**identity, "training_set": name},
                            validation=validation, device=device, progress=progress, desc=f"{system} {name}")
        timings["train_seconds"][name] = time.perf_counter() - tic
        return result

    scores = np.full((len(manifest), len(label_names)), np.nan, dtype=np.float32)
    histories = {}
    for k in dev_folds:
        result = fit(np.isin(folds, [f for f in dev_folds if f != k]), f"oof-fold{k}", folds == k)
        scores[folds == k] = predict_proba(result.model, mels[0][rows(folds == k)], config.batch_size, device)
        histories[f"oof-fold{k}"] = result.history
    test_mask = folds == test_fold
    final = fit(np.isin(folds, dev_folds), "final", None)
    scores[test_mask] = predict_proba(final.model, mels[0][rows(test_mask)], config.batch_size, device)
    histories["final"] = final.history

    # As in `deepfeat svm`: development scores are means over the development folds' out-of-fold scores.
    predictions = scores.argmax(axis=1)
    per_fold = [classification_metrics(labels[folds == k], predictions[folds == k], label_names) for k in dev_folds]
    devel = {name: float(np.mean([m[name] for m in per_fold])) for name in SCORE_NAMES}
    test = classification_metrics(labels[test_mask], predictions[test_mask], label_names)
    epoch_seconds = [r["seconds"] for h in histories.values() for r in h]
    timings["seconds_per_epoch"] = float(np.mean(epoch_seconds)) if epoch_seconds else None
    timings["total_seconds"] = time.perf_counter() - t_start
    timings["cpu_seconds"] = time.process_time() - cpu_start  # this process; contention-free cost
    run_config = {"training": config.to_dict(), "mel": dataclasses.asdict(mel), "duration": duration,
                  "dataset": manifest.name, "manifest_sha256": manifest.fingerprint(), "mel_cache": str(cache)}
    metrics = {
        "system": system, "dataset": manifest.name,
        "test_fold": int(test_fold), "development_folds": dev_folds,
        "folds": sorted(int(f) for f in np.unique(folds)),
        **{f"devel_{k}": v for k, v in devel.items()}, **{f"test_{k}": v for k, v in test.items() if k != "n"},
        "devel_fold_accuracy": {int(k): m["accuracy"] for k, m in zip(dev_folds, per_fold)},
        "n_classes": len(label_names), "n_devel": int(np.isin(folds, dev_folds).sum()), "n_test": int(test_mask.sum()),
        "epochs": config.epochs, "augmentation": config.augment.names(),
        "architecture": dataclasses.asdict(config.architecture),
        "parameters": sum(p.numel() for p in final.model.parameters()),
        "device": device.type, "config": run_config,
        "versions": {"deepfeat": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "timings": timings,
    }
    run_scores = Scores(system=system, ids=manifest.ids(), folds=folds, labels=labels, label_names=label_names,
                        scores=scores, test_fold=test_fold, score_kind="probability", config=run_config)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run(run_dir, system=system, metrics=metrics, scores=run_scores, y_true_test=labels[test_mask],
              y_pred_test=predictions[test_mask], label_names=label_names)
    write_model(run_dir, final.model, {"architecture": dataclasses.asdict(config.architecture),
                                       "mel": dataclasses.asdict(mel), "duration": duration,
                                       "label_names": label_names, "system": system})
    (run_dir / "training.json").write_text(json.dumps(histories, indent=1) + "\n")
    return metrics
