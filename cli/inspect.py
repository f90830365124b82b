"""``deepfeat inspect FILE.h5``: summarise a feature store (or a scores file)."""
from __future__ import annotations

import json

import click

from .options import json_option


def summarise_store(path) -> dict:
    """Summary of a feature store as a plain dict."""
    import numpy as np

    from deepfeat.store import read_store

    fs = read_store(path)
    per_class = {name: int((fs.labels == i).sum()) for i, name in enumerate(fs.label_names)}
    per_fold = {int(k): int(v) for k, v in zip(*np.unique(fs.folds, return_counts=True))}
    return {
        "file": str(path), "rows": int(fs.features.shape[0]), "dim": int(fs.features.shape[1]),
        "clips": int(len(set(fs.ids))), "windowed": fs.windowed, "network": fs.attrs.get("network"),
        "layer": fs.attrs.get("layer"), "weights": fs.attrs.get("weights"),
        "weights_sha256": fs.attrs.get("weights_sha256") or None, "dataset": fs.attrs.get("dataset"),
        "classes": per_class, "folds": per_fold, "skipped": [{"id": i, "reason": r} for i, r in fs.skipped],
        "finite": bool(np.isfinite(fs.features).all()),
        "feature_mean": float(fs.features.mean()), "feature_std": float(fs.features.std()),
        "extract_seconds": fs.attrs.get("extract_seconds"), "device": fs.attrs.get("device"),
        "config": fs.config,
    }


@click.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@json_option
def inspect_store(path, as_json):
    """Summarise the HDF5 feature store PATH: shape, network, classes, folds, skipped clips, config."""
    s = summarise_store(path)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"{s['file']}: {s['rows']} rows x {s['dim']} features ({s['clips']} clips"
               f"{', windowed' if s['windowed'] else ''}), all finite: {s['finite']}")
    click.echo(f"  network {s['network']}  layer {s['layer']}  weights {s['weights']}"
               + (f" (sha256 {s['weights_sha256'][:12]}…)" if s['weights_sha256'] else ""))
    plot = s["config"].get("extractor", {}).get("plot")
    if plot:
        mel = plot["mel"]
        click.echo(f"  plot: {plot['colormap']} {plot['size'][0]}x{plot['size'][1]} px, {mel['n_mels']} mels, "
                   f"window {mel['window']:.4g} s, hop {mel['hop']:.4g} s, clip {mel['clip_db']:g} dB, "
                   f"{mel['sample_rate']} Hz, renderer {plot['renderer']}")
    click.echo(f"  dataset {s['dataset']}: {len(s['classes'])} classes " +
               ", ".join(f"{k} {v}" for k, v in s["classes"].items()))
    click.echo("  folds: " + ", ".join(f"{k}: {v}" for k, v in s["folds"].items()))
    if s["extract_seconds"]:
        click.echo(f"  extracted in {s['extract_seconds']:.1f} s on {s['device']} "
                   f"({s['clips'] / s['extract_seconds']:.1f} clips/s)")
    click.echo(f"  skipped: {len(s['skipped'])}" + "".join(f"\n    {k['id']}: {k['reason']}" for k in s["skipped"]))
