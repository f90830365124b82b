"""How ``extract``, ``plot``, ``crnn`` and ``paper`` read DATA: ``--channels``, ``--dataset-name``,
``--folds``, passed to :func:`deepfeat.datasets.load_manifest` (choices from the library)."""
from __future__ import annotations

import click

from .options import LazyChoice


def _channel_modes():
    from deepfeat.datasets import CHANNEL_MODES

    return CHANNEL_MODES


def dataset_options(f):
    options = [
        click.option("--channels", type=LazyChoice(_channel_modes), default="mix", show_default=True,
                     help="mix: one row per clip, channels averaged; each: one row per channel (e.g. DCASE 2018's "
                          "4 microphones), scores pooled per clip."),
        click.option("--dataset-name", default=None,
                     help="Name of the dataset (results/<name>/); default: its folder, or a label CSV's stem "
                          "unless generic (labels.csv, meta.csv, ...)."),
        click.option("--folds", "n_folds", type=int, default=None,
                     help="Layouts without official folds (GTZAN): how many stratified folds (default 5)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


DATASET_KEYS = ("channels", "dataset_name", "n_folds")


def read_options(kwargs: dict) -> dict:
    """Pop the dataset options out of ``kwargs`` as ``load_manifest`` keyword arguments."""
    channels, name, n_folds = (kwargs.pop(k) for k in DATASET_KEYS)
    return {"channels": channels, "name": name, "n_folds": n_folds}
