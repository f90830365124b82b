"""GTZAN (Tzanetakis & Cook 2002): 10 genres x 100 clips of 30 s, ``genres/<genre>/<genre>.000NN.au``
(the original archive) or ``genres_original/<genre>/<genre>.000NN.wav`` (the common re-packaging).

GTZAN has no official folds. deepfeat assigns ``n_folds`` (default 5) stratified folds,
deterministically: within each genre, the files sorted by name are cut into ``n_folds`` contiguous
blocks of equal size (files 0-19 → fold 1, …, 80-99 → fold 5), so ``--fold 5`` holds out 20 %
of every genre and folds 1-4 tune. Contiguous blocks rather than a shuffle because consecutive
GTZAN excerpts often come from the same artist or recording (Sturm 2013): blocks keep more of them
on one side of the split. ``--folds 10`` gives the 10-fold assignment (10 clips per genre per fold).
Checked against the archive's layout (``genres/blues/blues.00000.au`` … ``genres/rock/rock.00099.au``).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, ManifestError
from .manifest import Clip, Manifest, audio_files, check_clips
from .registry import register_dataset

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
FOLDER_NAMES = ("genres", "genres_original")
DEFAULT_FOLDS = 5


def genre_root(path: Path) -> Path | None:
    """The folder of genre folders: ``path`` itself (named genres / genres_original) or its sub-folder."""
    for candidate in [path] + [path / name for name in FOLDER_NAMES]:
        if candidate.name in FOLDER_NAMES and candidate.is_dir() and \
                sum((candidate / g).is_dir() for g in GENRES) >= 2:
            return candidate
    return None


def _detect(path: Path) -> bool:
    return path.is_dir() and genre_root(path) is not None


def assign_folds(n_files: int, n_folds: int) -> list[int]:
    """Folds 1..n_folds of ``n_files`` sorted files: contiguous blocks, sizes differing by at most one."""
    return [i * n_folds // n_files + 1 for i in range(n_files)]


def _demo(out: Path, clips_per_class: int = 10, duration: float = 2.0, sample_rate: int = 22050,
          seed: int = 0) -> Path:
    from ..demo import demo_clip, write_clip

    for target, genre in enumerate(GENRES[:5]):
        for k in range(clips_per_class):
            write_clip(Path(out) / "genres_original" / genre / f"{genre}.{k:05d}.wav",
                       demo_clip(target, k, duration, sample_rate, seed), sample_rate)
    return Path(out)


@register_dataset("gtzan", detect=_detect, priority=30, options=("n_folds",), demo=_demo,
                  layout="`genres/<genre>/*.au` or `genres_original/<genre>/*.wav` (or a folder holding one)",
                  protocol="5 stratified folds, contiguous blocks in file order per genre (`--fold 5`: 20 % "
                           "per genre held out), or `--folds 10`; accuracy")
def read_gtzan(path: Path, n_folds: int = DEFAULT_FOLDS) -> Manifest:
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ConfigError(f"GTZAN needs at least 2 folds, got {n_folds!r}")
    root = genre_root(path)
    clips = []
    for genre in sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        files = audio_files(root / genre)
        if len(files) < n_folds:
            raise ManifestError(f"{root / genre}: {len(files)} clip(s), fewer than the {n_folds} folds; "
                                "pass a smaller --folds")
        clips += [Clip(p.stem, p, genre, fold) for p, fold in zip(files, assign_folds(len(files), n_folds))]
    check_clips(clips, root)
    return Manifest(path.name, path, tuple(clips))
