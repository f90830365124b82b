"""The study's report: ``README.md`` (protocol, one row per starting point with its linear probe and
fine-tuning results and every row's compute budget, the pre-trainings' end state, the best method
against random initialisation) and a bar chart (``test_accuracy.png``), both made from the rows'
``row.json`` (:mod:`deepfeat.ssl.study`)."""
from __future__ import annotations

import math
from pathlib import Path

from ..io import atomic_path, write_text
from .config import COLLAPSE_FRACTION

README = "README.md"
CHART = "test_accuracy.png"
NOTES = "NOTES.md"  #: written by hand, never by the study; linked when present
_EVALUATION_NAMES = {"probe": "linear probe", "finetune": "fine-tune"}


def _by_start(rows: list[dict]) -> dict[str, dict[str, dict]]:
    table: dict[str, dict[str, dict]] = {}
    for row in rows:
        table.setdefault(row["start"], {})[row["evaluation"]] = row
    return table


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _delta(row: dict | None, base: dict | None) -> str:
    if not row or not base or row.get("test_accuracy") is None or base.get("test_accuracy") is None:
        return "–"
    return f"{100 * (row['test_accuracy'] - base['test_accuracy']):+.1f}"


def _minutes(seconds) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f} min"


def _budget(row: dict) -> str:
    pre = row.get("pretrain")
    if not pre:
        return "none (random init)" if row["weights"] == "none" else f"{row['weights']} weights (given)"
    return f"{pre['epochs']} epochs on {pre['n_clips']} clips, {_minutes(pre['train_seconds'])} ({pre['device']})"


def results_table(rows: list[dict]) -> str:
    """One line per starting point: linear probe and fine-tune devel/test accuracy (%), test Δ
    against random initialisation (points), and what each part cost."""
    table = _by_start(rows)
    base = table.get("random", {})
    lines = ["| starting point | network | pre-training (budget) | probe devel | probe test | Δ probe | "
             "fine-tune devel | fine-tune test | Δ fine-tune | probe cost | fine-tune cost |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for start, evals in table.items():
        probe, tune = evals.get("probe"), evals.get("finetune")
        first = probe or tune
        lines.append(f"| {start} | {first['network']} | {_budget(first)} | "
                     f"{_pct(probe and probe['devel_accuracy'])} | {_pct(probe and probe['test_accuracy'])} | "
                     f"{_delta(probe, base.get('probe'))} | {_pct(tune and tune['devel_accuracy'])} | "
                     f"{_pct(tune and tune['test_accuracy'])} | {_delta(tune, base.get('finetune'))} | "
                     f"{_minutes(probe and probe['eval_seconds'])} | {_minutes(tune and tune['eval_seconds'])} |")
    return "\n".join(lines)


def pretraining_table(rows: list[dict]) -> str:
    """One line per pre-training: loss at the first and last epoch, the last embedding std
    against 1/sqrt(d) (the collapse guard), mel-cache seconds."""
    lines = ["| method | epochs | loss first → last | embedding std (last) | 1/√d | collapsed? | mel cache |",
             "|---|---:|---|---:|---:|---|---:|"]
    for start, evals in _by_start(rows).items():
        pre = next((r["pretrain"] for r in evals.values() if r.get("pretrain")), None)
        if not pre:
            continue
        healthy = 1.0 / math.sqrt(pre["dim"]) if pre.get("dim") else None
        std = pre.get("embedding_std")
        collapsed = "–" if std is None or healthy is None else ("yes" if std < COLLAPSE_FRACTION * healthy else "no")
        first, last = pre["loss"]
        lines.append(f"| {start} | {pre['epochs']} | {first:.4g} → {last:.4g} | "
                     f"{'–' if std is None else f'{std:.3g}'} | {'–' if healthy is None else f'{healthy:.3g}'} | "
                     f"{collapsed} | {pre['mel_seconds']:.0f} s |")
    return "\n".join(lines)


def verdict(rows: list[dict]) -> list[str]:
    """Per evaluation: the best self-supervised method against random initialisation."""
    lines = []
    for evaluation, name in _EVALUATION_NAMES.items():
        ssl = [r for r in rows if r["evaluation"] == evaluation and r.get("method") and r.get("test_accuracy") is not None]
        base = next((r for r in rows if r["evaluation"] == evaluation and r["start"] == "random"), None)
        if not ssl or base is None:
            continue
        best = max(ssl, key=lambda r: (r["test_accuracy"], r.get("devel_accuracy") or 0.0))
        beat = sum(r["test_accuracy"] > base["test_accuracy"] for r in ssl)
        lines.append(f"- {name}: best method {best['method']} at {_pct(best['test_accuracy'])} % test accuracy vs "
                     f"{_pct(base['test_accuracy'])} % from random initialisation ({_delta(best, base)} points; "
                     f"{beat} of {len(ssl)} methods above random init) after {_budget(best)}.")
    return lines


def chart(rows: list[dict], path: Path, title: str) -> Path:
    """Grouped horizontal bars: test accuracy of each starting point's linear probe and fine-tune,
    the devel accuracy as a black tick."""
    from matplotlib.figure import Figure

    table = _by_start(rows)
    fig = Figure(figsize=(9, 1.5 + 0.55 * len(table)), layout="constrained")
    ax = fig.add_subplot()
    colours = {"probe": "tab:blue", "finetune": "tab:orange"}
    for i, (start, evals) in enumerate(reversed(list(table.items()))):
        for j, evaluation in enumerate(("finetune", "probe")):
            row, y = evals.get(evaluation), i + (j - 0.5) * 0.38
            if row is None or row.get("test_accuracy") is None:
                continue
            test = 100 * row["test_accuracy"]
            ax.barh(y, test, height=0.36, color=colours[evaluation],
                    label=_EVALUATION_NAMES[evaluation] if i == 0 else None)
            devel = row.get("devel_accuracy")
            if devel is not None:
                ax.plot([100 * devel], [y], "k|", markersize=10, markeredgewidth=2)
            ax.text(max(test, 100 * (devel or 0.0)) + 0.8, y, f"{test:.1f}", va="center", fontsize=8)
    ax.set_yticks(range(len(table)), list(reversed(table)), fontsize=9)
    ax.set_xlim(0, 105)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_xlabel("test accuracy [%] (black tick: devel accuracy)")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="lower right", fontsize=9)
    ax.set_title(title, fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def _protocol(study, manifest, rows: list[dict]) -> str:
    any_row = rows[0] if rows else {}
    dev = ", ".join(str(f) for f in any_row.get("development_folds") or [])
    from ..extractors.base import pick_device
    from .data import pretraining_manifest

    n_pre = len(pretraining_manifest(manifest, study.fold))
    h, w = study.size
    blocks = "all stages" if study.train_blocks is None else f"the last {study.train_blocks} stages"
    return (f"Test fold {study.fold} ({any_row.get('n_test', '?')} clips); development folds {dev or 'the others'}. "
            f"Self-supervised pre-training reads the audio of the development folds only ({n_pre} clips, labels "
            f"unused): fold {study.fold} is left out of the manifest pre-training is given, so its audio is never "
            f"decoded. Images: {h}×{w} px, {study.plot().colormap}, {study.plot().duration:g} s clips. Linear probe: "
            f"frozen pooled features of the default layer and the linear SVM of `deepfeat svm` (C chosen by "
            f"leave-one-development-fold-out cross-validation). Fine-tune: `deepfeat finetune` training {blocks} "
            f"and a new head for {study.finetune_epochs} epochs (MixUp, 10 % inner validation for the best epoch). "
            f"Devel = mean accuracy over the development folds, each held out in turn; test = the model trained on "
            f"all development folds. Δ = test accuracy minus random initialisation's, in points. Device: "
            f"{pick_device(study.device)}" + (f", {study.threads} threads" if study.threads else "") + ".")


def total_seconds(rows: list[dict]) -> float:
    """Every row's evaluation plus each pre-training (mel cache and epochs) once."""
    pre = {r["start"]: r["pretrain"] for r in rows if r.get("pretrain")}
    return (sum(r.get("eval_seconds") or 0.0 for r in rows)
            + sum(p["train_seconds"] + p["mel_seconds"] for p in pre.values()))


def write_study_report(results_dir: Path, study, manifest, rows: list[dict]) -> Path:
    """Write ``README.md`` and the chart into ``results_dir``; returns the README's path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    title = f"{manifest.name}: {study.backbone} from each starting point, test fold {study.fold}"
    chart(rows, results_dir / CHART, title)
    skipped = [f"- {what}: not included ({why})." for what, why in study.skipped.items()]
    text = "\n".join([
        f"# {manifest.name}: self-supervised pre-training, linear probe vs fine-tuning ({study.backbone})", "",
        _protocol(study, manifest, rows), "",
        results_table(rows), "", *skipped, *([""] if skipped else []),
        "Pre-trainings (the collapse guard: std of the L2-normalised embeddings, healthy near 1/√d; "
        f"collapsed below {COLLAPSE_FRACTION:g}/√d):", "",
        pretraining_table(rows), "",
        *verdict(rows), "",
        f"![test accuracy per starting point]({CHART})", "",
        *([f"Notes on this run (budget, what beat random init, what did not work): [{NOTES}]({NOTES}).", ""]
          if (results_dir / NOTES).is_file() else []),
        "Costs are wall time on the device named: pre-training epochs (the spectrograms are cached first: "
        "'mel cache'), feature extraction and SVM (probe), trunk-activation cache and training epochs "
        f"(fine-tune); compute, all rows: {_minutes(total_seconds(rows))}. Made by "
        f"`{study.command or 'deepfeat ssl-study'}` from the `row.json` of {len(rows)} runs.", ""])
    return write_text(results_dir / README, text)
