"""DCASE 2018 task 5, monitoring of domestic activities (SINS): 9 activities, 10 s segments,
4-channel 16 kHz recordings, development set with 4 cross-validation folds and the evaluation set.
The challenge ranks systems by macro-averaged F1 over the whole multi-channel segment; its
baseline scores each channel and averages the four (``--channels each`` does the same).

Checked against the datasets' README files: development ``meta.txt`` and
``evaluation_setup/fold[1-4]_train.txt`` lines are ``[filename][tab][activity label][tab][session]``,
``fold[1-4]_test.txt`` ``[filename]`` and ``fold[1-4]_evaluate.txt`` ``[filename][tab][activity
label]``, files ``audio/DevNode{node}_ex{session}_{segment}.wav`` (72984); the evaluation set
(``audio/{segment}.wav``) has ``meta.txt``, ``evaluation_setup/test.txt``, ``evaluation.txt`` and
``map.txt``. Layout rules: :mod:`.dcase`.
"""
from __future__ import annotations

from pathlib import Path

from .dcase import DcaseTask, write_task_demo
from .manifest import Manifest
from .registry import register_dataset

TASK = DcaseTask("dcase2018", dev_prefix="DCASE2018-task5-dev", eval_prefix="DCASE2018-task5-eval",
                 dev_file=r"DevNode\d+_ex\d+_\d+", primary_metric="macro_f1")
CHANNELS = 4  #: microphones per array
DEMO_LABELS = ("absence", "cooking", "dishwashing", "social_activity", "working")


def _demo(out: Path, clips_per_class: int = 8, duration: float = 2.0, sample_rate: int = 16000,
          seed: int = 0) -> Path:
    return write_task_demo(out, TASK, DEMO_LABELS, lambda c, k: f"DevNode{k % 4 + 1}_ex{c + 1}_{k + 1}",
                           "evaluation.txt", clips_per_class, duration, sample_rate, seed, channels=CHANNELS)


@register_dataset("dcase2018", detect=TASK.detect, priority=20, channels=CHANNELS, demo=_demo,
                  layout="`DCASE2018-task5-dev/` (meta.txt, audio/, evaluation_setup/), `DCASE2018-task5-eval/`, "
                         "or a folder holding both; 4-channel audio (`--channels mix|each`)",
                  protocol=TASK.protocol)
def read_dcase2018(path: Path) -> Manifest:
    return TASK.read(path)
