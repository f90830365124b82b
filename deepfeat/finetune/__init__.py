"""Fine-tuned image CNNs on mel-spectrogram images (``deepfeat finetune``): the cached inputs
(:mod:`.inputs`), the classifier (:mod:`.classifier`), the stage (:mod:`.run`) and its defaults
(:mod:`.config`)."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    ".config": ("FINETUNE_TRAINING", "DEFAULT_NETWORK", "DEFAULT_TRAIN_BLOCKS", "DEFAULT_MIXUP", "MASKED_COPIES"),
    ".inputs": ("TrunkExtractor", "trunk_and_tail", "frozen_trunk", "version_images", "masked_image"),
    ".classifier": ("FineTunedCNN", "FinetuneTask", "TailClassifier"),
    ".run": ("run_finetune", "system_name", "trunk_extractor", "default_cache", "calibrate_trunk"),
})
