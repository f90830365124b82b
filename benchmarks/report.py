"""The benchmark's targets and its report: ``README.md``, ``bench.json`` and the console summary.

:func:`targets` judges the measured figures against the goals (PASS, MISS or n/a when not
measured); :func:`render_readme` lays out one section per measurement; :func:`write_report` writes
both files; :func:`summary` is what ``bench.py`` prints last.
"""
from __future__ import annotations

import json
from pathlib import Path

from common import MEMORY_REPEAT
from memory import MEMORY_KEYS
from scaleout import render_section as scaleout_section


# --- targets -------------------------------------------------------------------------------------
def _target(name: str, goal: str, measured, ok) -> dict:
    """One row of the targets table: ``pass`` is None when ``measured`` is None (not measured)."""
    return {"target": name, "goal": goal, "measured": measured, "pass": None if measured is None else ok}


def targets(results: dict) -> list[dict]:
    """The targets with their measured figures.

    Parameters
    ----------
    results : dict
        The benchmark's results (as in ``bench.json``); missing sections are not judged.

    Returns
    -------
    list of dict
        One row per target: ``target`` (name), ``goal`` (e.g. ``">= 10x"``), ``measured`` (a ratio,
        a fraction or seconds; None when not measured) and ``pass`` (True, False or None).
    """
    ratio = (results.get("frontend") or {}).get("fast_over_matplotlib")
    rows = [_target("fast renderer vs matplotlib (clips/s)", ">= 10x", ratio, ratio is not None and ratio >= 10)]
    for net, e2e in (results.get("end_to_end") or {}).items():
        frac = e2e.get("fraction_of_forward")
        rows.append(_target(f"{net}: end-to-end clips/s / forward-only images/s", ">= 85 %", frac,
                            frac is not None and frac >= 0.85))
    for net, c in (results.get("contention") or {}).items():
        rows.append(_target(f"{net}: contended / quiet clips/s (whole process, {c['busy_processes']} busy processes)",
                            ">= 0.6x", c["wall_ratio"], c["wall_ratio"] >= 0.6))
    start = results.get("startup") or {}
    if "startup_seconds" in start:
        rows.append(_target(f"start-up, {start['clips']} clips {start['network']}, less model load", "<= 2 s",
                            start["startup_seconds"], start["startup_seconds"] <= 2.0))
        rows.append(_target("deepfeat --help", "<= 0.5 s", start["help_seconds"], start["help_seconds"] <= 0.5))
    gpu = results.get("gpu") or {}
    if "clips_per_s" in gpu and gpu["device"].startswith("cuda"):
        rows.append(_target(f"GPU {gpu['network']} fp16 end to end (clips/s)", ">= 1000", gpu["clips_per_s"],
                            gpu["clips_per_s"] >= 1000))
        rows.append(_target("GPU fp16 features vs fp32: largest relative error", "< 0.01",
                            gpu["fp16_max_relative_error"], gpu["fp16_max_relative_error"] < 0.01))
    mem = (results.get("memory") or {}).get("ratio") or {}
    for key, label in (("main_peak_rss_mib", "main process"), ("tree_peak_pss_mib", "process tree, PSS")):
        if key in mem:
            rows.append(_target(f"peak memory, {MEMORY_REPEAT}x files / 1x ({label})", "<= 1.2x", mem[key],
                                mem[key] <= 1.2))
    sgd = results.get("sgd_memory") or {}
    if "sgd_over_svc" in sgd:
        rows.append(_target(f"peak RSS, svm --svm sgd / svc on {sgd['rows']} x {sgd['dim']}", "<= 0.5x",
                            sgd["sgd_over_svc"], sgd["sgd_over_svc"] <= 0.5))
    svm = results.get("svm") or {}
    if "wall_seconds" in svm:
        rows.append(_target(f"deepfeat svm on {svm['rows']} x {svm['dim']} ({svm['classes']} classes)", "< 60 s",
                            svm["wall_seconds"], svm["wall_seconds"] < 60))
    return rows


def _fmt(value, digits: int = 1) -> str:
    """A figure for a table cell: ``n/a`` for None, floats with thousands separators."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _percent(value) -> str:
    """A fraction as a whole percentage (``n/a`` for None)."""
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _measured(row: dict) -> str:
    """A target's measured figure in its goal's unit: percent, seconds or a ratio."""
    value, goal = row["measured"], row["goal"]
    if value is None:
        return "n/a"
    if "%" in goal:
        return _percent(value)
    if goal.endswith(" s"):
        return f"{value:.2f} s"
    if goal.endswith("x"):
        return f"{value:.2f}x"
    return f"{value:,.3g}" if value < 1 else f"{value:,.0f}"


def _verdict(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def target_table(rows: list[dict]) -> str:
    """The targets as a Markdown table (target, goal, measured, verdict)."""
    lines = ["| target | goal | measured | |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['goal']} | {_measured(r)} | {_verdict(r['pass'])} |" for r in rows]
    return "\n".join(lines)


# --- README sections -----------------------------------------------------------------------------
def _frontend_section(fe: dict) -> list[str]:
    plot, share = fe["plot"], fe["share_of_frontend"]
    return [
        "## 1. Front end (one process, per clip)", "",
        f"{fe['clips']} clips; mel {plot['n_mels']} bands, {plot['window_s'] * 1000:.0f} ms window, "
        f"{plot['hop_s'] * 1000:.0f} ms hop; {plot['size'][0]}x{plot['size'][1]} {plot['colormap']} image.", "",
        "| stage | clips/s | share of front-end time |", "|---|---:|---:|",
        f"| decode + resample (`load_audio`) | {_fmt(fe['decode_resample_clips_per_s'])} | "
        f"{_percent(share['decode_resample'])} |",
        f"| log-mel (`log_mel`) | {_fmt(fe['mel_clips_per_s'])} | {_percent(share['mel'])} |",
        f"| render, `fast` | {_fmt(fe['render_fast_clips_per_s'])} | {_percent(share['render_fast'])} |",
        f"| render, `matplotlib` | {_fmt(fe['render_matplotlib_clips_per_s'])} | |",
        f"| whole front end (decode + mel + fast render) | {_fmt(fe['frontend_clips_per_s'])} | 100 % |", "",
        f"`fast` renders {fe['fast_over_matplotlib']:.1f}x as many clips/s as `matplotlib`; their images differ by "
        f"{fe['mean_abs_pixel_difference']:.2f} grey levels (of 255) on average.", ""]


def _image_section(fwd: dict, e2e: dict) -> list[str]:
    out = ["## 2./3. Image CNNs: forward only, frozen or eager, end to end", "",
           "Forward only: `Extractor.embed` on ready-made uint8 images as `extract` runs it (batch 4 contiguous on "
           "CPU, 64 channels_last fp16 on CUDA; inference mode); on CPU also the other way, traced + frozen or "
           "eager (the network's default is marked *). End to end: `extract_features` on the first clips of the "
           "dataset with the default CPU plan (pipeline: network loaded to last commit; wall: the whole call with "
           "model load and HDF5 write).", "",
           "| network | weights | forward images/s | frozen images/s (load s) | eager images/s (load s) "
           "| end-to-end clips/s (clips) | e2e / forward | wall clips/s | x real time | plan |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for net, f in fwd.items():
        e = e2e.get(net) or {}
        if "skipped" in f:
            out.append(f"| {net} | skipped: {f['skipped']} | | | | | | | | |")
            continue
        variants = []
        for name in ("frozen", "eager"):
            v = f.get(name)
            mark = "*" if f.get("default") == name else ""
            variants.append(f"{_fmt(v['images_per_s'])}{mark} ({v['load_seconds']:.1f})" if v else "n/a")
        plan = f"{e['workers']} workers, {e['threads']} threads" if "workers" in e else "n/a"
        out.append(f"| {net} | {f['weights']} | {_fmt(f['images_per_s'])} | {' | '.join(variants)} | "
                   f"{_fmt(e.get('clips_per_s'))} ({e.get('clips', 'n/a')}) | {_percent(e.get('fraction_of_forward'))} "
                   f"| {_fmt(e.get('wall_clips_per_s'))} | {_fmt(e.get('realtime_factor'))} | {plan} |")
    return out + [""]


def _audio_section(audio: dict) -> list[str]:
    out = ["## 4. Audio models end to end", "", "| model | weights | clips | clips/s | wall clips/s | x real time |",
           "|---|---|---:|---:|---:|---:|"]
    for name, a in audio.items():
        if "skipped" in a:
            out.append(f"| {name} | | | skipped: {a['skipped']} | | |")
        else:
            out.append(f"| {name} | {a['weights']} | {a['clips']} | {_fmt(a['clips_per_s'])} | "
                       f"{_fmt(a['wall_clips_per_s'])} | {_fmt(a['realtime_factor'])} |")
    return out + [""]


def _classifier_section(svm: dict | None, crnn: dict | None) -> list[str]:
    out = ["## 5. Classifiers", ""]
    if svm:
        out += [f"`deepfeat svm STORE --fold 5` on a synthetic store of {svm['rows']} x {svm['dim']} features "
                f"({svm['classes']} classes, {svm['folds']} folds; class means in unit noise): "
                f"**{svm['wall_seconds']:.1f} s** wall in a fresh process ({_fmt(svm['rows_per_s'])} rows/s; "
                f"protocol {_fmt(svm['protocol_seconds'])} s), best C {svm['best_C']}, "
                f"test accuracy {_percent(svm['test_accuracy'])}.", ""]
    if crnn:
        out += [f"CRNN (`esc` architecture, batch 64): {crnn['clips']} clips of {crnn['duration_s']:.0f} s "
                f"({crnn['mel_frames']} mel frames); mel cache {crnn['mel_cache_seconds']:.1f} s "
                f"({_fmt(crnn['mel_cache_clips_per_s'])} clips/s); **{crnn['seconds_per_epoch']:.1f} s per epoch** "
                f"(median of {crnn['epochs']}; {_fmt(crnn['train_clips_per_s'])} clips/s), i.e. "
                f"{crnn['projected_100_epochs_minutes']:.1f} min for 100 epochs on these clips.", ""]
    return out


def _memory_section(mem: dict) -> list[str]:
    out = [f"## 6. Peak memory of `extract` ({mem['network']}), {mem['clips']} clips and the same clips listed "
           f"{mem['repeat']}x", "",
           "Each run is `extract_features` in a fresh process reading a label CSV. Main process: its peak RSS "
           "(`VmHWM`). Workers: the largest front-end worker's peak RSS (`getrusage`). Process tree: the sum over "
           "all its processes, sampled every 50 ms with psutil (PSS counts the pages the forked workers share with "
           "the main process once; USS counts only each process's own pages; RSS counts shared pages in every "
           "process).", "",
           "| run | clips | seconds | main peak RSS MiB | worker peak RSS MiB | tree peak PSS MiB | tree peak USS MiB "
           "| tree peak RSS MiB | CUDA peak MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in mem["runs"].items():
        out.append(f"| {name} | {r['clips']} | {r['seconds']:.1f} | "
                   + " | ".join(_fmt(r.get(k), 0) for k in MEMORY_KEYS) + " |")
    out += ["| ratio | | | " + " | ".join(f"{mem['ratio'][k]:.2f}x" if k in mem["ratio"] else ""
                                           for k in MEMORY_KEYS) + " |", ""]
    if mem["clips"] < mem["batch_size"]:
        out += [f"The 1x run has fewer clips than one batch ({mem['batch_size']}): the 10x run embeds larger "
                "batches, which alone raises its peak. The full benchmark uses more clips.", ""]
    return out


def _startup_section(st: dict) -> list[str]:
    runs = ", ".join(f"{r['wall_seconds']:.2f} s (load {r['load_seconds']:.2f} s)" for r in st["runs"])
    return ["## 7. Start-up", "",
            f"`deepfeat --help`: **{st['help_seconds']:.2f} s** (best of 5 fresh processes). A process importing "
            f"what `extract` imports before its first clip: {st['imports_seconds']:.2f} s (best of 3).", "",
            f"`deepfeat extract` of {st['clips']} clips with {st['network']} ({st['weights']}) in a fresh process, "
            f"bytecode, colour-map cache and page cache warm (after one warm-up run): {runs}. Best: "
            f"**{st['startup_seconds']:.2f} s** plus {st['load_seconds']:.2f} s model load.", ""]


def _contention_section(con: dict) -> list[str]:
    out = ["## 8. Quiet and beside busy processes", "",
           "`deepfeat extract` in fresh processes (default plan), alternately alone and beside busy-loop processes "
           "(`while True: pass`, one core each); the best run of each condition. Whole process: clips / wall time "
           "of the process; pipeline: network loaded to last commit; CPU: user + system seconds of the process tree.",
           "", "| network | clips | busy | quiet clips/s (pipeline) | contended clips/s (pipeline) | contended / quiet "
           "(pipeline) | CPU s quiet → contended |", "|---|---:|---:|---:|---:|---:|---:|"]
    for net, c in con.items():
        q, b = c["quiet"], c["contended"]
        out.append(f"| {net} | {c['clips']} | {c['busy_processes']} | {_fmt(q['wall_clips_per_s'])} "
                   f"({_fmt(q['clips_per_s'])}) | {_fmt(b['wall_clips_per_s'])} ({_fmt(b['clips_per_s'])}) | "
                   f"{c['wall_ratio']:.2f}x ({c['pipeline_ratio']:.2f}x) | {q['cpu_seconds']:.1f} → "
                   f"{b['cpu_seconds']:.1f} ({c['cpu_ratio']:.2f}x) |")
    return out + [""]


def _plans_section(plans: dict) -> list[str]:
    names = list(next(iter(plans.values())))
    out = ["## 9. CPU plans", "", "`extract_features` (pipeline clips/s) with front-end workers and torch threads "
           "chosen by `deepfeat.threads.plan_threads` (default) and two others; the last oversubscribes the cores "
           "as deepfeat did before the plan.", "",
           "| network | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for net, by_plan in plans.items():
        cells = [f"{_fmt(r['clips_per_s'])} ({r['workers']} w, {r['threads']} t)" for r in by_plan.values()]
        out.append(f"| {net} | " + " | ".join(cells) + " |")
    return out + [""]


def _gpu_section(gpu: dict) -> list[str]:
    im = gpu["images"]
    return ["## 10. GPU", "",
            f"{gpu['network']} ({gpu['weights']}) on {gpu['device']}, float16, GPU front end, {gpu['workers']} "
            f"decoding workers: **{_fmt(gpu['clips_per_s'])} clips/s** over {gpu['clips']} clips "
            f"(wall {_fmt(gpu['wall_clips_per_s'])} clips/s, model load {gpu['load_seconds']:.1f} s). Float16 "
            f"against float32 features: largest relative error {gpu['fp16_max_relative_error']:.2g}. GPU images "
            f"against the CPU renderer's on {im['clips']} clips: {im['mean_levels']:.3f} levels (of 255) on average, "
            f"at most {im['max_levels']}.", ""]


def _header(results: dict) -> list[str]:
    """Title, the machine, the load, the dataset and the targets table."""
    m, data = results["machine"], results["dataset"]
    quick = " (quick mode: tiny sizes, not the benchmark)" if results["quick"] else ""
    return [f"# deepfeat benchmark{quick}", "",
            "Made by `make bench` (`benchmarks/bench.py`); every figure below was measured in this one run, next "
            "to the figure it is compared with. Front-end and forward-only rates are the best of the repetitions "
            "listed in `bench.json` (`sizes`); end-to-end rates are one run each.", "",
            f"- machine: {m['cpu_cores']} cores ({m['cpu']}), torch {m['torch']} ({m['torch_threads']} threads, "
            f"OpenMP waits {'passively' if m.get('passive_wait') else 'actively'}), device {m['device']}"
            f"{', ' + m['gpu'] if 'gpu' in m else ''}, Python {m['python']}",
            f"- load average (1, 5, 15 min) at start {m.get('load_average_at_start', 'n/a')}, at end "
            f"{m.get('load_average_at_end', 'n/a')}; total time {results['total_seconds']:.0f} s",
            f"- dataset: {data['source']} ({data['clips']} clips, {data['name']})", "",
            "## Targets", "", target_table(results["targets"]), ""]


def render_readme(results: dict) -> str:
    """The report's ``README.md`` (Markdown) from the benchmark's results: one section per measurement made."""
    out = _header(results)
    if results.get("frontend"):
        out += _frontend_section(results["frontend"])
    if results.get("forward"):
        out += _image_section(results["forward"], results.get("end_to_end") or {})
    if results.get("audio_models"):
        out += _audio_section(results["audio_models"])
    if results.get("svm") or results.get("crnn"):
        out += _classifier_section(results.get("svm"), results.get("crnn"))
    if results.get("memory"):
        out += _memory_section(results["memory"])
    for key, section in (("startup", _startup_section), ("contention", _contention_section),
                         ("plans", _plans_section), ("gpu", _gpu_section)):
        if results.get(key):
            out += section(results[key])
    if results.get("workers") or results.get("sgd_memory"):
        out += scaleout_section(results.get("workers"), results.get("sgd_memory"))
    if results.get("errors"):
        out += ["## Errors", ""] + [f"- {k}: {v.strip().splitlines()[-1]}" for k, v in results["errors"].items()] + [""]
    return "\n".join(out)


def write_report(results: dict, out: Path) -> None:
    """Write ``out/bench.json`` (every figure) and ``out/README.md`` (:func:`render_readme`); makes ``out``."""
    from deepfeat.evaluation import jsonable

    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(jsonable(results), indent=2) + "\n")
    (out / "README.md").write_text(render_readme(results))


def summary(results: dict, out: Path) -> str:
    """The console summary: the machine, the dataset, where the report is, and one line per target."""
    m = results["machine"]
    lines = [f"\nmachine: {m['cpu_cores']} cores ({m['cpu']}), torch {m['torch']}, {m['torch_threads']} threads, "
             f"device {m['device']}; load average at start {m.get('load_average_at_start')}",
             f"dataset: {results['dataset']['source']}; total {results['total_seconds']:.0f} s; wrote {out}/README.md, "
             f"{out}/bench.json\n"]
    lines += [f"{_verdict(r['pass']):4s}  {r['target']}: {_measured(r)} (goal {r['goal']})" for r in results["targets"]]
    return "\n".join(lines)
