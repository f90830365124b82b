"""The results table of one dataset, laid out like Table 3 of Amiriparian et al. (2020).

:func:`write_report` collects every run folder (``metrics.json``, and ``scores.h5`` for what
system made it) under ``results/<dataset>/`` and writes ``README.md`` there: one row per single
system (network, pre-training, colour map or model) and per fusion, with devel and test scores of
the dataset's primary metric first (``primary_metric`` in metrics.json: macro-F1 for DCASE 2018,
accuracy elsewhere), then the other test metrics, the chosen SVM C and timings; a bar chart of
the test primary metric (``test_<metric>.png``) and whether the best fusion beats the single systems.

Extraction time is read from each SVM run's feature store (``extract_seconds`` attribute of the
store named in ``metrics.json``); it is blank when the store is gone.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py

from .errors import ConfigError, StoreError
from .evaluation import SCORE_NAMES
from .fusion import GROUPS, METHODS, SystemInfo, system_info
from .io import atomic_path, run_files
from .scores import read_scores

log = logging.getLogger("deepfeat.report")

README = "README.md"
CHART = "test_accuracy.png"  #: the chart of a dataset whose primary metric is accuracy (else test_<metric>.png)
_TITLES = {"accuracy": "acc", "macro_f1": "macro-F1", "uar": "UAR"}
_WORDS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "uar": "UAR"}
#: Row order of single systems: ImageNet image CNNs, untrained ones, other image CNNs, audio models, CRNN.
_KIND_ORDER = ("image-imagenet", "image-none", "image", "audio", "crnn", "finetune", "fusion")
_KIND_TITLES = {"image-imagenet": "image CNN", "image-none": "image CNN", "image": "image CNN", "audio": "audio model",
                "crnn": "CRNN", "finetune": "fine-tuned CNN", "fusion": "fusion"}


@dataclass
class Run:
    """One run folder: its metrics and what kind of system made it."""

    path: Path  #: the run folder
    metrics: dict
    info: SystemInfo

    @property
    def system(self) -> str:
        return self.metrics.get("system") or self.path.name

    @property
    def kind(self) -> str:
        if self.info.family == "image":
            return f"image-{self.info.weights}" if self.info.weights in ("imagenet", "none") else "image"
        return self.info.family

    @property
    def is_fusion(self) -> bool:
        return self.info.family == "fusion"

    def sort_key(self):
        if self.is_fusion:
            fusion = self.metrics.get("fusion") or {}
            group = fusion.get("group")
            group_rank = list(GROUPS).index(group) if group in GROUPS else len(GROUPS)
            method = fusion.get("method") or self.metrics.get("method")
            method_rank = list(METHODS).index(method) if method in METHODS else len(METHODS)
            return (len(_KIND_ORDER) - 1, group_rank, method_rank, self.system)
        return (_KIND_ORDER.index(self.kind), self.info.network or "", self.system)


def _run_info(run_dir: Path, metrics: dict) -> SystemInfo:
    """System metadata from the run's ``scores.h5`` (as fusion groups see it), else from metrics."""
    scores_path = run_dir / "scores.h5"
    if scores_path.is_file():
        try:
            return system_info(read_scores(scores_path))
        except StoreError as e:
            log.warning("%s", e)
    system = metrics.get("system") or run_dir.name
    if "fusion" in metrics:
        return SystemInfo(system, "fusion", network=(metrics["fusion"] or {}).get("method"))
    if system.startswith("crnn"):
        return SystemInfo(system, "crnn", network="crnn")
    network = metrics.get("network")
    if "train_blocks" in metrics:  # deepfeat finetune's provenance
        return SystemInfo(system, "finetune", network=network, weights=metrics.get("weights"))
    return SystemInfo(system, _network_kind(network), network=network, weights=metrics.get("weights"))


def _network_kind(network: str | None) -> str:
    """``image`` or ``audio``: what the registered extractor ``network`` is (``image`` if unknown)."""
    from .extractors import get_extractor_class

    try:
        return get_extractor_class(str(network)).kind
    except ConfigError:
        return "image"


def collect_runs(results_dir: str | Path, fold: int | None = None) -> tuple[list[Run], int]:
    """Every run under ``results_dir`` on test fold ``fold`` (default: the fold most runs use),
    in table order, and that fold. A system with several runs on the fold (e.g. a ``--cv``
    run's ``fold-k/`` folder as well) keeps the one nearest to ``results_dir``; a nested study's
    runs (a folder with its own ``README.md``, e.g. ``ssl/``) are its own table's."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir}: no such results folder; run `deepfeat svm`, `crnn` or `fuse` first")
    found = []
    for path in sorted(run_files(results_dir, "metrics.json"), key=lambda p: (len(p.parts), p)):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log.warning("%s: unreadable (%s); skipped", path, e)
            continue
        if not isinstance(metrics, dict) or metrics.get("test_fold") is None:
            continue
        found.append((path.parent, metrics))
    if not found:
        raise ConfigError(f"{results_dir}: no metrics.json of any run; run `deepfeat svm`, `crnn` or `fuse` first")
    if fold is None:
        counts = Counter(int(m["test_fold"]) for _, m in found)
        fold = min(counts, key=lambda f: (-counts[f], f))
    runs, seen = [], set()
    for run_dir, metrics in found:
        if int(metrics["test_fold"]) != fold:
            continue
        run = Run(run_dir, metrics, _run_info(run_dir, metrics))
        if run.system in seen:
            log.warning("%s: another run of %s on test fold %d; the table keeps the first", run_dir, run.system, fold)
            continue
        seen.add(run.system)
        runs.append(run)
    if not runs:
        raise ConfigError(f"{results_dir}: no run on test fold {fold}")
    return sorted(runs, key=Run.sort_key), fold


def extraction(metrics: dict) -> tuple[float | None, str | None]:
    """(seconds, device) the run's feature store took to extract, from the store's attributes."""
    store = metrics.get("store")
    if not store or not Path(store).is_file():
        return None, None
    try:
        with h5py.File(store, "r") as f:
            seconds = f.attrs.get("extract_seconds")
            device = f.attrs.get("device")
    except OSError:
        return None, None
    return (float(seconds) if seconds is not None else None), (str(device) if device is not None else None)


def _member_extraction(metrics: dict) -> float | None:
    """A fusion's cost of features: the sum of its members' extraction seconds (members that
    have a feature store; a CRNN member adds nothing)."""
    total, found = 0.0, False
    for member in (metrics.get("fusion") or {}).get("inputs", []):
        member_metrics = Path(member.get("path", "")).parent / "metrics.json"
        if not member_metrics.is_file():
            continue
        try:
            data = json.loads(member_metrics.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        seconds = extraction(data)[0] if "fusion" not in data else _member_extraction(data)
        if seconds is not None:
            total, found = total + seconds, True
    return total if found else None


def _extract_cell(run: Run) -> str:
    if run.is_fusion:
        seconds = _member_extraction(run.metrics)
        return "–" if seconds is None else f"Σ {seconds:.0f}"
    seconds, device = extraction(run.metrics)
    return "–" if seconds is None else f"{seconds:.0f}" + (f" ({device})" if device else "")


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _describe(run: Run) -> tuple[str, str, str, str]:
    """(type, network or model, pre-training, colour map / details) cells."""
    info, m = run.info, run.metrics
    if run.is_fusion:
        fusion = m.get("fusion") or {}
        group = fusion.get("group")
        members = f"{GROUPS[group][0]} ({len(m.get('systems', []))})" if group in GROUPS else \
            " + ".join(m.get("systems", []))
        return "fusion", fusion.get("method") or "", "–", members
    if info.family == "crnn":
        aug = m.get("augmentation") or []
        return "CRNN", "CRNN", "none (trained on mels)", f"{m.get('epochs', '?')} epochs" + (
            f", augment: {', '.join(aug)}" if aug else "")
    pretraining = {"imagenet": "ImageNet", "none": "none (random init)"}.get(info.weights or "", info.weights or "–")
    if info.family == "finetune":
        blocks = m.get("train_blocks")
        aug = m.get("augmentation") or []
        detail = (f"last {blocks} stages" if blocks is not None else "all stages") + \
            f", {(m.get('training') or {}).get('epochs', '?')} epochs" + \
            (f", ensemble of {m['ensemble']}" if (m.get("ensemble") or 1) > 1 else "") + \
            (f", augment: {', '.join(aug)}" if aug else "")
        return "fine-tuned CNN", info.network or "?", pretraining, detail
    detail = (info.colormap or "–") if info.family == "image" else "–"
    return _KIND_TITLES[run.kind], info.network or m.get("network") or "?", pretraining, detail


def primary_metric(runs: list[Run]) -> str:
    """The metric the runs' dataset is reported by (their ``primary_metric``; default accuracy)."""
    declared = Counter(r.metrics.get("primary_metric") for r in runs if r.metrics.get("primary_metric") in SCORE_NAMES)
    return declared.most_common(1)[0][0] if declared else "accuracy"


def results_table(runs: list[Run], metric: str = "accuracy") -> str:
    """The Markdown table: one row per run, devel and test ``metric`` first (best in bold), then
    the other test metrics."""
    others = [m for m in SCORE_NAMES if m != metric]
    head = ["System", "Type", "Network / method", "Pre-training", "Colour map / details",
            f"Devel {_TITLES[metric]} [%]", f"Test {_TITLES[metric]} [%]",
            *(f"Test {_TITLES[m]} [%]" for m in others), "C", "Extract [s]", "Fit [s]"]
    best = {key: max((r.metrics.get(key) or 0.0) for r in runs) for key in (f"devel_{metric}", f"test_{metric}")}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 5 else "---:" for i in range(len(head))) + "|"]
    for run in runs:
        m = run.metrics
        cells = [f"`{run.system}`", *_describe(run)]
        for key in best:
            cell = _pct(m.get(key))
            cells.append(f"**{cell}**" if m.get(key) is not None and m[key] == best[key] else cell)
        cells += [*(_pct(m.get(f"test_{other}")) for other in others),
                  "–" if m.get("best_C") is None else f"{m['best_C']:.0e}",
                  _extract_cell(run), _fit_seconds(m)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fit_seconds(metrics: dict) -> str:
    seconds = (metrics.get("timings") or {}).get("total_seconds")
    return "–" if seconds is None else f"{seconds:.1f}"


def fusion_verdict(runs: list[Run], metric: str = "accuracy") -> list[str]:
    """Sentences comparing the best fusion (by devel ``metric``) with the single systems."""
    devel, test, word = f"devel_{metric}", f"test_{metric}", _WORDS[metric]
    singles = [r for r in runs if not r.is_fusion and r.metrics.get(devel) is not None]
    fusions = [r for r in runs if r.is_fusion and r.metrics.get(devel) is not None]
    if not singles:
        return []
    best_single = max(singles, key=lambda r: (r.metrics[devel], r.metrics.get(test) or 0))
    top_test = max(r.metrics.get(test) or 0.0 for r in singles)
    best_m = best_single.metrics
    lines = [f"- Best single system on devel: `{best_single.system}` (devel {_pct(best_m[devel])} %, "
             f"test {_pct(best_m.get(test))} % {word}); best single test {word}: {_pct(top_test)} %."]
    if fusions:
        best = max(fusions, key=lambda r: (r.metrics[devel], r.metrics.get(test) or 0))
        beats_devel = all(best.metrics[devel] > r.metrics[devel] for r in singles)
        value = best.metrics.get(test) or 0.0
        lines.append(f"- Best fusion on devel: `{best.system}` (devel {_pct(best.metrics[devel])} %, "
                     f"test {_pct(value)} % {word}): {'beats' if beats_devel else 'does not beat'} every single "
                     f"system on devel; {'matches or beats' if value >= top_test else 'falls below'} the best "
                     "single system on test.")
    return lines


_CHART_COLOURS = {"image-imagenet": ("tab:blue", "image CNN, ImageNet"),
                  "image-none": ("tab:cyan", "image CNN, random init"),
                  "image": ("tab:purple", "image CNN, other weights"), "audio": ("tab:green", "audio model"),
                  "crnn": ("tab:orange", "CRNN"), "finetune": ("tab:brown", "fine-tuned CNN"),
                  "fusion": ("tab:red", "fusion")}


def chart_range(values, step: float = 5.0, margin: float = 2.0) -> tuple[float, float]:
    """The x range (%) of the chart: from a multiple of ``step`` at least ``margin`` below the
    lowest value (not below 0) to 100, so differences of a few points are visible."""
    low = max(0.0, step * ((min(values) - margin) // step)) if len(values) else 0.0
    return low, 100.0


def plot_test_accuracy(runs: list[Run], path: str | Path, title: str = "", metric: str = "accuracy") -> Path:
    """Save :func:`accuracy_figure` as a PNG."""
    fig = accuracy_figure(runs, title, metric)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return Path(path)


def accuracy_figure(runs: list[Run], title: str = "", metric: str = "accuracy"):
    """Horizontal bars of the test ``metric`` (%) per run, best on top (ties: best devel on top),
    coloured by type, with the devel value as a black tick and each value written beside its
    bar; the axis is zoomed to the data (:func:`chart_range`) and says where it starts."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    word = _WORDS[metric]
    test = {id(r): 100 * (r.metrics.get(f"test_{metric}") or 0.0) for r in runs}
    devel = {id(r): 100 * r.metrics[f"devel_{metric}"] for r in runs if r.metrics.get(f"devel_{metric}") is not None}
    ordered = sorted(runs, key=lambda r: (test[id(r)], devel.get(id(r), 0.0)))  # bottom to top
    low, high = chart_range([*test.values(), *devel.values()])
    fig = Figure(figsize=(9, 2.0 + 0.32 * len(runs)), layout="constrained")
    ax = fig.add_subplot()
    rows = range(len(ordered))
    ax.barh(rows, [test[id(r)] - low for r in ordered], left=low, color=[_CHART_COLOURS[r.kind][0] for r in ordered])
    ticks = [(row, devel[id(r)]) for row, r in zip(rows, ordered) if id(r) in devel]
    ax.plot([d for _, d in ticks], [row for row, _ in ticks], "k|", markersize=13, markeredgewidth=2)
    for row, r in zip(rows, ordered):
        right = max(test[id(r)], devel.get(id(r), 0.0))
        ax.text(min(right + 0.4, high - 0.2), row, f"{test[id(r)]:.1f}", va="center", fontsize=9,
                ha="left" if right + 0.4 < high - 3 else "right", color="black")
    kinds = list(dict.fromkeys(r.kind for r in reversed(ordered)))
    handles = [Patch(color=_CHART_COLOURS[k][0], label=_CHART_COLOURS[k][1]) for k in kinds]
    handles.append(Line2D([], [], color="k", marker="|", linestyle="", markersize=10, markeredgewidth=2,
                          label=f"devel {word}"))
    ax.legend(handles=handles, loc="lower right", fontsize=9, framealpha=0.95)
    ax.set_yticks(list(rows), [r.system for r in ordered], fontsize=9)
    ax.set_ylim(-0.6, len(ordered) - 0.4)
    ax.set_xlim(low, high)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_xlabel(f"test {word} [%]" + (f" (axis starts at {low:.0f} %)" if low > 0 else ""), fontsize=10)
    ax.set_title(f"Test {word} per system, best on top" + (f": {title}" if title else ""), fontsize=11)
    return fig


def _protocol_text(runs: list[Run], fold: int, metric: str) -> str:
    dev_folds = next((r.metrics["development_folds"] for r in runs if r.metrics.get("development_folds")), None)
    n_test = next((r.metrics["n_test"] for r in runs if r.metrics.get("n_test")), None)
    evaluation = any(r.metrics.get("test_partition") == "evaluation" for r in runs)
    details = ", ".join([f"fold {fold}"] * evaluation + [f"{n_test} clips"] * bool(n_test))
    test = "Test: the evaluation set" if evaluation else f"Test fold {fold}"
    word = _WORDS[metric]
    return (test + (f" ({details})" if details else "") + "; development folds "
            + (", ".join(str(f) for f in dev_folds) if dev_folds else "the others")
            + f". Primary metric: {word} (first in the table; also what C was chosen for unless a run says "
            f"otherwise). Devel = mean {word} over the development folds, each held out in turn (the "
            "cross-validation that chose C); test = the model refitted on all development folds. Fusions are "
            "fitted on the systems' out-of-fold development scores only.")


def write_report(results_dir: str | Path, fold: int | None = None) -> Path:
    """Write ``README.md`` and the chart (``test_<primary metric>.png``) into ``results_dir`` (one
    dataset's results, e.g. ``results/esc10``) and return the README's path."""
    results_dir = Path(results_dir)
    runs, fold = collect_runs(results_dir, fold)
    metric = primary_metric(runs)
    dataset = next((r.metrics["dataset"] for r in runs if r.metrics.get("dataset")), results_dir.name)
    chart = f"test_{metric}.png"
    plot_test_accuracy(runs, results_dir / chart, title=f"{dataset}, test fold {fold}", metric=metric)
    text = "\n".join([
        f"# {dataset}: results", "",
        _protocol_text(runs, fold, metric), "",
        results_table(runs, metric), "",
        *fusion_verdict(runs, metric), "",
        f"![test {_WORDS[metric]} per system]({chart})", "",
        f"Extract: feature extraction of the whole dataset (seconds, device; a fusion: Σ over its members' "
        f"feature stores); Fit: the run itself "
        f"(SVM tuning and refit, CRNN training, fusion). Made by `deepfeat report {results_dir}` from the "
        f"`metrics.json` of {len(runs)} runs.", ""])
    path = results_dir / README
    path.write_text(text)
    return path
