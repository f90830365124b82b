"""Dataset manifests: one list of clips (id, path, label, fold) from any supported layout.

Layouts read by :func:`load_manifest` (auto-detected from the path):

* ESC-50: ``audio/`` + ``meta/esc50.csv`` (works unchanged on ESC-10 subsets);
* UrbanSound8K: ``audio/foldN/`` + ``metadata/UrbanSound8K.csv``;
* a label CSV with columns ``file,label[,fold]`` (paths relative to the CSV's folder);
* a folder per class (DeepSpectrum's convention): ``ROOT/<label>/<clip>.wav``;
* a flat folder of audio: unlabelled clips.

Fold 0 means "no fold assigned"; label -1 means "unlabelled".
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ManifestError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus", ".m4a"}


@dataclass(frozen=True)
class Clip:
    id: str  #: unique clip id (file stem, or relative path for nested layouts)
    path: Path
    label: str | None
    fold: int = 0


@dataclass(frozen=True)
class Manifest:
    """An ordered list of clips and the sorted label vocabulary."""

    name: str
    root: Path
    clips: tuple[Clip, ...]

    @property
    def label_names(self) -> list[str]:
        return sorted({c.label for c in self.clips if c.label is not None})

    def label_indices(self) -> np.ndarray:
        """Labels as indices into :attr:`label_names` (-1 for unlabelled clips)."""
        lookup = {name: i for i, name in enumerate(self.label_names)}
        return np.array([lookup.get(c.label, -1) for c in self.clips], dtype=np.int64)

    def folds(self) -> np.ndarray:
        return np.array([c.fold for c in self.clips], dtype=np.int64)

    def ids(self) -> list[str]:
        return [c.id for c in self.clips]

    def fingerprint(self) -> str:
        """sha256 over ids, labels and folds: identifies the dataset a store was made from."""
        h = hashlib.sha256()
        for c in self.clips:
            h.update(f"{c.id}\t{c.label}\t{c.fold}\n".encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.clips)


def _check_exists(clips: list[Clip], source: Path) -> None:
    missing = [c.path for c in clips if not c.path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise ManifestError(
            f"{source}: names {len(missing)} missing audio file(s) ({shown}{', ...' if len(missing) > 3 else ''}); "
            "fix the label file or put the audio where it points"
        )
    ids = [c.id for c in clips]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ManifestError(f"{source}: clip id {dup!r} appears more than once; clip ids must be unique")
    if not clips:
        raise ManifestError(f"{source}: no audio clips found; point at a dataset folder or label CSV")


def _read_csv(path: Path, required: list[str]) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"{path}: cannot read label file ({e}); it must be a UTF-8 CSV with a header") from None
    header = rows[0].keys() if rows else []
    absent = [c for c in required if c not in header]
    if absent:
        raise ManifestError(
            f"{path}: missing column(s) {', '.join(absent)} (found: {', '.join(header) or 'none'}); "
            f"the label file needs a header with {', '.join(required)}"
        )
    return rows


def _int(value: str, path: Path, column: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{path}: column {column!r} holds {value!r}, not an integer fold number") from None


def read_esc50(root: Path) -> Manifest:
    meta = root / "meta" / "esc50.csv"
    rows = _read_csv(meta, ["filename", "fold", "category"])
    clips = [Clip(Path(r["filename"]).stem, root / "audio" / r["filename"], r["category"], _int(r["fold"], meta, "fold"))
             for r in rows]
    _check_exists(clips, meta)
    return Manifest(root.name, root, tuple(clips))


def read_urbansound8k(root: Path) -> Manifest:
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = _read_csv(meta, ["slice_file_name", "fold", "class"])
    clips = []
    for r in rows:
        fold = _int(r["fold"], meta, "fold")
        clips.append(Clip(Path(r["slice_file_name"]).stem, root / "audio" / f"fold{fold}" / r["slice_file_name"],
                          r["class"], fold))
    _check_exists(clips, meta)
    return Manifest(root.name, root, tuple(clips))


def read_label_csv(path: Path, audio_root: Path | None = None) -> Manifest:
    """CSV with ``file,label[,fold]``; files relative to ``audio_root`` (default: the CSV's folder)."""
    rows = _read_csv(path, ["file", "label"])
    base = audio_root or path.parent
    clips = []
    for r in rows:
        rel = Path(r["file"])
        fold = _int(r["fold"], path, "fold") if r.get("fold") not in (None, "") else 0
        clips.append(Clip(rel.with_suffix("").as_posix(), base / rel, r["label"] or None, fold))
    _check_exists(clips, path)
    return Manifest(path.stem, base, tuple(clips))


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def read_class_folders(root: Path) -> Manifest:
    """One sub-folder per class; a flat folder of audio gives unlabelled clips."""
    flat = _audio_files(root)
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    clips = [Clip(p.stem, p, None) for p in flat]
    for d in classes:
        clips += [Clip(f"{d.name}/{p.stem}", p, d.name) for p in _audio_files(d)]
    _check_exists(clips, root)
    return Manifest(root.name, root, tuple(clips))


def load_manifest(path: str | Path, audio_root: str | Path | None = None) -> Manifest:
    """Read a dataset from a folder (ESC-50, UrbanSound8K, class folders, flat) or a label CSV."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such dataset folder or label file")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ManifestError(f"{path}: a dataset is a folder or a label CSV (file,label[,fold]), not {path.suffix}")
        return read_label_csv(path, Path(audio_root) if audio_root else None)
    if (path / "meta" / "esc50.csv").is_file():
        return read_esc50(path)
    if (path / "metadata" / "UrbanSound8K.csv").is_file():
        return read_urbansound8k(path)
    return read_class_folders(path)
