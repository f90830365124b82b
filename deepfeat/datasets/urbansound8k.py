"""UrbanSound8K (Salamon et al. 2014): ``audio/fold1..10/*.wav`` + ``metadata/UrbanSound8K.csv``.

Checked against the metadata file as the dataset ships it (its first lines, as other readers of
UrbanSound8K quote them): the header is ``slice_file_name,fsID,start,end,salience,fold,classID,class``
(e.g. ``100032-3-0-0.wav,100032,0.0,0.317551,1,5,3,dog_bark``) and each clip lies in
``audio/fold<fold>/``; the 10 predefined folds are kept.
"""
from __future__ import annotations

from pathlib import Path

from .manifest import Clip, Manifest, check_clips
from .registry import register_dataset
from .tables import parse_fold, read_csv_rows


def _detect(path: Path) -> bool:
    return (path / "metadata" / "UrbanSound8K.csv").is_file()


@register_dataset("urbansound8k", detect=_detect, priority=10,
                  layout="`audio/foldN/*.wav` + `metadata/UrbanSound8K.csv`",
                  protocol="10 official folds (`--fold K`, or `--cv` for all ten); accuracy")
def read_urbansound8k(root: Path) -> Manifest:
    meta = root / "metadata" / "UrbanSound8K.csv"
    clips = []
    for line, r in read_csv_rows(meta, ["slice_file_name", "fold", "class"]):
        fold = parse_fold(r["fold"], meta, line)
        name = r["slice_file_name"]
        clips.append(Clip(Path(name).stem, root / "audio" / f"fold{fold}" / name, r["class"], fold))
    check_clips(clips, meta)
    return Manifest(root.name, root, tuple(clips))
