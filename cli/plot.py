"""``deepfeat plot DATA -o DIR`` → :func:`deepfeat.plot.write_images`."""
from __future__ import annotations

import click

from deepfeat.config import PlotConfig, field_default

from .dataset_options import dataset_options, read_options
from .options import quiet_option
from .plot_options import plot_config_from, plot_options


@click.command("plot")
@click.argument("data", type=click.Path(exists=True))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Folder for PNGs.")
@click.option("--size", type=(int, int), default=field_default(PlotConfig, "size"), show_default=True, metavar="H W",
              help="Pixels.")
@click.option("--limit", type=int, default=None, help="Only the first N clips.")
@click.option("--figure", is_flag=True,
              help="Also write a labelled figure of each (time in s, frequency in Hz, colour bar in dB) "
                   "to OUT/figures/.")
@dataset_options
@plot_options
@quiet_option
def plot(data, out, size, limit, figure, quiet, **plot_kwargs):
    """Write one PNG per clip (or per window with -t) to OUT, named after the clip id: the images
    `deepfeat extract` feeds an image network (no axes: the picture itself)."""
    from pathlib import Path

    from deepfeat.datasets import load_manifest
    from deepfeat.plot import FIGURES, write_images

    manifest = load_manifest(data, **read_options(plot_kwargs))
    n = write_images(manifest, plot_config_from(plot_kwargs, manifest, size=size), out, limit, figures=figure)
    if not quiet:
        click.echo(f"wrote {n} images to {out}" + (f" and {n} labelled figures to {Path(out) / FIGURES}" if figure else ""))
