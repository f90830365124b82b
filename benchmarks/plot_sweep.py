"""Plot-parameter sweep on ESC-10 (or DATA): which image settings give the best *development*
accuracy with EfficientNet-Lite0 ImageNet features and the fold-5 SVM protocol.

    .venv/bin/python benchmarks/plot_sweep.py [DATA] [--out results/esc10/plot-sweep.md]

Each setting is extracted to features/sweep/ (reused when complete) and classified with
``deepfeat svm --fold 5``; settings are ranked by devel accuracy (the test fold plays no part in
the choice; its accuracy is shown for information).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from deepfeat.classify import run_svm
from deepfeat.config import MelConfig, PlotConfig
from deepfeat.datasets import load_manifest
from deepfeat.extract import extract_features
from deepfeat.extractors import create_extractor

SETTINGS = {
    "paper 0.32/0.16 s, viridis, -80 dB, nearest (DeepSpectrum-like)":
        PlotConfig(mel=MelConfig.from_preset("paper", clip_db=-80), colormap="viridis", interpolation="nearest"),
    "paper 0.32/0.16 s, viridis, -80 dB, bilinear":
        PlotConfig(mel=MelConfig.from_preset("paper", clip_db=-80), colormap="viridis"),
    "fine 25/10 ms, viridis, -80 dB, bilinear":
        PlotConfig(mel=MelConfig.from_preset("fine", clip_db=-80), colormap="viridis"),
    "fine 25/10 ms, viridis, -60 dB, bilinear":
        PlotConfig(mel=MelConfig.from_preset("fine", clip_db=-60), colormap="viridis"),
    "fine 25/10 ms, magma, -60 dB, bilinear (default)": PlotConfig(),
    "fine 25/10 ms, magma, -30 dB, bilinear":
        PlotConfig(mel=MelConfig.from_preset("fine", clip_db=-30), colormap="magma"),
    "fine 25/10 ms, gray, -60 dB, bilinear":
        PlotConfig(mel=MelConfig.from_preset("fine", clip_db=-60), colormap="gray"),
    "mel3 (25/10, 50/25, 100/50 ms), -60 dB, bilinear": PlotConfig(colormap="mel3"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/datasets/esc10")
    parser.add_argument("--out", default="results/esc10/plot-sweep.md")
    args = parser.parse_args()
    manifest = load_manifest(args.data)
    rows = []
    for i, (name, plot) in enumerate(SETTINGS.items()):
        store = Path("features/sweep") / f"{manifest.name}-lite0-{i}.h5"
        t = time.perf_counter()
        extract_features(manifest, create_extractor("efficientnet_lite0", plot=plot), store, progress=False)
        seconds = time.perf_counter() - t
        m = run_svm(store, fold=5, run_dir=Path("features/sweep") / f"svm-{i}")
        rows.append((m["devel_accuracy"], m["test_accuracy"], m["best_C"], seconds, name))
        print(f"{name}: devel {m['devel_accuracy']:.4f} test {m['test_accuracy']:.4f}", flush=True)
    rows.sort(key=lambda r: -r[0])
    lines = [f"# Plot-parameter sweep on {manifest.name} (EfficientNet-Lite0 ImageNet, linear SVM, test fold 5)", "",
             "Ranked by devel accuracy (4-fold CV over folds 1-4); the test fold does not take part in the choice.",
             f"Reproduce: `.venv/bin/python benchmarks/plot_sweep.py {args.data}`.", "",
             "| setting | devel acc. | test acc. | best C | extract s (incl. reuse) |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {n} | {d * 100:.2f} | {te * 100:.2f} | {c:g} | {s:.0f} |" for d, te, c, s, n in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
