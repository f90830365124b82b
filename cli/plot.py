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
@dataset_options
@plot_options
@quiet_option
def plot(data, out, size, limit, quiet, **plot_kwargs):
    """Write one PNG per clip (or per window with -t) to OUT, named after the clip id: the images
    `deepfeat extract` feeds an image network."""
    from deepfeat.datasets import load_manifest
    from deepfeat.plot import write_images

    manifest = load_manifest(data, **read_options(plot_kwargs))
    n = write_images(manifest, plot_config_from(plot_kwargs, size=size), out, limit)
    if not quiet:
        click.echo(f"wrote {n} images to {out}")
