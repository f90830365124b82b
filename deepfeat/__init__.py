"""deepfeat: audio → mel images → frozen pretrained networks → HDF5 features → classical classifiers.

From Python (each name is imported on first use, so ``import deepfeat`` stays light):

* :func:`embed`, :func:`embed_frames`, :func:`load_extractor`: features of audio files or arrays,
  with the CLI's front end and networks;
* :func:`load_features` → :class:`FeatureSet` (``to_numpy()``, ``to_pandas()``): a feature store;
* :class:`TunedSVM`: the linear SVM of ``deepfeat svm`` as a scikit-learn classifier;
* :mod:`deepfeat.hear`: the HEAR 2021 API for any deepfeat network.
"""
from ._lazy import lazy_exports
from .threads import prefer_passive_wait as _prefer_passive_wait

# Before torch is imported: its OpenMP threads sleep rather than spin when they wait (see deepfeat.threads).
_prefer_passive_wait()

__version__ = "0.1.0"

__getattr__, _exports = lazy_exports(__name__, {
    ".api": ("embed", "embed_frames", "load_extractor", "load_features"),
    ".store": ("FeatureSet",),
    ".svm": ("TunedSVM",),
    ".config": ("MelConfig", "PlotConfig"),
})
__all__ = ["__version__", *_exports]


def __dir__():
    return sorted({*globals(), *_exports})
