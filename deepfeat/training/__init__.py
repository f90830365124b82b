"""The training side of deepfeat: the one training loop (:mod:`.engine`), its configuration
(:mod:`.config`), the scikit-learn classifier base every trained network uses (:mod:`.classifier`)
and deep ensembles (:mod:`.ensemble`)."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    ".config": ("TrainConfig", "OPTIMIZERS", "SCHEDULES", "PRECISIONS"),
    ".engine": ("Task", "TrainResult", "train", "load_checkpoint"),
    ".classifier": ("TorchClassifier", "validation_split", "fingerprint"),
    ".ensemble": ("SeedEnsemble",),
})
