"""``deepfeat svm``: a linear SVM (:class:`~deepfeat.svm.TunedSVM`) on a feature store under the
fold protocol (:mod:`deepfeat.protocol`).

One fold is the test set; the SVM's C is chosen by leave-one-development-fold-out
cross-validation (4-fold on ESC-50/ESC-10 with test fold 5), the model refitted on all
development folds scores the test fold. Windowed stores (several rows per clip) are trained per
window; each clip's decision scores are the mean of its windows' scores and its prediction their
argmax (``per_window=True`` scores each window on its own instead); C is chosen on the same unit.

``kind="sgd"`` trains :class:`~deepfeat.sgd.StreamingSVM` on a lazy view of the store
(:class:`~deepfeat.rows.StoreRows`): the features are read block by block, never whole, so
stores larger than memory can be classified.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .config import PlotConfig
from .errors import ConfigError, StoreError
from .evaluation import default_run_dir
from .io import content_sha256
from .protocol import ProtocolData, run
from .store import FeatureSet, read_store
from .svm import DEFAULT_C_GRID, MAX_KERNEL_ROWS, SVM_KINDS, TunedSVM

#: ``deepfeat svm --svm`` choices: :class:`TunedSVM`'s kinds, and ``sgd`` (:class:`~deepfeat.sgd.StreamingSVM`)
STAGE_KINDS = (*SVM_KINDS, "sgd")


def system_name(fs: FeatureSet, prefix: str = "svm", per_window: bool = False) -> str:
    """``<prefix>-<network>-<weights>[-<settings>...][-per-window]``, e.g.
    ``svm-efficientnet_lite0-imagenet`` for a store of the default settings: every setting of the
    store that differs from the default (:func:`setting_tags`) is named, so stores of other
    settings give runs of other names, and ``-per-window`` is added when a windowed store is
    scored per window."""
    weights = str(fs.attrs.get("weights") or "default")
    if os.sep in weights or weights.endswith((".pt", ".pth", ".ckpt", ".bin")):
        weights = Path(weights).stem
    parts = [prefix, str(fs.attrs.get("network") or fs.name), weights, *setting_tags(fs.config, fs.attrs)]
    if per_window and fs.windowed:
        parts.append("per-window")
    return "-".join(parts)


def setting_tags(config: dict, attrs: dict) -> list[str]:
    """Short names of a store's non-default settings, in a fixed order: layer (``layer-<name>``,
    when the store records its network's default layer), colour map (``viridis``), mel window and
    hop (a preset name, ``paper``, or ``win<ms>ms-hop<ms>ms``), ``<n>mels``, ``sr<Hz>``,
    ``fmin<Hz>``/``fmax<Hz>``, ``clip<dB>dB``, renderer, interpolation, clip length (``<s>s``),
    windows (``t<win>-<hop>s``) and seed (``seed<k>``)."""
    from .config import MEL_PRESETS

    extractor = config.get("extractor") or {}
    plot, default = extractor.get("plot") or {}, PlotConfig()
    mel, mel_default = plot.get("mel") or {}, default.mel

    def changed(values: dict, name: str, standard) -> bool:
        return name in values and values[name] != standard

    tags = []
    if attrs.get("default_layer") and str(attrs.get("layer")) != str(attrs["default_layer"]):
        tags.append(f"layer-{attrs['layer']}")
    if changed(plot, "colormap", default.colormap):
        tags.append(str(plot["colormap"]))
    if changed(mel, "window", mel_default.window) or changed(mel, "hop", mel_default.hop):
        preset = next((k for k, v in MEL_PRESETS.items() if list(v) == [mel["window"], mel["hop"]]), None)
        tags.append(preset or f"win{1000 * mel['window']:g}ms-hop{1000 * mel['hop']:g}ms")
    for name, form in (("n_mels", "{}mels"), ("sample_rate", "sr{}"), ("fmin", "fmin{:g}"), ("fmax", "fmax{:g}"),
                       ("clip_db", "clip{:g}dB")):
        if changed(mel, name, getattr(mel_default, name)):
            tags.append(form.format(mel[name]))
    tags += [str(plot[name]) for name in ("renderer", "interpolation") if changed(plot, name, getattr(default, name))]
    if extractor.get("duration") is not None:
        tags.append(f"{extractor['duration']:g}s")
    if extractor.get("segment"):
        tags.append("t{:g}-{:g}s".format(*extractor["segment"]))
    if extractor.get("seed"):
        tags.append(f"seed{extractor['seed']}")
    return tags


def check_feature_set(fs: FeatureSet) -> None:
    """Raise :class:`StoreError` (naming the file) for an empty store, non-finite or unlabelled
    rows, labels outside ``label_names``, fewer than two classes, or a clip whose windows
    disagree on label or fold."""
    n = fs.features.shape[0]
    if n == 0 or fs.features.ndim != 2 or fs.features.shape[1] == 0:
        raise StoreError(f"{fs.path}: the store has no feature rows; re-run `deepfeat extract` on a dataset with audio")
    bad = _nonfinite_rows(fs.features)
    if bad.any():
        raise StoreError(f"{fs.path}: {int(bad.sum())} of {n} rows have NaN/inf features ({_first(fs.ids[bad])}); "
                         "re-extract the store")
    unlabelled = fs.labels < 0
    if unlabelled.any():
        raise StoreError(f"{fs.path}: {int(unlabelled.sum())} of {n} rows are unlabelled "
                         f"({_first(fs.ids[unlabelled])}); "
                         "the SVM needs a label for every clip: extract from a labelled dataset")
    if fs.labels.max() >= len(fs.label_names):
        raise StoreError(f"{fs.path}: labels exceed the {len(fs.label_names)} label_names; the store is malformed, "
                         "re-extract it")
    present = np.unique(fs.labels)
    if present.size < 2:
        raise StoreError(f"{fs.path}: every row has the same class ({fs.label_names[present[0]]!r}); "
                         "a classifier needs at least 2 classes")
    _check_clips_consistent(fs)


def _nonfinite_rows(features) -> np.ndarray:
    """bool [N]: rows with NaN or infinity, of an array or a lazy view (read block by block)."""
    from .sgd import blocks

    bad = np.zeros(len(features), dtype=bool)
    for positions, block in blocks(features, 4096):
        bad[positions] = ~np.isfinite(block).all(axis=1)
    return bad


def _first(ids, k: int = 3) -> str:
    ids = [str(i) for i in ids]
    return "first: " + ", ".join(ids[:k]) + (", ..." if len(ids) > k else "")


def _check_clips_consistent(fs: FeatureSet) -> None:
    _, first, inverse = np.unique(fs.ids.astype(str), return_index=True, return_inverse=True)
    for name, values in (("label", fs.labels), ("fold", fs.folds)):
        differs = values != values[first][inverse]
        if differs.any():
            raise StoreError(f"{fs.path}: rows of the same clip have different {name}s ({_first(fs.ids[differs])}); "
                             "the store is malformed, re-extract it")


def store_data(fs: FeatureSet, per_window: bool = False) -> ProtocolData:
    """A checked feature store as protocol data: rows are the store's rows, units its clips (or
    windows when ``per_window``: ``<clip>@<start>s``, ``<clip>#ch<k>@<start>s`` for channel rows),
    with the dataset's evaluation folds and primary metric from the store's attributes."""
    check_feature_set(fs)
    ids, window_starts = fs.ids, fs.window_starts
    if per_window and fs.channels is not None:
        ids = np.array([f"{i}#ch{c}" for i, c in zip(fs.ids, fs.channels)], dtype=object)
        window_starts = np.zeros(len(ids)) if window_starts is None else window_starts
    return ProtocolData.from_rows(fs.features, fs.labels, fs.folds, fs.label_names, ids=ids,
                                  window_starts=window_starts, per_window=per_window, source=str(fs.path),
                                  evaluation_folds=json.loads(fs.attrs.get("evaluation_folds") or "[]"),
                                  primary_metric=fs.attrs.get("primary_metric") or "accuracy")


def evaluate_store(fs: FeatureSet, test_fold: int, *, estimator=None, per_window: bool = False,
                   system: str | None = None):
    """The fold protocol of ``deepfeat svm`` on a feature set in memory (nothing written).

    ``estimator`` defaults to ``TunedSVM(n_jobs=1)``; returns the
    :class:`~deepfeat.protocol.FoldResult`."""
    from .protocol import evaluate_fold

    estimator = TunedSVM(n_jobs=1) if estimator is None else estimator
    return evaluate_fold(estimator, store_data(fs, per_window), test_fold,
                         system=system or system_name(fs, per_window=per_window))


def default_jobs() -> int:
    """Parallel fits: the CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def svm_estimator(kind: str = "svc", *, c_grid=DEFAULT_C_GRID, class_weight: str | None = None,
                  select_metric: str = "accuracy", n_jobs: int | None = None):
    """The estimator of ``deepfeat svm --svm KIND``: :class:`TunedSVM` (``svc``, ``linearsvc``) or
    :class:`~deepfeat.sgd.StreamingSVM` (``sgd``)."""
    if kind == "sgd":
        from .sgd import StreamingSVM

        return StreamingSVM(Cs=c_grid, class_weight=class_weight, select_metric=select_metric, n_jobs=n_jobs)
    if kind not in SVM_KINDS:
        raise ConfigError(f"unknown SVM kind {kind!r}; choose one of {', '.join(STAGE_KINDS)}")
    return TunedSVM(Cs=c_grid, kind=kind, class_weight=class_weight, select_metric=select_metric, n_jobs=n_jobs)


def run_svm(store: str | Path, *, fold: int | str = 5, cv: bool = False, run_dir: str | Path | None = None,
            kind: str = "svc", class_weight: str | None = None, c_grid=DEFAULT_C_GRID, per_window: bool = False,
            select_metric: str | None = None, n_jobs: int | None = None, overwrite: bool = False) -> dict:
    """``deepfeat svm``: read ``store``, run the fold protocol with a :class:`TunedSVM` on test fold
    ``fold`` (or every fold in turn when ``cv``), write the run folder(s) and return the metrics.

    Parameters
    ----------
    store : str or Path
        A feature store written by ``deepfeat extract``.
    fold : int or "evaluation"
        Test fold (or the dataset's evaluation partition); the other folds, evaluation partitions
        excepted, form the development set.
    cv : bool
        Every fold as test in turn: runs in ``RUN_DIR/fold-<k>/``, mean ± std in ``RUN_DIR/cv_metrics.json``.
    run_dir : str or Path, optional
        Default ``results/<dataset>/<system>``.
    kind : {"svc", "linearsvc", "sgd"}
        :func:`svm_estimator`; ``sgd`` reads the store in blocks (stores larger than memory).
    class_weight, c_grid, select_metric
        :class:`TunedSVM` (or :class:`~deepfeat.sgd.StreamingSVM`) parameters; ``select_metric``
        None: the dataset's primary metric (the store's ``primary_metric``: macro-F1 for DCASE
        2018, accuracy elsewhere).
    per_window : bool
        Windowed stores: score each window, not each clip.
    n_jobs : int, optional
        Parallel fits (default :func:`default_jobs`).
    overwrite : bool
        Replace a run of another store or other settings in ``run_dir`` (otherwise refused).

    Returns
    -------
    dict
        The metrics written to ``metrics.json`` (or ``cv_metrics.json``), plus ``run_dir``.
    """
    from .weights import file_sha256

    t0 = time.perf_counter()
    fs = read_store(store, lazy=kind == "sgd")
    if kind == "svc" and fs.features.shape[0] > MAX_KERNEL_ROWS:
        raise ConfigError(f"{store}: {fs.features.shape[0]} rows are too many for --svm svc (its kernel matrix grows "
                          f"with rows squared; limit {MAX_KERNEL_ROWS}); use --svm linearsvc, or --svm sgd for "
                          "stores larger than memory")
    data = store_data(fs, per_window)
    select_metric = select_metric or data.primary_metric
    provenance = {"store": str(Path(store).resolve()), "store_sha256": file_sha256(store),
                  **{key: fs.attrs.get(key) for key in ("dataset", "network", "layer", "weights")},
                  "svm": kind, "class_weight": class_weight, "select_metric": select_metric,
                  "n_features": int(fs.features.shape[1]),
                  "pooling": "mean decision score over a clip's windows" if fs.windowed and not per_window else None,
                  "read_seconds": time.perf_counter() - t0}
    system = system_name(fs, per_window=per_window)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(str(fs.attrs.get("dataset") or ""), system)
    estimator = svm_estimator(kind, c_grid=c_grid, class_weight=class_weight, select_metric=select_metric,
                              n_jobs=default_jobs() if n_jobs is None else n_jobs)
    metrics = run(estimator, data, run_dir, system=system, fold=fold, cv=cv, provenance=provenance,
                  score_config={"unit": data.units.kind, "store": provenance["store"],
                                "store_sha256": provenance["store_sha256"], "store_config": fs.config},
                  inputs={"store_content_sha256": content_sha256(fs.features, fs.ids.astype(str), fs.labels, fs.folds,
                                                                 fs.window_starts, fs.config)},
                  overwrite=overwrite)
    return {"system": system, **metrics, "run_dir": metrics.get("run_dir", str(run_dir))}
