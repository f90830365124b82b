"""``deepfeat report RESULTS_DIR [--fold K]`` → :func:`deepfeat.report.write_report`."""
from __future__ import annotations

import click


@click.command("report")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--fold", type=int, default=None,
              help="Test fold whose runs form the table (default: the fold most runs in RESULTS_DIR use).")
def report(results_dir, fold):
    """Write RESULTS_DIR/README.md: the results table of one dataset (e.g. results/esc10).

    One row per system (network, pre-training, colour map or model) and per fusion: devel and
    test accuracy, test macro F1 and UAR, the chosen C and timings; plus test_accuracy.png.
    """
    from deepfeat.report import write_report

    click.echo(f"wrote {write_report(results_dir, fold)}")
