"""Feature stores as DeepSpectrum-style tables: ``name[,channel][,timeStamp],neuron_1..neuron_D,class``
(``channel`` for stores of single-channel rows, ``--channels each``)."""
from __future__ import annotations

import csv
from pathlib import Path

from .store import FeatureSet


def _rows(fs: FeatureSet):
    for i in range(fs.features.shape[0]):
        label = fs.label_names[fs.labels[i]] if fs.labels[i] >= 0 else "?"
        head = [fs.ids[i]] + ([str(fs.channels[i])] if fs.channels is not None else []) \
            + ([f"{fs.window_starts[i]:.3f}"] if fs.windowed else [])
        yield head, [f"{v:.7g}" for v in fs.features[i]], label


def write_csv(fs: FeatureSet, path: str | Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name"] + (["channel"] if fs.channels is not None else []) + (["timeStamp"] if fs.windowed else []) +
                   [f"neuron_{j + 1}" for j in range(fs.features.shape[1])] + ["class"])
        for head, values, label in _rows(fs):
            w.writerow(head + values + [label])
    return Path(path)


def _arff_quote(s: str) -> str:
    return "'" + str(s).replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_arff(fs: FeatureSet, path: str | Path) -> Path:
    with open(path, "w") as f:
        f.write(f"@relation {_arff_quote(fs.name)}\n\n@attribute name string\n")
        if fs.channels is not None:
            f.write("@attribute channel numeric\n")
        if fs.windowed:
            f.write("@attribute timeStamp numeric\n")
        for j in range(fs.features.shape[1]):
            f.write(f"@attribute neuron_{j + 1} numeric\n")
        f.write("@attribute class {" + ",".join(_arff_quote(n) for n in fs.label_names) + "}\n\n@data\n")
        for head, values, label in _rows(fs):
            f.write(",".join([_arff_quote(head[0])] + head[1:] + values + [label if label == "?" else _arff_quote(label)]) + "\n")
    return Path(path)
