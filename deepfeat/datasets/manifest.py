"""What every dataset reader returns: a :class:`Manifest` of :class:`Clip` rows.

A row is one clip, or one channel of a clip (``load_manifest(..., channels="each")``): rows of
one clip share its id, so extraction gives one feature row per channel and the fold protocol
pools their scores per clip (:func:`deepfeat.protocol.make_units`), as the DCASE 2018 task 5
baseline averaged its channels. Fold 0 means "no fold assigned"; label ``None`` "unlabelled".
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ManifestError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus", ".m4a"}
#: The selection/report metric names a dataset may declare as its primary metric.
METRICS = ("accuracy", "macro_f1", "uar")


@dataclass(frozen=True)
class Clip:
    id: str  #: clip id (file stem, or relative path for nested layouts); shared by a clip's channel rows
    path: Path
    label: str | None
    fold: int = 0
    channel: int | None = None  #: the channel this row reads (0-based); None: all channels mixed to mono


@dataclass(frozen=True)
class Manifest:
    """An ordered list of clip rows and what the dataset declares about its protocol.

    ``layout`` names the reader that made it; ``primary_metric`` is the metric the dataset's
    results are reported (and, by default, tuned) by; ``evaluation_folds`` are folds that form a
    separate evaluation partition: they are only ever test folds, never development folds.
    """

    name: str
    root: Path
    clips: tuple[Clip, ...]
    layout: str = ""
    primary_metric: str = "accuracy"
    evaluation_folds: tuple[int, ...] = ()

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
        """The clip id of every row (repeated for the channel rows of one clip)."""
        return [c.id for c in self.clips]

    def channels(self) -> np.ndarray | None:
        """The channel of every row, int64 [N]; None when every row mixes its channels."""
        if all(c.channel is None for c in self.clips):
            return None
        return np.array([-1 if c.channel is None else c.channel for c in self.clips], dtype=np.int64)

    @property
    def n_clips(self) -> int:
        """Distinct clips (rows of one clip's channels count once)."""
        return len({c.id for c in self.clips})

    def fingerprint(self) -> str:
        """sha256 over ids, labels, folds (and channels): identifies the dataset a store was made from."""
        h = hashlib.sha256()
        for c in self.clips:
            channel = "" if c.channel is None else f"\t{c.channel}"
            h.update(f"{c.id}\t{c.label}\t{c.fold}{channel}\n".encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.clips)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL byte, names no file
        return False


def check_clips(clips: list[Clip], source: Path) -> None:
    """Raise :class:`ManifestError` naming ``source`` when clips name missing audio, a clip row
    repeats, or there is no clip at all."""
    if not clips:
        raise ManifestError(f"{source}: no audio clips found; point at a dataset folder or label CSV")
    missing = [c.path for c in clips if not _is_file(c.path)]
    if missing:
        shown = ", ".join(repr(str(p)) for p in missing[:3])
        raise ManifestError(
            f"{source}: names {len(missing)} missing audio file(s) ({shown}{', ...' if len(missing) > 3 else ''}); "
            "fix the label file or put the audio where it points"
        )
    seen: set[tuple[str, int | None]] = set()
    for c in clips:
        if (c.id, c.channel) in seen:
            raise ManifestError(f"{source}: clip id {c.id!r} appears more than once; clip ids must be unique")
        seen.add((c.id, c.channel))


def audio_files(folder: Path) -> list[Path]:
    """The audio files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def stem_id(relative: str) -> str:
    """A clip id from a relative path: the path without its last suffix (``a/b.wav`` → ``a/b``)."""
    suffix = Path(relative).suffix
    return relative[: len(relative) - len(suffix)] if suffix else relative
