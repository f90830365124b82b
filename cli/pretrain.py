"""``deepfeat pretrain DATA -n BACKBONE --method simclr|moco|byol|dino|barlow|swav -o CKPT``
→ :func:`deepfeat.ssl.pretrain`."""
from __future__ import annotations

import json

import click

from .dataset_options import dataset_options, read_options
from .options import FoldType, LazyChoice, LibraryDefault, quiet_option, training_config, training_options
from .plot_options import plot_config_from, plot_options


def _methods():
    from deepfeat.ssl.config import METHODS

    return METHODS


def _default(name):
    def read():
        from deepfeat.ssl import config

        return getattr(config, name)

    return read


def _pretrain_training():
    from deepfeat.ssl.config import PRETRAIN_TRAINING

    return PRETRAIN_TRAINING


class HeldOutFold(FoldType):
    """A test fold whose clips pre-training never reads, ``evaluation``, or ``none`` (every clip)."""

    def convert(self, value, param, ctx):
        if str(value).strip().lower() == "none":
            return None
        return super().convert(value, param, ctx)


@click.command("pretrain")
@click.argument("data", type=click.Path(exists=True))
@click.option("-n", "--network", default=LibraryDefault(_default("DEFAULT_BACKBONE")), show_default=True,
              help="The backbone: an image CNN (`deepfeat extract --list`, kind image).")
@click.option("--method", type=LazyChoice(_methods), default="simclr", show_default=True,
              help="Self-supervised method (lightly's losses and heads).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Weights file to write (loads with `deepfeat extract/finetune -n NETWORK -w OUTPUT`).")
@click.option("-w", "--weights", default="none", show_default=True,
              help="Where the backbone starts: none (random init, fixed seed) | imagenet | a checkpoint path.")
@click.option("--fold", type=HeldOutFold(), default=5, show_default=True,
              help="Test fold never read (nor any evaluation partition); none: every clip. Data without folds (a plain "
                   "folder of audio) is read whole.")
@click.option("--size", type=(int, int), default=LibraryDefault(_default("DEFAULT_SIZE")), show_default=True,
              metavar="H W", help="Image size in pixels; extract and fine-tune at the same size.")
@training_options(_pretrain_training)
@click.option("--labels", "audio_root", default=None, type=click.Path(exists=True, file_okay=False),
              help="With a label CSV as DATA: folder its file paths are relative to.")
@click.option("--cache-dir", default="features", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the cached log-mel spectrograms.")
@click.option("--workers", type=int, default=None,
              help="Processes computing the spectrograms (default: CPU count, at most 4).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT (and its training checkpoint) of another pre-training.")
@dataset_options
@plot_options
@click.option("--json", "as_json", is_flag=True, help="Print what made the weights file as JSON.")
@quiet_option
def pretrain(data, network, method, output, weights, fold, size, training_options, audio_root, cache_dir, workers,
             device, threads, overwrite, as_json, quiet, **plot_kwargs):
    """Pre-train an image CNN on the mel-spectrogram images of DATA without labels (SimCLR, MoCo,
    BYOL, DINO, Barlow Twins or SwAV), from two views per clip made in the spectrogram domain.

    DATA is any dataset (labels are ignored) or a plain folder of audio; the clips of --fold are
    never read. A checkpoint is written after every epoch (OUTPUT.training): rerun the same command
    to resume. The collapse guard logs the embedding standard deviation per epoch and warns when
    it falls towards zero.
    """
    from deepfeat.datasets import load_manifest
    from deepfeat.ssl import pretrain as run_pretrain
    from deepfeat.ssl.config import PRETRAIN_TRAINING

    manifest = load_manifest(data, audio_root, **read_options(plot_kwargs))
    plot = plot_config_from(plot_kwargs, manifest)
    info = run_pretrain(manifest, output, method=method, backbone=network, weights=weights, test_fold=fold, plot=plot,
                        size=tuple(size), training=training_config(PRETRAIN_TRAINING, training_options), device=device,
                        threads=threads, workers=workers, cache_dir=cache_dir, progress=not quiet, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps({k: v for k, v in info.items() if k != "identity"}, indent=2))
        return
    click.echo(summary_line(info))


def summary_line(info: dict) -> str:
    """One line on a pre-trained weights file: method, backbone, data, budget, last loss and std."""
    history = info.get("history") or [{}]
    held = info["data"]["held_out_folds"]
    std = history[-1].get("val_embedding_std")
    return (f"wrote {info['path']}: {info['method']} {info['backbone']}, {info['data']['n_clips']} clips of "
            f"{info['data']['dataset']}" + (f" (fold {', '.join(map(str, held))} held out)" if held else "")
            + f", {info['epochs']} epochs in {info['train_seconds']:.0f} s on {info['device']}; "
            f"loss {history[0].get('loss', float('nan')):.4g} -> {history[-1].get('loss', float('nan')):.4g}"
            + (f", embedding std {std:.3g}" if std is not None else "") + f"; sha256 {info['sha256'][:12]}")
