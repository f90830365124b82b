"""Self-supervised pre-training of image CNNs on mel-spectrogram images (``deepfeat pretrain``) and
the linear-probe vs fine-tune study (``deepfeat ssl-study``): the defaults (:mod:`.config`), the
clips pre-training may read (:mod:`.data`), the views (:mod:`.views`), the torch renderer
(:mod:`.render`), the six methods built from lightly (:mod:`.methods`), the engine task and the
collapse guard (:mod:`.task`), the stage (:mod:`.run`) and the study (:mod:`.study`)."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    ".config": ("METHODS", "PRETRAIN_TRAINING", "DEFAULT_BACKBONE", "DEFAULT_SIZE", "ViewConfig", "MethodConfig"),
    ".data": ("pretraining_manifest", "held_out_folds", "load_planes"),
    ".views": ("draw_view",),
    ".methods": ("build_method", "Backbone", "SSLMethod"),
    ".task": ("PretrainTask", "CollapseWarning", "check_collapse", "embedding_std"),
    ".run": ("pretrain", "pretrain_info", "training_checkpoint"),
})
