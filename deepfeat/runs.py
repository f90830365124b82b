"""Run folders are never overwritten silently: what a run is of (:func:`run_identity`), recorded
in the folder's ``run.json`` before the run starts, and who may write a folder
(:func:`claim_run_dir`): the same run again (to resume it, or to redo it) may; a run of other
inputs or settings only when asked to overwrite. :func:`deepfeat.protocol.run` calls both, so
every classifier stage (``svm``, ``crnn``, ``finetune``, ``fuse``) gets them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from .errors import StoreError
from .io import content_sha256, jsonable, write_json

log = logging.getLogger("deepfeat.runs")

#: Estimator parameters that change how a run computes, not what: left out of its identity.
EXECUTION_PARAMS = frozenset({"n_jobs", "device", "progress", "verbose"})
RUN_FILE = "run.json"  #: a run folder's identity (:func:`run_identity`)


def _plain(value):
    """``value`` with dataclasses as dicts and numpy values as Python ones (JSON-able)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return jsonable(value)


def run_identity(estimator, data, test_folds: list[int], inputs: dict | None = None) -> dict:
    """What a run is of: ``inputs`` (the stage's: checksums of its store, scores files or dataset
    manifest), the data's units, labels and folds (as a checksum), the estimator's class and
    parameters (less :data:`EXECUTION_PARAMS`) and the test folds; ``sha256`` digests them all.
    ``data`` is a :class:`~deepfeat.protocol.ProtocolData`."""
    units = data.units
    data_sha256 = content_sha256(np.asarray(units.ids).astype(str), units.labels, units.folds, data.label_names,
                                 list(data.evaluation_folds))
    params = {k: v for k, v in estimator.get_params(deep=False).items() if k not in EXECUTION_PARAMS}
    content = _plain({"inputs": inputs or {}, "data_sha256": data_sha256, "unit": units.kind,
                      "estimator": type(estimator).__name__, "params": params, "test_folds": list(test_folds)})
    text = json.dumps(content, sort_keys=True, default=repr)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), **json.loads(text)}


def _without_digest(identity: dict) -> dict:
    return {k: v for k, v in identity.items() if k != "sha256"}


def claim_run_dir(run_dir: str | Path, identity: dict, overwrite: bool = False) -> None:
    """Record ``identity`` (:func:`run_identity`) as ``run_dir/run.json``.

    Raises :class:`StoreError` when ``run_dir`` holds a run of another identity, unless
    ``overwrite`` (its ``checkpoints/`` folders are then removed, so nothing of it is resumed).
    A run folder from before identities were recorded is replaced with a logged warning.
    """
    from .store import describe_difference

    run_dir = Path(run_dir)
    held = [run_dir / name for name in ("metrics.json", "cv_metrics.json", "checkpoints")] + \
        list(run_dir.glob("fold-*/metrics.json")) + list(run_dir.glob("fold-*/checkpoints"))
    held = any(p.exists() for p in held)  # results or resumable state, not only a run.json
    try:
        old = json.loads((run_dir / RUN_FILE).read_text())
    except FileNotFoundError:
        old = None
        if held:
            log.warning("%s: replacing a run that recorded no identity of its inputs (an earlier deepfeat's)", run_dir)
    except (OSError, ValueError):
        old = {"sha256": "unreadable"}
    if held and old is not None and old.get("sha256") != identity["sha256"]:
        if not overwrite:
            difference = describe_difference(_without_digest(old), _without_digest(identity))
            raise StoreError(f"{run_dir}: holds a run of other inputs or settings ({difference}); pass --overwrite "
                             "to replace it, or write this run to another folder (-o)")
        for stale in [run_dir / "checkpoints", *run_dir.glob("fold-*/checkpoints")]:
            shutil.rmtree(stale, ignore_errors=True)
    write_json(run_dir / RUN_FILE, identity)
