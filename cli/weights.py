"""``deepfeat weights list|download NAME``: the weights resolver from the shell."""
from __future__ import annotations

import click


@click.group("weights")
def weights():
    """Show which pretrained weights files are present, or fetch one (needs internet)."""


@weights.command("list")
def list_weights():
    """Every known weights file: present (with its path) or missing (with where it goes)."""
    from deepfeat import weights as registry

    for name, wf in registry.registered().items():
        path = registry.locate(wf)
        state = f"present  {path}" if path else f"missing  (expected {wf.filename} in {registry.cache_dirs()[0]})"
        click.echo(f"{name:32s} {state}")


@weights.command("download")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False), default=None, help="Folder (default: the cache).")
def download(name, dest):
    """Fetch weights NAME into the cache (atomic write, checksum verified)."""
    from deepfeat import weights as registry

    path = registry.download(name, dest)
    click.echo(f"downloaded {name} to {path}")
