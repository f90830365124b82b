"""The CRNN of Amiriparian et al. (2020): its configuration (:mod:`.config`), network
(:mod:`.model`), training (:mod:`.train`), scikit-learn classifier (:mod:`.classifier`) and
``deepfeat crnn`` (:mod:`.run`)."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    ".config": ("ARCHITECTURES", "CRNNArchitecture", "CRNN_MEL", "DEFAULT_DURATION", "TrainingConfig"),
    ".model": ("CRNN", "conv_block"),
    ".train": ("TrainingResult", "predict_proba", "train_crnn"),
    ".classifier": ("CRNNClassifier",),
    ".run": ("crnn_run_config", "load_crnn", "run_crnn", "system_name"),
})
