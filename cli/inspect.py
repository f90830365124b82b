"""``deepfeat inspect FILE.h5`` → :func:`deepfeat.store_summary.summarise_store`."""
from __future__ import annotations

import json

import click

from .options import json_option


@click.command("inspect")
@click.argument("path", type=click.Path(dir_okay=False))
@json_option
def inspect_store(path, as_json):
    """Summarise the HDF5 feature store PATH: shape, network, classes, folds, skipped clips, config."""
    from deepfeat.store_summary import summarise_store, summary_lines

    summary = summarise_store(path)
    click.echo(json.dumps(summary, indent=2) if as_json else "\n".join(summary_lines(summary)))
