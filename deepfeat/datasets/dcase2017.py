"""DCASE 2017 task 1, acoustic scene classification: TUT Acoustic Scenes 2017 (15 scenes, 10 s,
binaural 44.1 kHz), development set with 4 cross-validation folds and the evaluation set.

Checked against the datasets' README files and the DCASE utilities' readers of them:
development ``meta.txt`` lines are ``audio/b020_90_100.wav<TAB>beach<TAB>b020`` (file, scene,
recording id; files ``[recording]_[start]_[end].wav``), ``evaluation_setup/fold[1-4]_train.txt``
(file, scene), ``fold[1-4]_test.txt`` (file) and ``fold[1-4]_evaluate.txt`` (file, scene); 4680
files, the four test lists partition them. The evaluation set (1620 files ``audio/N.wav``) has
``meta.txt`` and ``evaluation_setup/test.txt`` / ``evaluate.txt``. Layout rules: :mod:`.dcase`.
"""
from __future__ import annotations

from pathlib import Path

from .dcase import DcaseTask, write_task_demo
from .manifest import Manifest
from .registry import register_dataset

TASK = DcaseTask("dcase2017", dev_prefix="TUT-acoustic-scenes-2017-development",
                 eval_prefix="TUT-acoustic-scenes-2017-evaluation", dev_file=r"[a-z]\d{3}_\d+_\d+")
DEMO_LABELS = ("beach", "bus", "cafe/restaurant", "car", "city_center")


def _demo(out: Path, clips_per_class: int = 8, duration: float = 2.0, sample_rate: int = 44100,
          seed: int = 0) -> Path:
    return write_task_demo(out, TASK, DEMO_LABELS, lambda c, k: f"{'abcde'[c]}{k:03d}_0_10", "evaluate.txt",
                           clips_per_class, duration, sample_rate, seed, channels=2)


@register_dataset("dcase2017", detect=TASK.detect, priority=20, demo=_demo,
                  layout="`TUT-acoustic-scenes-2017-development/` (meta.txt, audio/, evaluation_setup/), "
                         "`TUT-acoustic-scenes-2017-evaluation/`, or a folder holding both",
                  protocol=TASK.protocol)
def read_dcase2017(path: Path) -> Manifest:
    return TASK.read(path)
