"""What ``deepfeat inspect`` shows of a feature store (:mod:`deepfeat.store`): a plain dict
(:func:`summarise_store`, also ``inspect --json``) and its lines (:func:`summary_lines`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .store import read_store


def summarise_store(path: str | Path) -> dict:
    """What ``deepfeat inspect`` shows of a feature store, as a plain (JSON-able) dict: shape,
    network, weights, classes and folds (counts), skipped clips, feature statistics, timings, config."""
    fs = read_store(path)
    per_class = {name: int((fs.labels == i).sum()) for i, name in enumerate(fs.label_names)}
    per_fold = {int(k): int(v) for k, v in zip(*np.unique(fs.folds, return_counts=True))}
    return {
        "file": str(path), "rows": int(fs.features.shape[0]), "dim": int(fs.features.shape[1]),
        "clips": int(len(set(fs.ids))), "windowed": fs.windowed, "network": fs.attrs.get("network"),
        "channels": None if fs.channels is None else sorted(int(c) for c in np.unique(fs.channels)),
        "layer": fs.attrs.get("layer"), "weights": fs.attrs.get("weights"),
        "weights_sha256": fs.attrs.get("weights_sha256") or None, "dataset": fs.attrs.get("dataset"),
        "classes": per_class, "folds": per_fold, "skipped": [{"id": i, "reason": r} for i, r in fs.skipped],
        "warnings": [{"id": i, "reason": r} for i, r in fs.warnings],
        "finite": bool(np.isfinite(fs.features).all()),
        "feature_mean": float(fs.features.mean()), "feature_std": float(fs.features.std()),
        "extract_seconds": fs.attrs.get("extract_seconds"), "device": fs.attrs.get("device"),
        "config": fs.config,
    }


def summary_lines(s: dict) -> list[str]:
    """:func:`summarise_store`'s dict as the lines ``deepfeat inspect`` prints."""
    lines = [f"{s['file']}: {s['rows']} rows x {s['dim']} features ({s['clips']} clips"
             f"{', windowed' if s['windowed'] else ''}"
             f"{', channels ' + ','.join(map(str, s['channels'])) if s.get('channels') else ''}), "
             f"all finite: {s['finite']}",
             f"  network {s['network']}  layer {s['layer']}  weights {s['weights']}"
             + (f" (sha256 {s['weights_sha256'][:12]}…)" if s["weights_sha256"] else "")]
    plot = s["config"].get("extractor", {}).get("plot")
    if plot:
        mel = plot["mel"]
        lines.append(f"  plot: {plot['colormap']} {plot['size'][0]}x{plot['size'][1]} px, {mel['n_mels']} mels, "
                     f"window {mel['window']:.4g} s, hop {mel['hop']:.4g} s, clip {mel['clip_db']:g} dB, "
                     f"{mel['sample_rate']} Hz, renderer {plot['renderer']}")
    lines.append(f"  dataset {s['dataset']}: {len(s['classes'])} classes "
                 + ", ".join(f"{k} {v}" for k, v in s["classes"].items()))
    lines.append("  folds: " + ", ".join(f"{k}: {v}" for k, v in s["folds"].items()))
    if s["extract_seconds"]:
        lines.append(f"  extracted in {s['extract_seconds']:.1f} s on {s['device']} "
                     f"({s['clips'] / s['extract_seconds']:.1f} clips/s)")
    for key in ("skipped", "warnings"):
        lines.append(f"  {key}: {len(s.get(key, []))}")
        lines += [f"    {k['id']}: {k['reason']}" for k in s.get(key, [])]
    return lines
