"""ESC-50 (Piczak 2015) and its ESC-10 subset: ``audio/*.wav`` + ``meta/esc50.csv``.

Checked against the metadata file as the dataset ships it (its first lines, as other readers of
ESC-50 quote them): ``meta/esc50.csv`` has the header ``filename,fold,target,category,esc10,src_file,take``
(e.g. ``1-100032-A-0.wav,1,0,dog,True,100032,A``); clips are ``{fold}-{src_file}-{take}-{target}.wav``;
5 folds.
"""
from __future__ import annotations

from pathlib import Path

from .manifest import Clip, Manifest, check_clips
from .registry import register_dataset
from .tables import parse_fold, read_csv_rows


def _detect(path: Path) -> bool:
    return (path / "meta" / "esc50.csv").is_file()


def _demo(out: Path, clips_per_class: int = 10, duration: float = 2.0, sample_rate: int = 22050,
          seed: int = 0) -> Path:
    from ..demo import write_demo_dataset

    return write_demo_dataset(out, clips_per_class, duration, sample_rate, seed)


@register_dataset("esc50", detect=_detect, priority=10, demo=_demo,
                  layout="`audio/*.wav` + `meta/esc50.csv` (ESC-50, and ESC-10 subsets of it)",
                  protocol="5 official folds (`--fold 5` tests on fold 5, folds 1-4 tune); accuracy")
def read_esc50(root: Path) -> Manifest:
    meta = root / "meta" / "esc50.csv"
    clips = [Clip(Path(r["filename"]).stem, root / "audio" / r["filename"], r["category"],
                  parse_fold(r["fold"], meta, line))
             for line, r in read_csv_rows(meta, ["filename", "fold", "category"])]
    check_clips(clips, meta)
    return Manifest(root.name, root, tuple(clips))
