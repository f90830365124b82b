"""The layout DCASE acoustic-scene style tasks share (used by :mod:`.dcase2017` and :mod:`.dcase2018`).

Development set (a folder named ``<dev prefix>…``, or any folder whose ``meta.txt`` names files
like the task's)::

    meta.txt                          [audio file][tab][label][tab][session or recording id]
    audio/…wav
    evaluation_setup/foldK_train.txt  [audio file][tab][label][tab][session]
    evaluation_setup/foldK_test.txt   [audio file]
    evaluation_setup/foldK_evaluate.txt  [audio file][tab][label]

Every file of ``meta.txt`` is in the test list of exactly one fold K (``foldK_evaluate.txt``, else
``foldK_test.txt``): that is its fold. Evaluation set (a folder named ``<eval prefix>…``): labels
from ``meta.txt``, else ``evaluation_setup/evaluate.txt`` / ``evaluation.txt``, else the clips of
``evaluation_setup/test.txt`` unlabelled. A folder holding one development and one evaluation set
reads as both: the evaluation clips form fold ``n_folds + 1``, an evaluation partition that is
only ever a test fold. A header line (a first line whose first field is no audio file) is skipped.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError
from .manifest import Clip, Manifest, check_clips
from .tables import read_tsv

_LABELLED = "[audio file][tab][label][tab][session]"


@dataclass(frozen=True)
class DcaseTask:
    """One DCASE task's names, folds and primary metric; reads and writes its layout."""

    name: str
    dev_prefix: str  #: official development folder name (matched case-insensitively as a prefix)
    eval_prefix: str  #: official evaluation folder name
    dev_file: str  #: regular expression of development audio file stems
    n_folds: int = 4
    primary_metric: str = "accuracy"

    @property
    def evaluation_fold(self) -> int:
        return self.n_folds + 1

    @property
    def protocol(self) -> str:
        """The task's protocol in one line (for the registry)."""
        metric = {"macro_f1": "macro-F1 (also the default `--select-metric`)"}.get(self.primary_metric,
                                                                                  self.primary_metric)
        return (f"{self.n_folds} official development folds; the evaluation set is fold {self.evaluation_fold} "
                f"(`--fold evaluation`), never a development fold; {metric}")

    # --- recognising the layout ------------------------------------------------------------------
    def is_dev(self, path: Path) -> bool:
        if not (path / "meta.txt").is_file() or not any((path / "evaluation_setup").glob("fold1_*.txt")):
            return False
        if path.name.lower().startswith(self.dev_prefix.lower()):
            return True
        rows = read_tsv(path / "meta.txt", 1, 9, _LABELLED)
        return bool(rows) and re.fullmatch(self.dev_file, Path(rows[0][1][0]).stem) is not None

    def is_eval(self, path: Path) -> bool:
        return path.name.lower().startswith(self.eval_prefix.lower()) and (
            (path / "meta.txt").is_file() or (path / "evaluation_setup" / "test.txt").is_file())

    def parts(self, path: Path) -> tuple[Path | None, Path | None]:
        """(development set, evaluation set) at ``path``: itself, or its sub-folders."""
        if not path.is_dir():
            return None, None
        if self.is_dev(path):
            return path, None
        if self.is_eval(path):
            return None, path
        children = sorted(p for p in path.iterdir() if p.is_dir())
        devs, evals = [c for c in children if self.is_dev(c)], [c for c in children if self.is_eval(c)]
        if len(devs) > 1 or len(evals) > 1:
            raise ManifestError(f"{path}: holds {len(devs)} development and {len(evals)} evaluation sets of "
                                f"{self.name}; point at one set, or a folder with one of each")
        return (devs[0] if devs else None), (evals[0] if evals else None)

    def detect(self, path: Path) -> bool:
        return any(self.parts(path))

    # --- reading -----------------------------------------------------------------------------------
    def read(self, path: Path) -> Manifest:
        dev, evaluation = self.parts(path)
        clips = (read_development(dev) if dev else []) + \
            (read_evaluation(evaluation, self.evaluation_fold) if evaluation else [])
        check_clips(clips, path)
        return Manifest(path.name, path, tuple(clips), primary_metric=self.primary_metric,
                        evaluation_folds=(self.evaluation_fold,) if evaluation else ())


def _key(relative: str) -> str:
    return Path(relative).as_posix()


def _fold_lists(root: Path) -> dict[int, Path]:
    """Fold → its test list (``foldK_evaluate.txt``, else ``foldK_test.txt``), folds 1, 2, … in a row."""
    lists, k = {}, 1
    while True:
        setup = root / "evaluation_setup"
        found = next((p for p in (setup / f"fold{k}_evaluate.txt", setup / f"fold{k}_test.txt") if p.is_file()), None)
        if found is None:
            return lists
        lists[k], k = found, k + 1


def read_development(root: Path) -> list[Clip]:
    """Clips of a development set: labels from ``meta.txt``, folds from its fold test lists."""
    meta = root / "meta.txt"
    labels = {}
    for line, fields in read_tsv(meta, 2, 3, _LABELLED):
        if _key(fields[0]) in labels:
            raise ManifestError(f"{meta}:{line}: {fields[0]!r} is listed twice; list every file once")
        labels[_key(fields[0])] = fields[1]
    folds: dict[str, int] = {}
    for k, listing in _fold_lists(root).items():
        for line, fields in read_tsv(listing, 1, 3, "[audio file][tab][label]"):
            file = _key(fields[0])
            if file not in labels:
                raise ManifestError(f"{listing}:{line}: {fields[0]!r} is not in {meta.name}; use the set's own lists")
            if file in folds:
                raise ManifestError(f"{listing}:{line}: {fields[0]!r} is also a test file of fold {folds[file]}; "
                                    "each file must be in one fold's test list")
            if len(fields) > 1 and fields[1] and fields[1] != labels[file]:
                raise ManifestError(f"{listing}:{line}: label {fields[1]!r} differs from {meta.name} "
                                    f"({labels[file]!r}); restore the set's original lists")
            folds[file] = k
    unassigned = [f for f in labels if f not in folds]
    if unassigned:
        raise ManifestError(f"{root / 'evaluation_setup'}: {len(unassigned)} file(s) of {meta.name} are in no fold's "
                            f"test list (first: {unassigned[0]!r}); restore the set's foldK_test.txt files")
    return [Clip(Path(f).stem, root / f, label, folds[f]) for f, label in labels.items()]


def read_evaluation(root: Path, fold: int) -> list[Clip]:
    """Clips of an evaluation set, all in ``fold``; unlabelled when only ``test.txt`` exists."""
    setup = root / "evaluation_setup"
    for listing, labelled in ((root / "meta.txt", True), (setup / "evaluate.txt", True),
                              (setup / "evaluation.txt", True), (setup / "test.txt", False)):
        if listing.is_file():
            rows = read_tsv(listing, 1, 3, _LABELLED)
            return [Clip(Path(f[0]).stem, root / f[0], (f[1] or None) if labelled and len(f) > 1 else None, fold)
                    for _, f in rows]
    raise ManifestError(f"{root}: no meta.txt or evaluation_setup/test.txt; restore the evaluation set's lists")


# --- tiny synthetic copies (deepfeat demo-data --layout ...) -------------------------------------
def write_task_demo(out: Path, task: DcaseTask, labels: tuple[str, ...], dev_name: Callable[[int, int], str],
                    eval_list: str, clips_per_class: int, duration: float, sample_rate: int, seed: int,
                    channels: int = 1) -> Path:
    """A development set (``clips_per_class`` clips per label spread over the folds) and an
    evaluation set (a third as many, named ``1.wav``, ``2.wav`` …) under ``out``; returns ``out``."""
    from ..demo import demo_clip, write_clip

    dev, evaluation = Path(out) / task.dev_prefix, Path(out) / task.eval_prefix
    meta, tests = [], {k: [] for k in range(1, task.n_folds + 1)}
    for target, label in enumerate(labels):
        for k in range(clips_per_class):
            rel = f"audio/{dev_name(target, k)}.wav"
            write_clip(dev / rel, demo_clip(target, k, duration, sample_rate, seed, channels), sample_rate)
            meta.append(f"{rel}\t{label}\t{rel.split('/')[1].split('_')[0]}")
            tests[k % task.n_folds + 1].append((rel, label))
    _write_lines(dev / "meta.txt", meta)
    for k, rows in tests.items():
        train = [m for m in meta if m.split("\t")[0] not in {r for r, _ in rows}]
        _write_lines(dev / "evaluation_setup" / f"fold{k}_train.txt", train)
        _write_lines(dev / "evaluation_setup" / f"fold{k}_test.txt", [r for r, _ in rows])
        _write_lines(dev / "evaluation_setup" / f"fold{k}_evaluate.txt", [f"{r}\t{label}" for r, label in rows])
    rows = []
    for target, label in enumerate(labels):
        for k in range(max(1, clips_per_class // 3)):
            rel = f"audio/{len(rows) + 1}.wav"
            write_clip(evaluation / rel, demo_clip(target, 1000 + k, duration, sample_rate, seed, channels),
                       sample_rate)
            rows.append((rel, label))
    _write_lines(evaluation / "meta.txt", [f"{r}\t{label}" for r, label in rows])
    _write_lines(evaluation / "evaluation_setup" / "test.txt", [r for r, _ in rows])
    _write_lines(evaluation / "evaluation_setup" / eval_list, [f"{r}\t{label}" for r, label in rows])
    return Path(out)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
