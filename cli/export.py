"""``deepfeat export FILE.h5 --format csv|arff``: DeepSpectrum-compatible feature tables."""
from __future__ import annotations

import click


@click.command("export")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "arff"]), default="csv", show_default=True)
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: the store's name with .csv/.arff).")
def export(path, fmt, out):
    """Write the store's features as a table: name[, timeStamp], neuron_1..neuron_D, class."""
    from pathlib import Path

    from deepfeat.export import write_arff, write_csv
    from deepfeat.store import read_store

    fs = read_store(path)
    out = Path(out) if out else Path(path).with_suffix(f".{fmt}")
    (write_csv if fmt == "csv" else write_arff)(fs, out)
    click.echo(f"wrote {out} ({fs.features.shape[0]} rows)")
