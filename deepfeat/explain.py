"""``deepfeat explain``: saliency maps of a trained model (fine-tuned CNN or CRNN) for some clips —
Grad-CAM (Selvaraju et al. 2017, via the ``grad-cam`` package) on the last convolutional stage,
and Integrated Gradients (Sundararajan et al. 2017, via ``captum``) from a silent input — each
drawn over the clip's mel spectrogram with time (s) and frequency (Hz) axes.

A run folder's ``model.json`` says how its inputs were made (``frontend``): the CRNN's log-mels,
or the fine-tuned CNN's images and frozen trunk, which is rebuilt with the weights it was
trained from. Maps are computed for the predicted class; an ensemble's maps are its members'
mean. Each map has the input's shape ([mels, frames] or the image's [H, W]) and is resampled onto
the displayed spectrogram.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import MelConfig, PlotConfig
from .errors import StoreError

METHODS = ("gradcam", "ig")
TITLES = {"gradcam": "Grad-CAM", "ig": "Integrated Gradients"}


@dataclass
class Explainable:
    """A trained model ready for saliency: full networks (input → logits) and how inputs are made."""

    networks: list[torch.nn.Module]  #: one per ensemble member, eval mode
    targets: list[torch.nn.Module]  #: each network's last convolutional stage (Grad-CAM's layer)
    classes: list[str]
    mel: MelConfig  #: of the displayed spectrogram
    duration: float | None  #: seconds every clip is padded or cropped to (None: as is)
    image: PlotConfig | None  #: the fine-tuned CNN's images (None: the CRNN's mels)
    norm: tuple | None = None  #: (mean, std) of image channels

    def inputs(self, samples: np.ndarray) -> torch.Tensor:
        """Mono audio at ``mel.sample_rate`` → the model input [1, …] (float32)."""
        from .audio import fix_length
        from .render import spectrogram_image
        from .spectrogram import log_mel

        samples = fix_length(samples, self.mel.sample_rate, self.duration)
        if self.image is None:
            return torch.from_numpy(log_mel(samples, self.mel))[None, None]  # [1, 1, mels, frames]
        x = torch.from_numpy(spectrogram_image(samples, self.image)).permute(2, 0, 1).float()[None] / 255.0
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in self.norm)
        return (x - mean) / std

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """A silent clip's input (Integrated Gradients' starting point)."""
        silent = self.inputs(np.zeros(max(1, int(self.mel.sample_rate * (self.duration or 1.0))), np.float32))
        return silent if silent.shape == x.shape else torch.full_like(x, float(x.min()))

    def to_mel_grid(self, saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A map of the input's shape → the displayed spectrogram's [n_mels, frames] (row 0: lowest band)."""
        from PIL import Image

        grid = saliency[::-1] if self.image is not None else saliency  # image row 0 is the highest band
        resized = Image.fromarray(np.ascontiguousarray(grid, dtype=np.float32), mode="F").resize(
            (shape[1], shape[0]), Image.BILINEAR)
        return np.asarray(resized)


def _last_conv_stage(stages: list[torch.nn.Module], x: torch.Tensor) -> torch.nn.Module:
    """The last of ``stages`` (applied in turn to ``x``) whose output is a 4-D feature map."""
    last = None
    with torch.no_grad():
        for stage in stages:
            x = stage(x)
            if x.ndim == 4:
                last = stage
    if last is None:
        raise StoreError("the network has no convolutional stage for Grad-CAM")
    return last


def _finetuned(info: dict, member_dirs: list[Path], run_dir: Path) -> Explainable:
    from .extract import make_extractor
    from .finetune.classifier import FineTunedCNN
    from .finetune.inputs import frozen_trunk

    frontend = info["frontend"]
    plot = PlotConfig.from_dict(frontend["plot"])
    networks, targets = [], []
    for folder in member_dirs:
        model = FineTunedCNN.load(folder)
        trunk = frozen_trunk(make_extractor(model.network, weights=model.weights).staged_network(),
                             model.train_blocks, frontend, run_dir)
        network = torch.nn.Sequential(trunk, model.module_).eval()
        probe = torch.zeros(1, 3, *plot.size)
        stages = [*trunk, *model.module_.tail]
        networks.append(network)
        targets.append(_last_conv_stage(stages, probe))
    return Explainable(networks, targets, [str(c) for c in model.classes_], plot.mel, frontend.get("duration"), plot,
                       (frontend["mean"], frontend["std"]))


class _OneChannel(torch.nn.Module):
    """A CRNN taking mels as a one-channel image [B, 1, mels, frames] (what Grad-CAM expects)."""

    def __init__(self, crnn):
        super().__init__()
        self.crnn = crnn

    def forward(self, x):
        return self.crnn(x[:, 0])


def _crnn(info: dict, member_dirs: list[Path]) -> Explainable:
    from .crnn.classifier import CRNNClassifier

    models = [CRNNClassifier.load(folder) for folder in member_dirs]
    mel = MelConfig(**info["frontend"]["mel"])
    return Explainable([_OneChannel(m.module_).eval() for m in models], [m.module_.blocks[-1] for m in models],
                       [str(c) for c in models[0].classes_], mel, info["frontend"]["duration"], None)


def load_explainable(run_dir: str | Path) -> Explainable:
    """The model of a finished ``deepfeat finetune`` or ``deepfeat crnn`` run folder."""
    run_dir = Path(run_dir)
    info_path = run_dir / "model.json"
    if not info_path.is_file():
        raise StoreError(f"{run_dir}: no model.json; point at a finished `deepfeat finetune` or `deepfeat crnn` run")
    info = json.loads(info_path.read_text())
    members = [run_dir / name for name in info.get("members", [])] or [run_dir]
    if members != [run_dir]:
        info = json.loads((members[0] / "model.json").read_text())
    if not info.get("frontend"):
        raise StoreError(f"{info_path}: records no front end (made by an older deepfeat); rerun the training")
    if info["model"] == "finetune":
        return _finetuned(info, members, run_dir)
    if info["model"] == "crnn":
        return _crnn(info, members)
    raise StoreError(f"{info_path}: a {info['model']!r} model; explain takes fine-tuned CNNs and CRNNs")


def grad_cam(network: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM of class ``target`` for input ``x`` [1, …]: [H, W] in [0, 1], the input's spatial shape."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=network, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]


def integrated_gradients(network: torch.nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: int,
                         steps: int = 32) -> np.ndarray:
    """|Integrated Gradients| of the class-``target`` probability, summed over image channels: [H, W]."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(lambda inputs: torch.softmax(network(inputs), dim=1))
    attribution = ig.attribute(x, baselines=baseline, target=target, n_steps=steps, internal_batch_size=steps)
    saliency = attribution.detach().abs()[0]
    return (saliency.sum(dim=0) if saliency.ndim == 3 else saliency).numpy()


def saliency(model: Explainable, samples: np.ndarray, method: str, steps: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(map of the input's shape, class probabilities) of one clip, averaged over ensemble members."""
    x = model.inputs(samples)
    with torch.no_grad():
        proba = np.mean([torch.softmax(n(x), dim=1)[0].numpy() for n in model.networks], axis=0)
    target = int(proba.argmax())
    maps = []
    with torch.backends.cudnn.flags(enabled=False):  # recurrent layers' backward in eval mode
        for network, layer in zip(model.networks, model.targets):
            if method == "gradcam":
                maps.append(grad_cam(network, layer, x, target))
            else:
                maps.append(integrated_gradients(network, x, model.baseline(x), target, steps))
    return np.mean(maps, axis=0), proba


def _hz_ticks(ax, mel: MelConfig, n_mels: int) -> None:
    import librosa

    centres = librosa.mel_frequencies(n_mels + 2, fmin=mel.fmin, fmax=mel.fmax or mel.sample_rate / 2, htk=False)[1:-1]
    rows = np.linspace(0, n_mels - 1, 6).round().astype(int)
    ax.set_yticks(rows + 0.5, [f"{centres[r]:.0f}" for r in rows])
    ax.set_ylabel("frequency [Hz]")


def saliency_figure(path: str | Path, db: np.ndarray, grid: np.ndarray, mel: MelConfig, seconds: float,
                    title: str) -> Path:
    """PNG: the clip's log-mel spectrogram ``db`` [n_mels, frames] (dB) in grey with the saliency
    ``grid`` (same shape) over it, time in s, frequency in Hz, colour bars for both."""
    from matplotlib.figure import Figure

    from .io import atomic_path

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    extent = (0.0, seconds, 0, db.shape[0])
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="gray", extent=extent, vmin=mel.clip_db, vmax=0.0)
    span = float(grid.max() - grid.min()) or 1.0
    overlay = ax.imshow((grid - grid.min()) / span, origin="lower", aspect="auto", cmap="inferno", alpha=0.55,
                        extent=extent, vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="level [dB]", pad=0.01)
    fig.colorbar(overlay, ax=ax, label="saliency (scaled)", pad=0.01)
    ax.set_xlabel("time [s]")
    _hz_ticks(ax, mel, db.shape[0])
    ax.set_title(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return Path(path)


def explain_clips(run_dir: str | Path, clips: list[tuple[str, Path, str | None]], out: str | Path,
                  methods: tuple[str, ...] = METHODS, steps: int = 32) -> Path:
    """Saliency figures of ``clips`` ((id, audio path, true class or None) each) for the model of
    ``run_dir``: ``out/<id>_<method>.png`` per clip and method, and ``out/index.md`` listing them.
    Returns the index's path."""
    from .audio import fix_length, load_audio
    from .io import write_text
    from .spectrogram import log_mel

    model = load_explainable(run_dir)
    out = Path(out)
    rows = ["| clip | true | predicted | " + " | ".join(TITLES[m] for m in methods) + " |",
            "|---|---|---|" + "---|" * len(methods)]
    for clip_id, path, truth in clips:
        samples = fix_length(load_audio(path, model.mel.sample_rate)[0], model.mel.sample_rate, model.duration)
        db = log_mel(samples, model.mel)
        cells = []
        for method in methods:
            grid, proba = saliency(model, samples, method, steps)
            predicted = model.classes[int(proba.argmax())]
            name = f"{clip_id.replace('/', '_')}_{method}.png"
            title = (f"{clip_id}: predicted {predicted} ({proba.max():.0%})" + (f", true {truth}" if truth else "")
                     + f" — {TITLES[method]}")
            saliency_figure(out / name, db, model.to_mel_grid(grid, db.shape), model.mel,
                            len(samples) / model.mel.sample_rate, title)
            cells.append(f"![{TITLES[method]}]({name})")
        rows.append(f"| {clip_id} | {truth or '–'} | {predicted} | " + " | ".join(cells) + " |")
    return write_text(out / "index.md", f"# Saliency maps of {run_dir}\n\n" + "\n".join(rows) + "\n")
