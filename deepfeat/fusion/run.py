"""``deepfeat fuse``: align the scores files of several systems and fuse them under the fold
protocol (:mod:`deepfeat.protocol`).

Inputs are scores files (:mod:`deepfeat.scores`) of one dataset and test fold: development rows
hold out-of-fold scores, test rows the scores of each system's model refitted on all development
folds. They are aligned by clip id and concatenated system by system into one matrix
``X [N, S * C]``, the input of the fusion estimators (:mod:`deepfeat.fusion.estimators`).

Every statistic (standardisation, SVM, C) is fitted on development rows only; test-fold scores
and labels are used for nothing but the final prediction and its evaluation. The fused
development scores are out-of-fold too (the protocol refits the fusion without each
development fold), so fusions can be fused again.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ConfigError, StoreError
from ..io import content_sha256
from ..scores import Scores, read_scores
from .estimators import fusion_params, make_fusion

log = logging.getLogger("deepfeat.fusion")


def _describe_ids(missing: set, extra: set) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {sorted(missing)[0]!r}")
    if extra:
        parts.append(f"{len(extra)} extra, e.g. {sorted(extra)[0]!r}")
    return "; ".join(parts)


def align_scores(scores: list[Scores], paths: list[str | Path] | None = None) -> list[Scores]:
    """Reorder every :class:`Scores` to the clip order of the first and check they describe the
    same clips: ids, folds, labels, label names and test fold must agree, else :class:`StoreError`
    naming both files."""
    if not scores:
        raise ConfigError("no scores files to fuse; pass scores.h5 files or --group with a results folder")
    names = [str(p) for p in paths] if paths is not None else [s.system for s in scores]
    ref, ref_name = scores[0], names[0]
    ref_ids = [str(i) for i in ref.ids]
    if len(set(ref_ids)) != len(ref_ids):
        raise StoreError(f"{ref_name}: clip ids are not unique; rewrite it with `deepfeat svm` or `deepfeat crnn`")
    aligned = [ref]
    for s, name in zip(scores[1:], names[1:]):
        ids = [str(i) for i in s.ids]
        where = {clip: row for row, clip in enumerate(ids)}
        if len(where) != len(ids):
            raise StoreError(f"{name}: clip ids are not unique; rewrite it with `deepfeat svm` or `deepfeat crnn`")
        if set(where) != set(ref_ids):
            difference = _describe_ids(set(ref_ids) - set(where), set(where) - set(ref_ids))
            raise StoreError(f"{name}: clip ids differ from {ref_name} ({difference}); "
                             "fuse scores of the same dataset and clips")
        if list(s.label_names) != list(ref.label_names):
            raise StoreError(f"{name}: class names differ from {ref_name}; fuse scores of the same dataset")
        if s.test_fold != ref.test_fold:
            raise StoreError(f"{name}: test fold {s.test_fold} differs from {ref_name} (test fold {ref.test_fold}); "
                             "fuse scores made with the same --fold")
        order = np.array([where[clip] for clip in ref_ids], dtype=np.int64)
        for field_name in ("folds", "labels"):
            if not np.array_equal(getattr(s, field_name)[order], getattr(ref, field_name)):
                raise StoreError(f"{name}: clip {field_name} differ from {ref_name}; fuse scores of the same "
                                 "dataset manifest")
        aligned.append(Scores(system=s.system, ids=ref.ids, folds=ref.folds, labels=ref.labels,
                              label_names=list(ref.label_names), scores=s.scores[order], test_fold=s.test_fold,
                              score_kind=s.score_kind, config=s.config))
    systems = [s.system for s in aligned]
    dup = next((name for name in systems if systems.count(name) > 1), None)
    if dup is not None:
        files = ", ".join(n for n, s in zip(names, systems) if s == dup)
        raise ConfigError(f"system {dup!r} is given twice ({files}); fuse each system once")
    return aligned


def read_aligned(paths: list[str | Path]) -> list[Scores]:
    """Read scores files and :func:`align_scores` them."""
    return align_scores([read_scores(p) for p in paths], list(paths))


def stack_scores(scores: list[Scores]) -> np.ndarray:
    """Aligned scores → ``X [N, S * C]`` float64, system-major column blocks."""
    return np.concatenate([s.scores.astype(np.float64) for s in scores], axis=1)


def dataset_name(scores: Scores) -> str | None:
    """The dataset a scores file was made from, as its config records it (svm: the store's
    ``dataset.name``; crnn and fuse: ``dataset``)."""

    def find(config):
        if isinstance(config, dict):
            value = config.get("dataset")
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("name"), str):
                return value["name"]
            for sub in config.values():
                found = find(sub)
                if found:
                    return found
        return None

    return find(scores.config)


def fused_system_name(method: str, systems: list[str], group: str | None = None) -> str:
    """``fusion-<group>-<method>`` for a named group, else ``fusion-<method>-<systems joined by +>``
    (``svm-`` prefixes dropped; a short hash when that is longer than 80 characters)."""
    if group:
        return f"fusion-{group}-{method}"
    joined = "+".join(sorted(s.removeprefix("svm-") for s in systems))
    if len(joined) > 80:
        import hashlib

        joined = f"{len(systems)}systems-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"
    return f"fusion-{method}-{joined}"


def fusion_config(paths: list[str | Path], systems: list[str], method: str, params: dict | None = None,
                  group: str | None = None) -> dict:
    """What identifies a fusion run: method, its parameters, group and each input's system and
    file checksum (a re-run of an input system changes it). Stored in the fused scores and in
    ``metrics.json["fusion"]``; the experiment driver compares it to skip finished runs."""
    from ..weights import file_sha256

    return {"method": method, "params": fusion_params(method, params), "group": group,
            "inputs": [{"system": s, "path": str(Path(p).resolve()), "sha256": file_sha256(p)}
                       for p, s in zip(paths, systems)]}


def fusion_data(inputs: list[Scores]):
    """Aligned scores as :class:`~deepfeat.protocol.ProtocolData` (one row and unit per clip)."""
    from ..protocol import ProtocolData

    ref = inputs[0]
    n_classes = len(ref.label_names)
    X, y = stack_scores(inputs), ref.labels
    if (y < 0).any() or (y >= n_classes).any():
        raise StoreError(f"{ref.system}: {int(((y < 0) | (y >= n_classes)).sum())} clips have no valid label; "
                         "fusion is trained and scored on labelled clips")
    if not np.all(np.isfinite(X)):
        bad = [s.system for s in inputs if not np.all(np.isfinite(s.scores))]
        raise StoreError(f"{', '.join(bad)}: scores hold NaN/inf; re-run those systems")
    return ProtocolData.from_rows(X, y, ref.folds, ref.label_names, ids=ref.ids, source=ref.system,
                                  evaluation_folds=ref.evaluation_folds, primary_metric=ref.primary_metric)


def evaluate_fusion(inputs: list[Scores], method: str = "stacking", *, params: dict | None = None,
                    system: str | None = None):
    """Fuse aligned scores (:func:`align_scores`) on their test fold with the fold protocol;
    returns its :class:`~deepfeat.protocol.FoldResult`."""
    from ..protocol import evaluate_fold

    data = fusion_data(inputs)
    estimator = make_fusion(method, classes=list(inputs[0].label_names), **dict(params or {}))
    systems = [s.system for s in inputs]
    return evaluate_fold(estimator, data, inputs[0].test_fold, system=system or fused_system_name(method, systems))


def fusion_params_for(method: str, params: dict | None, primary_metric: str) -> dict:
    """``params`` with the selection metric of a tuning ``method`` (stacking) filled in: the
    dataset's ``primary_metric`` where none is given."""
    params = dict(params or {})
    if "select_metric" in make_fusion(method).get_params() and params.get("select_metric") is None:
        params["select_metric"] = primary_metric
    return params


def run_fusion(paths: list[str | Path], *, method: str = "stacking", fold: int | str | None = 5,
               run_dir: str | Path | None = None, group: str | None = None, results_dir: str | Path | None = None,
               system: str | None = None, params: dict | None = None, overwrite: bool = False) -> dict:
    """``deepfeat fuse``: read and align the scores files, fuse them with ``method`` under the fold
    protocol, write the run folder and return its metrics.

    Parameters
    ----------
    paths : list of path
        Scores files of one dataset and test fold.
    method : str
        A key of :data:`~deepfeat.fusion.estimators.METHODS`.
    fold : int or "evaluation", optional
        The test fold the inputs must have (None: theirs).
    run_dir : path, optional
        Default ``RESULTS_DIR/<system>`` when ``results_dir`` is given (``--group``), else
        ``results/<dataset>/<system>``.
    group : str, optional
        The fusion group the inputs were chosen by (named in the system and the config).
    params : dict, optional
        Parameters of the fusion estimator; a stacking fusion without ``select_metric`` tunes for
        the dataset's primary metric (recorded in the scores files).
    overwrite : bool
        Replace a run of other inputs or settings in ``run_dir`` (otherwise refused).
    """
    from ..evaluation import default_run_dir
    from ..protocol import resolve_test_fold, run

    paths = [Path(p) for p in paths]
    inputs = read_aligned(paths)
    if fold is not None:
        fold = resolve_test_fold(fold, inputs[0].evaluation_folds, str(paths[0]))
    if fold is not None and inputs[0].test_fold != fold:
        raise ConfigError(f"{paths[0]}: holds scores for test fold {inputs[0].test_fold}, not --fold {fold}; "
                          f"pass --fold {inputs[0].test_fold} or fuse runs made with --fold {fold}")
    systems = [s.system for s in inputs]
    if len(inputs) < 2:
        log.warning("fusing a single system (%s): the fusion only re-learns its scores", systems[0])
    params = fusion_params_for(method, params, inputs[0].primary_metric)
    system = system or fused_system_name(method, systems, group)
    config = fusion_config(paths, systems, method, params, group)
    dataset = dataset_name(inputs[0])
    if run_dir is None:
        run_dir = Path(results_dir) / system if results_dir is not None else default_run_dir(dataset or "", system)
    estimator = make_fusion(method, classes=list(inputs[0].label_names), **params)
    provenance = {"dataset": dataset, "systems": systems, "method": method, "fusion": config,
                  "select_metric": params.get("select_metric"),
                  "n_features": len(systems) * len(inputs[0].label_names)}
    identity = {"scores": [{"system": s.system, "content_sha256": content_sha256(
        s.ids.astype(str), s.folds, s.labels, s.scores, s.label_names, s.test_fold, s.score_kind)} for s in inputs],
        "group": group}
    return run(estimator, fusion_data(inputs), run_dir, system=system, fold=inputs[0].test_fold,
               provenance=provenance, score_config={"fusion": config, "dataset": dataset}, inputs=identity,
               overwrite=overwrite)
