"""Late (decision-level) fusion of the class scores of several systems: the estimators
(:mod:`.estimators`), the paper's groups (:mod:`.groups`) and ``deepfeat fuse`` (:mod:`.run`)."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    ".estimators": ("METHODS", "NORMALISATIONS", "MajorityVote", "MeanFusion", "StackingFusion", "WeightedFusion",
                    "fusion_params", "make_fusion"),
    ".groups": ("GROUPS", "SystemInfo", "find_scores", "resolve_inputs", "select_group", "system_info"),
    ".run": ("align_scores", "dataset_name", "evaluate_fusion", "fused_system_name", "fusion_config", "fusion_data",
             "fusion_params_for",
             "read_aligned", "run_fusion", "stack_scores"),
})
