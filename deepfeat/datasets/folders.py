"""A folder per class (DeepSpectrum's convention), ``ROOT/<label>/<clip>.wav``, or a flat folder of
unlabelled audio. Clip ids are ``<label>/<stem>`` (a flat folder: ``<stem>``); no folds."""
from __future__ import annotations

from pathlib import Path

from .manifest import Clip, Manifest, audio_files, check_clips
from .registry import register_dataset


def _detect(path: Path) -> bool:
    return path.is_dir()


@register_dataset("folders", detect=_detect, priority=100,
                  layout="`ROOT/<label>/*.wav` (a folder per class), or a flat folder of audio (unlabelled)",
                  protocol="no folds: extraction and plots (use a label CSV with a fold column to classify)")
def read_class_folders(root: Path) -> Manifest:
    """One sub-folder per class; a flat folder of audio gives unlabelled clips."""
    clips = [Clip(p.stem, p, None) for p in audio_files(root)]
    for d in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        clips += [Clip(f"{d.name}/{p.stem}", p, d.name) for p in audio_files(d)]
    check_clips(clips, root)
    return Manifest(root.name, root, tuple(clips))
