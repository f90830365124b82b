"""The CRNN of Amiriparian et al. (2020): its configuration (:mod:`.config`), network
(:mod:`.model`), scikit-learn classifier trained by the engine (:mod:`.classifier`) and
``deepfeat crnn`` (:mod:`.run`)."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    ".config": ("ARCHITECTURES", "CRNNArchitecture", "CRNN_MEL", "CRNN_TRAINING", "DEFAULT_DURATION"),
    ".model": ("CRNN", "conv_block"),
    ".classifier": ("CRNNClassifier", "CRNNTask", "architecture_of", "as_versions"),
    ".run": ("auto_duration", "crnn_run_config", "load_crnn", "run_crnn", "system_name"),
})
