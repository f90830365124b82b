"""A label CSV: a header line naming ``file`` and ``label`` (and optionally ``fold``), one row per clip.

Parsed strictly (:mod:`deepfeat.datasets.tables`): every row has exactly the header's fields, no
quoted field spans lines, ``file`` is never empty, a ``fold`` column holds integers >= 1 in every
row, and no clip is listed twice; each problem is a one-line error naming ``FILE.csv:LINE``. An
empty ``label`` cell marks an unlabelled clip. Other columns are allowed and ignored.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ManifestError
from .manifest import Clip, Manifest, check_clips, stem_id
from .registry import register_dataset
from .tables import parse_fold, read_csv_rows

#: CSV stems that say nothing about the dataset: such a CSV's dataset is named after its folder.
GENERIC_STEMS = frozenset({"labels", "label", "meta", "metadata", "train", "test", "dev", "development", "eval",
                           "evaluation", "data", "dataset", "annotations", "annotation", "list", "files", "index",
                           "manifest", "all", "clips"})


def dataset_name(path: Path) -> str:
    """The CSV's stem, or its folder's name when the stem is generic (``labels.csv``, ``meta.csv`` …)."""
    if path.stem.lower() in GENERIC_STEMS:
        return path.resolve().parent.name or path.stem
    return path.stem


def _detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


@register_dataset("label_csv", detect=_detect, priority=0, options=("audio_root",),
                  layout="a CSV with a header `file,label[,fold]` (paths relative to the CSV, or `--labels DIR`)",
                  protocol="the CSV's folds (integers >= 1); without a fold column: extraction only; accuracy")
def read_label_csv(path: Path, audio_root: Path | None = None) -> Manifest:
    """Clips of a label CSV; files relative to ``audio_root`` (default: the CSV's folder)."""
    base = audio_root or path.parent
    clips, first_line = [], {}
    for line, row in read_csv_rows(path, ["file", "label"]):
        rel = row["file"]
        if not rel.strip():
            raise ManifestError(f"{path}:{line}: empty file name; every row needs the audio file's path")
        fold = parse_fold(row["fold"], path, line) if "fold" in row else 0
        clip = Clip(stem_id(Path(rel).as_posix()), base / rel, row["label"] or None, fold)
        if clip.id in first_line:
            raise ManifestError(f"{path}:{line}: clip {clip.id!r} is listed again (first on line "
                                f"{first_line[clip.id]}); list every clip once")
        first_line[clip.id] = line
        clips.append(clip)
    check_clips(clips, path)
    return Manifest(dataset_name(path), base, tuple(clips))
