"""What a user's command costs as a whole: start-up, other processes on the cores, the CPU plan, the GPU.

* :func:`bench_startup`: ``deepfeat --help``, and ``deepfeat extract`` on a few clips in a fresh
  process, less its model load (the store's ``load_seconds``);
* :func:`bench_contention`: ``deepfeat extract`` in fresh processes, alternately on a quiet
  machine and beside busy-loop processes (:func:`busy_loops`): throughput, CPU time, their ratios;
* :func:`bench_plans`: ``extract_features`` with several front-end worker / torch thread plans;
* :func:`bench_gpu`: ``extract_features`` on the run's device with the device front end, float16
  against float32 features, and the device front end's images against the CPU renderer's.

Rates are clips/s; times seconds. Each fresh process reads a label CSV of the dataset's first clips
(:func:`memory.write_repeated_csv`).
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common import GPU_NETWORK, PROCESS_NETWORKS, STARTUP_NETWORK, Sizes, best_seconds, head, rate
from memory import write_repeated_csv


def _deepfeat() -> list[str]:
    """The ``deepfeat`` command of this environment (its console script, else ``python -m``)."""
    script = Path(sys.executable).with_name("deepfeat")
    return [str(script)] if script.exists() else [sys.executable, "-m", "deepfeat.cli.main"]


@contextmanager
def busy_loops(n: int):
    """``n`` processes that spin on a core each (``while True: pass``) for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them reach their loop
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def fresh_extract(csv: Path, out: Path, network: str, weights: str, device, *args: str) -> dict:
    """``deepfeat extract CSV -n NETWORK -w WEIGHTS`` in a fresh process (extra ``args`` appended).

    Returns
    -------
    dict
        ``wall_seconds`` (the whole process), ``cpu_seconds`` (its user + system time, workers
        included), the store's ``load_seconds`` (model load) and ``pipeline_seconds`` (network
        loaded to last commit), ``clips``, ``wall_clips_per_s``, ``clips_per_s`` and the plan
        (``workers``, ``threads``).
    """
    from deepfeat.store import read_store

    command = [*_deepfeat(), "extract", str(csv), "-n", network, "-w", weights, "-o", str(out), "--device",
               str(device), "--overwrite", "-q", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[-12:])} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    attrs = read_store(out).attrs
    n = int(attrs["n_clips"])
    out.unlink()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"clips": n, "wall_seconds": wall, "cpu_seconds": cpu, "load_seconds": float(attrs["load_seconds"]),
            "pipeline_seconds": float(attrs["extract_seconds"]), "wall_clips_per_s": rate(n, wall),
            "clips_per_s": rate(n, float(attrs["extract_seconds"])), "workers": int(attrs["workers"]),
            "threads": int(attrs["threads"])}


def bench_startup(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    """``deepfeat --help`` (best of 5) and ``deepfeat extract`` of ``sizes.startup_clips`` clips with
    :data:`~common.STARTUP_NETWORK` in fresh processes, after one warm-up run.

    Returns
    -------
    dict
        ``help_seconds``, ``imports_seconds`` (a process importing what ``extract`` imports before
        its first clip, best of 3), ``runs`` (each :func:`fresh_extract`'s figures), and of the
        best run ``wall_seconds``, ``load_seconds`` and ``startup_seconds`` (wall less model load).
    """
    help_seconds = best_seconds(lambda: subprocess.run([*_deepfeat(), "--help"], capture_output=True, check=True), 5)
    imports = "import deepfeat.cli.main, deepfeat.extract, deepfeat.datasets, deepfeat.store, deepfeat.render"
    imports_seconds = best_seconds(lambda: subprocess.run([sys.executable, "-c", imports], check=True), 3)
    csv = write_repeated_csv(manifest, min(sizes.startup_clips, len(manifest)), 1, scratch / "startup")
    weights = PROCESS_NETWORKS.get(STARTUP_NETWORK, "imagenet")
    runs = [fresh_extract(csv, scratch / "startup.h5", STARTUP_NETWORK, weights, device)
            for _ in range(1 + sizes.startup_repeats)][1:]
    best = min(runs, key=lambda r: r["wall_seconds"] - r["load_seconds"])
    return {"network": STARTUP_NETWORK, "weights": weights, "clips": best["clips"], "help_seconds": help_seconds,
            "imports_seconds": imports_seconds, "runs": runs, "wall_seconds": best["wall_seconds"],
            "load_seconds": best["load_seconds"], "startup_seconds": best["wall_seconds"] - best["load_seconds"]}


def bench_contention(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    """Each of :data:`~common.PROCESS_NETWORKS` in fresh ``deepfeat extract`` processes, quiet and
    beside ``sizes.busy_processes`` busy loops, alternately (``sizes.process_repeats`` pairs).

    Returns
    -------
    dict
        Per network: ``clips``, ``busy_processes``, ``runs`` (``quiet`` and ``contended`` lists of
        :func:`fresh_extract`'s figures), the best run of each (``quiet``, ``contended``) and their
        ratios: ``wall_ratio`` (contended / quiet whole-process clips/s), ``pipeline_ratio`` and
        ``cpu_ratio`` (contended / quiet CPU seconds: near 1 when no thread spins while it waits).
    """
    out = {}
    for network, weights in PROCESS_NETWORKS.items():
        n = min(sizes.process_clips.get(network, sizes.plan_clips), len(manifest))
        csv = write_repeated_csv(manifest, n, 1, scratch / f"contention-{network}")
        runs = {"quiet": [], "contended": []}
        for _ in range(sizes.process_repeats):
            runs["quiet"].append(fresh_extract(csv, scratch / "contention.h5", network, weights, device))
            with busy_loops(sizes.busy_processes):
                runs["contended"].append(fresh_extract(csv, scratch / "contention.h5", network, weights, device))
        best = {k: max(v, key=lambda r: r["wall_clips_per_s"]) for k, v in runs.items()}
        quiet, contended = best["quiet"], best["contended"]
        out[network] = {"weights": weights, "clips": n, "busy_processes": sizes.busy_processes, "runs": runs,
                        "quiet": quiet, "contended": contended,
                        "wall_ratio": contended["wall_clips_per_s"] / quiet["wall_clips_per_s"],
                        "pipeline_ratio": contended["clips_per_s"] / quiet["clips_per_s"],
                        "cpu_ratio": contended["cpu_seconds"] / quiet["cpu_seconds"]}
    return out


def plans(cores: int) -> dict[str, tuple[int | None, int | None]]:
    """The CPU plans compared: name → (workers, threads); None: the default's choice."""
    return {"default": (None, None), "1 worker": (1, None),
            f"{cores} workers + {cores} threads": (cores, cores)}  # the plan before deepfeat.threads


def bench_plans(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    """``extract_features`` of the first ``sizes.plan_clips`` clips with each of :func:`plans`, per
    network of :data:`~common.PROCESS_NETWORKS` (one loaded extractor per network, reused).

    Returns
    -------
    dict
        Per network, per plan: ``workers``, ``threads``, ``clips_per_s`` (network loaded to last commit).
    """
    from deepfeat.extract import extract_features
    from deepfeat.extractors import create_extractor
    from deepfeat.store import read_store
    from deepfeat.threads import available_cores

    subset = head(manifest, sizes.plan_clips)
    out = {}
    for network, weights in PROCESS_NETWORKS.items():
        extractor = create_extractor(network, weights=weights, device=str(device))
        out[network] = {}
        for name, (workers, threads) in plans(available_cores()).items():
            path = extract_features(subset, extractor, scratch / "plan.h5", workers=workers, threads=threads,
                                    overwrite=True, progress=False)
            attrs = read_store(path).attrs
            out[network][name] = {"workers": int(attrs["workers"]), "threads": int(attrs["threads"]),
                                  "clips_per_s": rate(len(subset), float(attrs["extract_seconds"]))}
            path.unlink()
    return out


def _image_difference(manifest, clips: int, device) -> dict:
    """The device front end's images against the CPU renderer's on the first ``clips`` clips (levels of 255)."""
    import torch

    from deepfeat.audio import load_audio
    from deepfeat.config import PlotConfig
    from deepfeat.render import spectrogram_image
    from deepfeat.torch_frontend import images

    plot = PlotConfig()
    audio = [load_audio(c.path, plot.mel.sample_rate)[0] for c in manifest.clips[:clips]]
    diffs = []
    for x in audio:
        drawn = images(torch.from_numpy(x[None]).to(device), plot)[0].cpu().numpy()
        diffs.append(np.abs(drawn.astype(np.int16) - spectrogram_image(x, plot).astype(np.int16)))
    return {"clips": len(audio), "mean_levels": float(np.mean([d.mean() for d in diffs])),
            "max_levels": int(max(d.max() for d in diffs))}


def bench_gpu(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    """:data:`~common.GPU_NETWORK` end to end on ``device`` with the device front end (float16 on
    CUDA), on the dataset's clips listed ``sizes.gpu_repeat`` times; float16 against float32
    features on 64 clips; the device front end's images against the CPU renderer's.

    Returns
    -------
    dict
        ``clips``, ``clips_per_s`` (network loaded to last commit), ``wall_clips_per_s``, the plan,
        ``fp16_max_relative_error`` (largest ``|f16 - f32| / |f32|`` over rows) and ``images``
        (:func:`_image_difference`).
    """
    from deepfeat.datasets import load_manifest
    from deepfeat.extract import extract_features
    from deepfeat.extractors import create_extractor
    from deepfeat.store import read_store

    weights = PROCESS_NETWORKS.get(GPU_NETWORK, "none")
    csv = write_repeated_csv(manifest, len(manifest), sizes.gpu_repeat, scratch / "gpu")
    many = load_manifest(csv)
    make = lambda precision: create_extractor(GPU_NETWORK, weights=weights, device=str(device),  # noqa: E731
                                              precision=precision, device_frontend=True)
    tic = time.perf_counter()
    path = extract_features(many, make("auto"), scratch / "gpu.h5", overwrite=True, progress=False)
    wall = time.perf_counter() - tic
    attrs = read_store(path).attrs
    few = head(manifest, min(64, len(manifest)))
    features = {}
    for precision in ("fp16", "fp32"):
        p = extract_features(few, make(precision), scratch / f"gpu-{precision}.h5", overwrite=True, progress=False)
        features[precision] = read_store(p).features
    f16, f32 = features["fp16"], features["fp32"]
    rel = np.linalg.norm(f16 - f32, axis=1) / np.maximum(np.linalg.norm(f32, axis=1), 1e-12)
    return {"network": GPU_NETWORK, "weights": weights, "device": str(device), "clips": len(many),
            "clips_per_s": rate(len(many), float(attrs["extract_seconds"])), "wall_clips_per_s": rate(len(many), wall),
            "load_seconds": float(attrs["load_seconds"]), "workers": int(attrs["workers"]),
            "threads": int(attrs["threads"]), "fp16_max_relative_error": float(rel.max()),
            "images": _image_difference(manifest, min(16, len(manifest)), device), "cpu_count": os.cpu_count()}
