"""What every classifier stage (``svm``, ``crnn``, ``fuse``) reports, computed and written one way.

The protocol: one fold of the dataset is the test set; the others form the development set, on
which hyper-parameters are chosen by cross-validation over those folds. A run directory
(default ``results/<dataset>/<system>/``) then holds:

===================================  ===================================================================
``metrics.json``                     devel/test accuracy, macro F1, UAR (fractions), folds, timings, ...
``report.txt``/``.json``             per-class precision, recall and F1 on the test fold
``confusion_matrix.png``             test-fold confusion matrix with class names (counts)
``confusion_matrix_normalised.png``  the same, each row in % of its true class (diagonal: recall)
``model.joblib``                     the fitted model, when the stage has one
``scores.h5``                        per-clip class scores (:class:`deepfeat.scores.Scores`)
===================================  ===================================================================

Scores are fractions in [0, 1] in files and percentages on the terminal.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .io import atomic_path, jsonable, write_json, write_text  # noqa: F401 - jsonable re-exported for the CLI
from .scores import Scores

RESULTS_DIR = Path("results")
#: Score names written as ``devel_<name>`` / ``test_<name>`` by every stage.
SCORE_NAMES = ("accuracy", "macro_f1", "uar")
_SCORE_TITLES = {"accuracy": "accuracy", "macro_f1": "macro F1", "uar": "UAR"}
#: What ``metrics.json`` says of its scores: every ``*_accuracy``, ``*_macro_f1``, ``*_uar`` is a fraction.
SCORE_UNITS = "fraction in [0, 1] (accuracy 0.8875 = 88.75 %)"


def classification_metrics(y_true, y_pred, label_names: Sequence[str]) -> dict:
    """Accuracy, macro F1 and UAR (unweighted average recall = balanced accuracy) of integer
    class predictions, as fractions; ``n`` is the number of items scored.

    Macro F1 averages over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's
    convention); UAR over the classes present in ``y_true``.
    """
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got {y_true.shape} and {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("no items to score")
    n_classes = len(label_names)
    if min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes:
        raise ValueError(f"labels must be class indices in [0, {n_classes})")
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "uar": float(recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)),
        "n": int(y_true.size),
    }


def development_folds(folds: Iterable[int], test_fold: int, source: str = "",
                      evaluation_folds: Iterable[int] = ()) -> list[int]:
    """Sorted development folds: every fold in ``folds`` (per-row fold numbers) except ``test_fold``
    and the ``evaluation_folds`` (a separate evaluation partition is only ever a test set).

    Raises :class:`ConfigError` if ``test_fold`` is absent, if any row has no fold (0), or if fewer
    than two development folds remain for cross-validation. ``source`` (a file name) prefixes messages.
    """
    where = f"{source}: " if source else ""
    values = np.unique(np.asarray(list(folds) if not isinstance(folds, np.ndarray) else folds, dtype=np.int64))
    if values.size == 0:
        raise ConfigError(f"{where}no rows, so no folds")
    if (values <= 0).any():
        raise ConfigError(f"{where}some rows have no fold (0) assigned; the fold protocol needs every clip in a "
                          "fold: use a dataset with folds (ESC-50, UrbanSound8K, or a label CSV with a fold column)")
    available = ", ".join(str(v) for v in values)
    if test_fold not in values:
        raise ConfigError(f"{where}fold {test_fold} is not in the data (folds: {available}); "
                          "pass --fold with one of them")
    excluded = {int(f) for f in evaluation_folds}
    dev = [int(v) for v in values if v != test_fold and int(v) not in excluded]
    if len(dev) < 2:
        raise ConfigError(f"{where}only {len(dev)} development fold(s) besides test fold {test_fold} "
                          f"(folds: {available}); cross-validation needs at least 2")
    return dev


def default_run_dir(dataset: str, system: str) -> Path:
    """``results/<dataset>/<system>`` (relative to the working directory)."""
    return RESULTS_DIR / _path_part(dataset or "unknown") / _path_part(system)


def _path_part(name: str) -> str:
    """``name`` made safe as one path component."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in str(name)).strip(".")
    return cleaned or "unnamed"


def plot_confusion_matrix(path: str | Path, y_true, y_pred, label_names: Sequence[str], title: str = "",
                          normalize: bool = False) -> Path:
    """Save :func:`confusion_figure` as a PNG."""
    fig = confusion_figure(y_true, y_pred, label_names, title, normalize)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return Path(path)


def confusion_figure(y_true, y_pred, label_names: Sequence[str], title: str = "", normalize: bool = False):
    """The confusion matrix (rows: true class, columns: predicted) with class names, as a
    matplotlib Figure: counts, or with ``normalize`` each row as percentages of its true class
    (the diagonal is each class's recall) on a fixed 0–100 % colour scale."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(label_names)
    side = min(4.0 + 0.45 * n, 30.0)
    fig = Figure(figsize=(side, side), layout="constrained")
    ax = fig.add_subplot()
    display = ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(range(n)), display_labels=list(label_names), ax=ax, colorbar=False,
        cmap="Blues", xticks_rotation="vertical", include_values=n <= 30,
        normalize="true" if normalize else None, values_format=".0%" if normalize else None,
        im_kw={"vmin": 0.0, "vmax": 1.0} if normalize else None)
    if normalize:
        display.ax_.set_ylabel("True label (row = 100 %)")
    if title:
        ax.set_title(title + (", row-normalised" if normalize else ""))
    return fig


def write_run(run_dir: str | Path, *, system: str, metrics: dict, scores: Scores, y_true_test, y_pred_test,
              label_names: Sequence[str], model=None) -> Path:
    """Write a run directory: ``metrics.json`` (``metrics`` plus ``system``, ``label_names`` and the
    test confusion matrix), ``report.txt``/``report.json`` (per-class report on the test fold),
    ``confusion_matrix.png``, ``model.joblib`` (when ``model`` is given) and ``scores.h5``.
    Returns ``run_dir``."""
    from sklearn.metrics import classification_report, confusion_matrix

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    labels = list(range(len(label_names)))
    y_true_test, y_pred_test = np.asarray(y_true_test), np.asarray(y_pred_test)
    report_args = dict(labels=labels, target_names=list(label_names), zero_division=0, digits=4)
    write_text(run_dir / "report.txt", f"{system}: test fold {metrics.get('test_fold', '?')}\n\n"
               + classification_report(y_true_test, y_pred_test, **report_args))
    write_json(run_dir / "report.json",
               classification_report(y_true_test, y_pred_test, output_dict=True, **report_args))
    for name, normalize in (("confusion_matrix.png", False), ("confusion_matrix_normalised.png", True)):
        plot_confusion_matrix(run_dir / name, y_true_test, y_pred_test, label_names, normalize=normalize,
                              title=f"{system} (test fold {metrics.get('test_fold', '?')})")
    if model is not None:
        save_model(run_dir, model)
    scores.write(run_dir / "scores.h5")
    write_json(run_dir / "metrics.json", {
        "system": system, "score_units": SCORE_UNITS, **metrics, "label_names": list(label_names),
        "test_confusion_matrix": confusion_matrix(y_true_test, y_pred_test, labels=labels)})
    return run_dir


def save_model(run_dir: Path, model) -> None:
    """The fitted model into ``run_dir``: its own ``save(run_dir)`` when it has one (torch models
    write a state dict and a JSON description), else ``model.joblib`` (a pickle: load it only from
    trusted sources)."""
    if hasattr(model, "save"):
        model.save(run_dir)
    else:
        import joblib

        with atomic_path(run_dir / "model.joblib") as tmp:
            joblib.dump(model, tmp)


def summarise_folds(per_fold: Sequence[dict]) -> dict:
    """Mean and (population) standard deviation over per-test-fold metrics dicts of every
    ``devel_*``/``test_*`` score: ``{"test_accuracy": mean, "test_accuracy_std": std, ...}``."""
    keys = [f"{split}_{name}" for split in ("devel", "test") for name in SCORE_NAMES]
    out = {}
    for key in keys:
        values = [m[key] for m in per_fold if m.get(key) is not None]
        if values:
            out[key], out[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
    return out


def _cell(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "-"
    std = metrics.get(f"{key}_std")
    return f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def summary_table(metrics: dict) -> str:
    """A few lines for the terminal: devel and test accuracy, macro F1 and UAR in percent
    (``mean ± std`` where ``<key>_std`` is present), then one line per test fold when
    ``metrics["per_fold"]`` holds per-fold metrics (``--cv`` runs)."""
    head = metrics.get("system", "")
    details = []
    if metrics.get("per_fold"):
        details.append(f"{len(metrics['per_fold'])}-fold CV, each fold as test")
    elif metrics.get("test_fold") is not None:
        evaluation = metrics.get("test_partition") == "evaluation"
        details.append(f"{'evaluation set, fold' if evaluation else 'test fold'} {metrics['test_fold']}")
    if metrics.get("best_C") is not None:
        details.append(f"best C {metrics['best_C']:.0e}")
    lines = [f"{head} ({', '.join(details)})" if details else head]
    rows = [("", *(_SCORE_TITLES[n] for n in SCORE_NAMES))]
    for split in ("devel", "test"):
        if any(metrics.get(f"{split}_{n}") is not None for n in SCORE_NAMES):
            rows.append((split, *(_cell(metrics, f"{split}_{n}") for n in SCORE_NAMES)))
    lines += _format_rows(rows)
    if metrics.get("per_fold"):
        fold_rows = [("test fold", "best C", "devel acc", "test acc", "test F1", "test UAR")]
        for m in metrics["per_fold"]:
            c = m.get("best_C")
            fold_rows.append((str(m.get("test_fold", "?")), "-" if c is None else f"{c:.0e}",
                              _cell(m, "devel_accuracy"), _cell(m, "test_accuracy"), _cell(m, "test_macro_f1"),
                              _cell(m, "test_uar")))
        lines += [""] + _format_rows(fold_rows)
    seconds = (metrics.get("timings") or {}).get("total_seconds")
    if seconds is not None:
        lines.append(f"time: {seconds:.1f} s")
    return "\n".join(lines)


def result_line(metrics: dict) -> str:
    """One line for scripts (``-q``): ``SYSTEM: test accuracy 88.75 % (devel 88.75 %, test fold 5) → RUN_DIR``
    (``mean ± std`` over test folds for ``--cv`` runs)."""
    folds = metrics.get("per_fold")
    where = f"{len(folds)}-fold CV" if folds else f"test fold {metrics.get('test_fold', '?')}"
    line = (f"{metrics.get('system', '')}: test accuracy {_cell(metrics, 'test_accuracy')} % "
            f"(devel {_cell(metrics, 'devel_accuracy')} %, {where})")
    return line + (f" → {metrics['run_dir']}" if metrics.get("run_dir") else "")


def _format_rows(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]
