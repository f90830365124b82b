"""Dataset manifests: one list of clips (id, path, label, fold[, channel]) from any supported layout.

One small module per layout, registered with :func:`register_dataset` and recognised from the
path by :func:`load_manifest` (``dataset_readers()`` lists them, in detection order):

* ``esc50``: ESC-50 (and ESC-10 subsets): ``audio/`` + ``meta/esc50.csv``, 5 folds;
* ``urbansound8k``: ``audio/foldN/`` + ``metadata/UrbanSound8K.csv``, 10 folds;
* ``dcase2017``: DCASE 2017 task 1 (TUT Acoustic Scenes 2017), development set (4 folds from
  ``evaluation_setup/``), evaluation set, or a folder holding both (evaluation = fold 5);
* ``dcase2018``: DCASE 2018 task 5 (4-channel domestic activities), the same, macro-F1 primary;
* ``gtzan``: ``genres/<genre>/`` or ``genres_original/<genre>/``, deterministic stratified folds;
* ``label_csv``: a CSV with ``file,label[,fold]``, parsed strictly;
* ``folders``: a folder per class, or a flat folder of unlabelled audio.
"""
from .manifest import AUDIO_SUFFIXES, METRICS, Clip, Manifest, check_clips
from .registry import CHANNEL_MODES, DatasetReader, dataset_readers, detect_layout, load_manifest, register_dataset

__all__ = ["AUDIO_SUFFIXES", "CHANNEL_MODES", "METRICS", "Clip", "DatasetReader", "Manifest", "check_clips",
           "dataset_readers", "detect_layout", "load_manifest", "register_dataset"]
