"""Which system made a scores file, and the paper's fusion groups (Amiriparian et al. 2020,
Table 3): which systems' scores ``deepfeat fuse --group NAME`` fuses."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from ..errors import ConfigError, StoreError

if TYPE_CHECKING:
    from ..scores import Scores

log = logging.getLogger("deepfeat.fusion")

#: Families of systems that are trained on the data (``model`` in their scores config).
TRAINED_FAMILIES = ("crnn", "finetune")


@dataclass(frozen=True)
class SystemInfo:
    """What a scores file's ``system`` and ``config`` say about the system that made it."""

    system: str
    family: str  #: "image" (image CNN + SVM), "audio" (audio-model embedding + SVM), "crnn", "finetune" or "fusion"
    network: str | None = None
    weights: str | None = None  #: imagenet, none, a checkpoint path, or an audio model's own
    colormap: str | None = None


def _find_extractor(config) -> dict | None:
    """The extractor configuration (a dict with ``network`` and ``kind``) anywhere in ``config``."""
    if isinstance(config, dict):
        if "network" in config and "kind" in config:
            return config
        for value in config.values():
            found = _find_extractor(value)
            if found is not None:
                return found
    return None


def system_info(scores: "Scores") -> SystemInfo:
    """Classify a system from its scores file metadata (for groups and the report)."""
    config = scores.config or {}
    if "fusion" in config:
        return SystemInfo(scores.system, "fusion", network=config["fusion"].get("method"))
    model = config.get("model") or ("crnn" if scores.system.startswith("crnn") else None)
    if model in TRAINED_FAMILIES:
        network = config.get("network") or model
        return SystemInfo(scores.system, model, network=network, weights=config.get("weights"))
    extractor = _find_extractor(config)
    if extractor is None:
        raise StoreError(f"{scores.system}: its scores config names no extractor or model; "
                         "rewrite it with `deepfeat svm`, `crnn` or `finetune`")
    plot = extractor.get("plot") or {}
    return SystemInfo(scores.system, "image" if extractor["kind"] == "image" else "audio",
                      network=extractor["network"], weights=extractor.get("weights"),
                      colormap=plot.get("colormap"))


#: The paper's fusion groups (and "pretrained"): name → (description, which systems belong).
GROUPS: dict[str, tuple[str, object]] = {
    "imagenet": ("all ImageNet-pretrained image CNNs", lambda i: i.family == "image" and i.weights == "imagenet"),
    "untrained": ("all randomly initialised image CNNs", lambda i: i.family == "image" and i.weights == "none"),
    "image": ("all image CNNs", lambda i: i.family == "image"),
    "crnn+image": ("CRNN + all image CNNs", lambda i: i.family in ("crnn", "image")),
    "image+audio": ("all image CNNs + audio models", lambda i: i.family in ("image", "audio")),
    # beyond the paper's groups: every pre-trained system, leaving out the untrained CNNs
    "pretrained": ("ImageNet-pretrained image CNNs + audio models",
                   lambda i: (i.family == "image" and i.weights == "imagenet") or i.family == "audio"),
    "finetuned+audio": ("fine-tuned CNNs + audio models", lambda i: i.family in ("finetune", "audio")),
    "all": ("every single system", lambda i: i.family != "fusion"),
}


def find_scores(results_dir: str | Path) -> list[Path]:
    """Every scores file under ``results_dir`` (recursively, sorted; not those of a nested study:
    :func:`deepfeat.io.run_files`)."""
    from ..io import run_files
    from ..scores import read_scores

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir}: no such results folder; run `deepfeat svm` / `deepfeat crnn` first")
    found = []
    for path in run_files(results_dir, "*.h5"):
        try:
            read_scores(path)
        except StoreError:
            continue
        found.append(path)
    return found


def _on_fold(scores: "Scores", test_fold: int | str | None) -> bool:
    """Whether ``scores`` were made with test fold ``test_fold`` (a number or ``"evaluation"``)."""
    from ..protocol import EVALUATION

    if test_fold is None:
        return True
    if isinstance(test_fold, str) and test_fold.strip().lower() == EVALUATION:
        return scores.test_fold in scores.evaluation_folds
    return scores.test_fold == int(test_fold)


def select_group(sources: str | Path | list[str | Path], group: str,
                 test_fold: int | str | None = None) -> list[Path]:
    """The scores files of the systems in ``group`` (and of ``test_fold``: a number or
    ``"evaluation"``) among ``sources``: results folders (searched recursively) and scores files."""
    from ..scores import read_scores

    if group not in GROUPS:
        raise ConfigError(f"unknown fusion group {group!r}; choose one of {', '.join(GROUPS)}")
    sources = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(p) for p in sources]
    candidates = [p for src in sources for p in (find_scores(src) if src.is_dir() else [src])]
    member = GROUPS[group][1]
    by_system: dict[str, Path] = {}
    # a run's own folder before deeper ones (its --cv fold-k/ folders)
    for path in sorted(dict.fromkeys(candidates), key=lambda p: (len(p.parts), p)):
        s = read_scores(path)
        if _on_fold(s, test_fold) and member(system_info(s)):
            kept = by_system.setdefault(s.system, path)
            if kept != path:
                log.warning("%s: another scores file of %s for this test fold; using %s", path, s.system, kept)
    chosen = sorted(by_system.values())
    if len(chosen) < 2:
        where = ", ".join(str(s) for s in sources)
        raise ConfigError(f"{where}: fusion group {group!r} ({GROUPS[group][0]}) needs at least two systems' "
                          f"scores{'' if test_fold is None else f' for test fold {test_fold}'}, found {len(chosen)}; "
                          "run the missing `deepfeat svm` / `deepfeat crnn` first")
    return chosen


def resolve_inputs(paths, group: str | None, test_fold: int | str | None) -> tuple[list[Path], Path | None]:
    """What ``deepfeat fuse PATHS [--group G]`` fuses: ``(scores files, results folder)``.

    With a group, PATHS are results folders (searched) and scores files; the results folder is
    the one folder given, if exactly one is (fusions are then written inside it). Without a group,
    PATHS must be scores files."""
    paths = [Path(p) for p in paths]
    if group is None:
        folder = next((p for p in paths if p.is_dir()), None)
        if folder is not None:
            raise ConfigError(f"{folder}: a folder; pass scores.h5 files, or a results folder with --group")
        return paths, None
    results_dir = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    return select_group(paths, group, test_fold=test_fold), results_dir
