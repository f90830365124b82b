#!/usr/bin/env python
"""The deepfeat speed benchmark: ``make bench`` (or ``python benchmarks/bench.py [--quick]``).

Every figure is measured in this one run, on one dataset, next to the figure it is compared with,
and reported as a rate (clips/s or images/s) and as a ratio:

1. front end, one process: decode + resample (:func:`deepfeat.audio.load_audio`), log-mel
   (:func:`deepfeat.spectrogram.log_mel`), and the ``fast`` renderer against the ``matplotlib``
   renderer on the same spectrograms (plus their mean absolute pixel difference);
2. CNN forward only on ready-made images: ``Extractor.embed`` (batched — batch 4 contiguous, traced and frozen on
   CPU, 64 channels_last on CUDA — inference mode) against a naive loop over the same module (batch 1, contiguous float32 tensors,
   ``torch.no_grad``);
3. ``extract_features`` end to end per network, as a fraction of its forward-only throughput;
4. the audio models (PANNs Cnn14, OpenL3, BirdNET) end to end, as clips/s and × real time;
5. ``deepfeat svm`` on a synthetic ESC-50-size store (2000 × 4096, 50 classes, 5 folds) and the
   CRNN's seconds per epoch;
6. peak memory of ``extract`` (in a fresh process) on N clips and on the same clips listed 10
   times: the main process's peak RSS, the whole process tree's PSS and RSS sampled from
   ``/proc``, and ``torch.cuda.max_memory_allocated`` on a GPU.

Writes ``OUT/README.md`` and ``OUT/bench.json`` (default ``results/bench``; ``--quick``, tiny
sizes for development: ``features/bench-quick``) and prints the machine and a table of the
targets last. The machine's load average is recorded at the start and the end: other processes
on the machine slow everything, and on a busy machine torch's threads wait on each other.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path("../shared/datasets/esc10")  #: relative to the working directory (the repository root)
#: (network, weights): Lite0 with its real ImageNet weights, the others randomly initialised (-w none).
IMAGE_NETWORKS = {"efficientnet_lite0": "imagenet", "densenet121": "none", "resnet50": "none", "vgg16": "none"}
#: audio model → weights used (random where the pretrained file is not bundled; BirdNET exists only trained)
AUDIO_MODELS = {"panns_cnn14": "none", "openl3": "none", "birdnet": None}
MEMORY_NETWORK = "efficientnet_lite0"
MEMORY_REPEAT = 10


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does (clips, images, repetitions)."""

    frontend_clips: int
    frontend_repeats: int
    forward_images: int  #: images per network for the optimised forward pass
    naive_images: int  #: images per network for the batch-1 floor
    forward_repeats: int
    e2e_clips: dict = field(default_factory=dict)  #: network → first N clips of the dataset
    e2e_clips_default: int = 80
    audio_clips: dict = field(default_factory=dict)  #: audio model → first N clips
    audio_clips_default: int = 32
    svm_rows: int = 2000
    svm_dim: int = 4096
    svm_classes: int = 50
    svm_folds: int = 5
    crnn_clips: int = 400
    crnn_epochs: int = 3  #: the median epoch time is reported (the first epoch includes warm-up)
    memory_clips: int = 100  #: clips of the 1× memory run; the 10× run lists them 10 times

    def clips_for(self, network: str) -> int:
        if network in AUDIO_MODELS:
            return self.audio_clips.get(network, self.audio_clips_default)
        return self.e2e_clips.get(network, self.e2e_clips_default)


FULL = Sizes(frontend_clips=40, frontend_repeats=3, forward_images=64, naive_images=16, forward_repeats=2,
             e2e_clips={"efficientnet_lite0": 200, "vgg16": 80}, e2e_clips_default=80,
             audio_clips={"openl3": 10}, audio_clips_default=32,
             svm_rows=2000, svm_dim=4096, svm_classes=50, svm_folds=5, crnn_clips=400, crnn_epochs=3,
             memory_clips=100)
QUICK = Sizes(frontend_clips=4, frontend_repeats=1, forward_images=4, naive_images=2, forward_repeats=1,
              e2e_clips_default=4, audio_clips_default=2, svm_rows=200, svm_dim=256, svm_classes=10, svm_folds=5,
              crnn_clips=10, crnn_epochs=1, memory_clips=2)

_T0 = time.perf_counter()


def say(message: str) -> None:
    """Progress line on stderr with the seconds since the start."""
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def best_seconds(fn, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn`` (seconds)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


# ============================================================================ machine and data

def machine_info(device) -> dict:
    import torch

    info = {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
            "cpu": _cpu_model()}
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def resolve_data(data: str | None, scratch: Path, sizes: Sizes):
    """The manifest to benchmark on: ``data``, else ESC-10 from ``../shared`` when present, else
    synthetic demo data (5 s clips at 44.1 kHz, written to ``scratch``). Returns (manifest, note)."""
    from deepfeat.datasets import load_manifest
    from deepfeat.demo import write_demo_dataset

    if data is not None:
        return load_manifest(data), str(data)
    if DEFAULT_DATA.exists():
        return load_manifest(DEFAULT_DATA), str(DEFAULT_DATA)
    needed = max(sizes.frontend_clips, sizes.crnn_clips, sizes.memory_clips, sizes.e2e_clips_default,
                 sizes.audio_clips_default, *sizes.e2e_clips.values(), *sizes.audio_clips.values())
    per_class = max(5, -(-needed // 5))
    say(f"{DEFAULT_DATA} not found: writing demo data ({per_class} clips per class, 5 s, 44.1 kHz)")
    root = write_demo_dataset(scratch / "demo-data", clips_per_class=per_class, duration=5.0, sample_rate=44100)
    return load_manifest(root), f"demo data (deepfeat.demo.write_demo_dataset, {per_class * 5} clips of 5 s)"


def head(manifest, n: int):
    """The first ``n`` clips of ``manifest`` as a manifest of their own."""
    from deepfeat.datasets import Manifest

    return Manifest(manifest.name, manifest.root, manifest.clips[:n])


def audio_seconds(manifest) -> float:
    import soundfile as sf

    return float(sum(sf.info(str(c.path)).duration for c in manifest.clips))


# ============================================================================ 1. front end

def bench_frontend(manifest, sizes: Sizes) -> tuple[dict, list[np.ndarray]]:
    """Decode, mel and both renderers on the first clips, one process. Returns (figures, images)."""
    from deepfeat.audio import load_audio
    from deepfeat.config import PlotConfig
    from deepfeat.render import render_fast, render_matplotlib, spectrogram_image
    from deepfeat.spectrogram import log_mel

    plot = PlotConfig()  # the defaults `deepfeat extract` uses
    clips = manifest.clips[:sizes.frontend_clips]
    n, reps = len(clips), sizes.frontend_repeats
    # Warm-up outside the timings: imports, the cached mel filterbank, matplotlib's font cache.
    first = log_mel(load_audio(clips[0].path, plot.mel.sample_rate)[0], plot.mel)
    render_fast(first, plot)
    render_matplotlib(first, plot)
    audio: list[np.ndarray] = []

    def decode():
        audio[:] = [load_audio(c.path, plot.mel.sample_rate)[0] for c in clips]

    t_decode = best_seconds(decode, reps)
    mels: list[np.ndarray] = []

    def mel():
        mels[:] = [log_mel(x, plot.mel) for x in audio]

    t_mel = best_seconds(mel, reps)
    images: dict[str, list[np.ndarray]] = {}

    def draw(renderer):
        images[renderer.__name__] = [renderer(db, plot) for db in mels]

    t_fast = best_seconds(lambda: draw(render_fast), reps)
    t_slow = best_seconds(lambda: draw(render_matplotlib), reps)
    fast, slow = images["render_fast"], images["render_matplotlib"]
    t_image = best_seconds(lambda: [spectrogram_image(x, plot) for x in audio], reps)
    diff = float(np.mean([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in zip(fast, slow)]))
    frontend_seconds = t_decode + t_image
    figures = {
        "clips": n, "repeats": reps, "plot": {"window_s": plot.mel.window, "hop_s": plot.mel.hop,
                                              "n_mels": plot.mel.n_mels, "size": list(plot.size),
                                              "colormap": plot.colormap, "interpolation": plot.interpolation},
        "decode_resample_clips_per_s": rate(n, t_decode),
        "mel_clips_per_s": rate(n, t_mel),
        "render_fast_clips_per_s": rate(n, t_fast),
        "render_matplotlib_clips_per_s": rate(n, t_slow),
        "fast_over_matplotlib": t_slow / t_fast,
        "mean_abs_pixel_difference": diff,  # uint8 levels (0-255), averaged over pixels, channels and clips
        "frontend_clips_per_s": rate(n, frontend_seconds),  # decode + mel + fast render: one extract worker
        "share_of_frontend": {"decode_resample": t_decode / frontend_seconds, "mel": t_mel / frontend_seconds,
                              "render_fast": t_fast / frontend_seconds},
    }
    return figures, fast


# ============================================================================ 2. forward only

def _naive_forward(model, images: np.ndarray, mean, std, device) -> None:
    """The floor: one image at a time, contiguous float32 NCHW, no inference mode."""
    import torch

    with torch.no_grad():
        for image in images:
            x = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)
            x = ((x - mean) / std).unsqueeze(0).contiguous().to(device)
            y = model(x)
            y = y["features"] if isinstance(y, dict) else y
            torch.flatten(y, 1).cpu()


def bench_forward(network: str, weights: str, images: np.ndarray, sizes: Sizes, device) -> dict:
    import torch

    from deepfeat.extractors import create_extractor

    extractor = create_extractor(network, weights=weights, device=str(device))
    extractor.load()
    batch = np.resize(images, (sizes.forward_images, *images.shape[1:]))  # repeat the dataset's images
    extractor.embed(batch[:extractor.batch_size])  # warm-up: allocator, kernels, thread pool
    t_opt = best_seconds(lambda: extractor.embed(batch), sizes.forward_repeats)
    # The same network and weights as a plain eager float32 module in the default memory format
    # (no tracing/freezing, no denormal flushing): what a straightforward loop would run.
    plain = create_extractor(network, weights=weights, device=str(device), optimize=False)
    plain.load()
    naive = plain.model.float().to(memory_format=torch.contiguous_format)
    torch.set_flush_denormal(False)
    mean = torch.tensor(extractor.spec.mean).view(3, 1, 1)
    std = torch.tensor(extractor.spec.std).view(3, 1, 1)
    few = batch[:sizes.naive_images]
    _naive_forward(naive, few[:1], mean, std, device)  # warm-up
    t_naive = best_seconds(lambda: _naive_forward(naive, few, mean, std, device), sizes.forward_repeats)
    torch.set_flush_denormal(True)  # as the optimised CPU path leaves it
    return {"weights": weights, "images": len(batch), "batch_size": extractor.batch_size,
            "images_per_s": rate(len(batch), t_opt),
            "naive_images": len(few), "naive_images_per_s": rate(len(few), t_naive),
            "speedup_over_naive": rate(len(batch), t_opt) / rate(len(few), t_naive)}


# ============================================================================ 3./4. end to end

def bench_extract(manifest, network: str, weights: str | None, scratch: Path, device) -> dict:
    """``extract_features`` on ``manifest``: pipeline clips/s (the store's own timing: first batch
    to last commit) and wall clips/s (the whole call: model load, workers, HDF5 write)."""
    import h5py

    from deepfeat.extract import default_workers, extract_features
    from deepfeat.extractors import create_extractor

    params = {"weights": weights} if weights else {}
    if network != "birdnet":
        params["device"] = str(device)
    extractor = create_extractor(network, **params)
    out = scratch / f"e2e-{network}.h5"
    tic = time.perf_counter()
    extract_features(manifest, extractor, out, overwrite=True, progress=False)
    wall = time.perf_counter() - tic
    with h5py.File(out, "r") as f:
        seconds = float(f.attrs["extract_seconds"])
        rows, dim = f["features"].shape
    seconds_audio = audio_seconds(manifest)
    out.unlink()
    n = len(manifest)
    return {"weights": extractor.weights, "clips": n, "rows": int(rows), "dim": int(dim), "workers": default_workers(),
            "pipeline_seconds": seconds, "clips_per_s": rate(n, seconds),
            "wall_seconds": wall, "wall_clips_per_s": rate(n, wall), "realtime_factor": seconds_audio / seconds}


# ============================================================================ 5. svm and crnn

def write_svm_store(path: Path, sizes: Sizes, seed: int = 0) -> dict:
    """A synthetic ESC-50-size store: ``svm_rows`` × ``svm_dim`` non-negative (post-ReLU-like)
    features, ``svm_classes`` balanced classes spread evenly over ``svm_folds`` folds; each class
    has its own mean direction, buried in unit noise (the classes overlap: the SVM must work)."""
    from deepfeat.store import StoreWriter

    rng = np.random.default_rng(seed)
    n, d, c = sizes.svm_rows, sizes.svm_dim, sizes.svm_classes
    labels = np.arange(n) % c
    folds = (np.arange(n) // c) % sizes.svm_folds + 1
    centres = rng.standard_normal((c, d)).astype(np.float32) * 0.12
    names = [f"class{k:02d}" for k in range(c)]
    writer = StoreWriter(path, {"benchmark": "synthetic", "rows": n, "dim": d, "classes": c, "seed": seed},
                         names, n, overwrite=True,
                         attrs={"network": "synthetic", "weights": "none", "dataset": "bench-synthetic"})
    for start in range(0, n, 500):
        idx = np.arange(start, min(n, start + 500))
        x = np.maximum(centres[labels[idx]] + rng.standard_normal((len(idx), d)).astype(np.float32), 0.0)
        writer.commit(x, [f"clip{i:05d}" for i in idx], labels[idx], folds[idx], clips_done=int(idx[-1]) + 1)
    writer.finish()
    return {"rows": n, "dim": d, "classes": c, "folds": sizes.svm_folds}


def bench_svm(scratch: Path, sizes: Sizes) -> dict:
    """``deepfeat svm STORE --fold 5`` as a user runs it (a fresh process: imports included)."""
    store = scratch / "svm-store.h5"
    shape = write_svm_store(store, sizes)
    command = [sys.executable, "-m", "deepfeat.cli.main", "svm", str(store), "--fold", str(sizes.svm_folds),
               "-o", str(scratch / "svm-run"), "--json"]
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise RuntimeError(f"deepfeat svm failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    metrics = json.loads(done.stdout)
    return {**shape, "command": "deepfeat svm STORE --fold 5", "wall_seconds": wall,
            "rows_per_s": rate(shape["rows"], wall), "best_C": metrics.get("best_C"),
            "test_accuracy": metrics.get("test_accuracy"), "devel_accuracy": metrics.get("devel_accuracy"),
            "protocol_seconds": (metrics.get("timings") or {}).get("total_seconds")}


def bench_crnn(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    """Mel cache of the clips, then a few CRNN epochs on all of them: seconds per epoch."""
    from deepfeat.crnn import CRNN_MEL, DEFAULT_DURATION, TrainingConfig, ensure_mel_cache, read_mels, train_crnn

    subset = head(manifest, sizes.crnn_clips)
    cache = scratch / "crnn-mels.h5"
    tic = time.perf_counter()
    ensure_mel_cache(cache, subset, CRNN_MEL, DEFAULT_DURATION, progress=False, overwrite=True)
    mel_seconds = time.perf_counter() - tic
    mels = read_mels(cache, ["original"])
    config = TrainingConfig(epochs=sizes.crnn_epochs)
    result = train_crnn(mels, subset.label_indices(), len(subset.label_names), config, device=device, progress=False)
    epochs = [h["seconds"] for h in result.history]
    per_epoch = float(np.median(epochs))
    n = len(subset)
    return {"clips": n, "duration_s": DEFAULT_DURATION, "mel_frames": int(mels.shape[-1]),
            "mel_cache_seconds": mel_seconds, "mel_cache_clips_per_s": rate(n, mel_seconds),
            "epochs": len(epochs), "epoch_seconds": epochs, "seconds_per_epoch": per_epoch,
            "train_clips_per_s": rate(n, per_epoch),
            "projected_100_epochs_minutes": 100 * per_epoch / 60.0}


# ============================================================================ 6. memory

def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from ``/proc``)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB from ``/proc/PID/smaps_rollup`` ((0, 0) if gone)."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree every ``interval`` seconds; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss_kib = self.peak_pss_kib = self.max_processes = self.samples = 0
        self.available = Path("/proc/self/smaps_rollup").exists()
        self._stop_event = threading.Event()

    def run(self):
        while self.available and not self._stop_event.is_set():
            tree = _descendants(self.pid)
            sizes = [_memory_kib(p) for p in tree]
            self.peak_rss_kib = max(self.peak_rss_kib, sum(s[0] for s in sizes))
            self.peak_pss_kib = max(self.peak_pss_kib, sum(s[1] for s in sizes))
            self.max_processes = max(self.max_processes, len(tree))
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()


def write_repeated_csv(manifest, n: int, repeat: int, folder: Path) -> Path:
    """A label CSV listing the first ``n`` clips ``repeat`` times, each time under another folder
    (symbolic links), so every row is a distinct clip id."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = manifest.clips[:n]
    links = folder / "clips"
    links.mkdir(exist_ok=True)
    names = []
    for i, clip in enumerate(clips):
        name = f"{i:05d}{clip.path.suffix}"
        if not (links / name).exists():
            (links / name).symlink_to(Path(clip.path).resolve())
        names.append(name)
    for r in range(repeat):
        if not (folder / f"r{r}").exists():
            (folder / f"r{r}").symlink_to("clips", target_is_directory=True)
    path = folder / f"labels-x{repeat}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "fold"])
        for r in range(repeat):
            writer.writerows((f"r{r}/{name}", clip.label or "", clip.fold) for name, clip in zip(names, clips))
    return path


def _own_peak_rss_mib() -> float:
    """This process's peak RSS (MiB): ``VmHWM`` where ``/proc`` has it, since ``getrusage``'s
    ``ru_maxrss`` keeps the figure of the process that forked this one across ``exec``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(spec: dict) -> dict:
    """Runs in the measured subprocess: extract ``spec["csv"]``, report this process's own peaks."""
    import torch

    from deepfeat.datasets import load_manifest
    from deepfeat.extract import extract_features
    from deepfeat.extractors import create_extractor

    manifest = load_manifest(spec["csv"])
    extractor = create_extractor(spec["network"], weights=spec["weights"], device=spec["device"])
    tic = time.perf_counter()
    extract_features(manifest, extractor, spec["out"], overwrite=True, progress=False)
    out = {"clips": len(manifest), "seconds": time.perf_counter() - tic, "main_peak_rss_mib": _own_peak_rss_mib(),
           "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if extractor.device.type == "cuda":
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(extractor.device) / 2**20
    return out


def run_memory(csv_path: Path, out: Path, device) -> dict:
    spec = {"csv": str(csv_path), "out": str(out), "network": MEMORY_NETWORK,
            "weights": IMAGE_NETWORKS[MEMORY_NETWORK], "device": str(device)}
    proc = subprocess.Popen([sys.executable, __file__, "--memory-child", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"memory run on {csv_path.name} failed ({proc.returncode}): {stderr.strip()[-500:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    if sampler.available:
        figures.update(tree_peak_rss_mib=sampler.peak_rss_kib / 1024, tree_peak_pss_mib=sampler.peak_pss_kib / 1024,
                       tree_max_processes=sampler.max_processes, tree_samples=sampler.samples)
    return figures


MEMORY_KEYS = ("main_peak_rss_mib", "worker_peak_rss_mib", "tree_peak_pss_mib", "tree_peak_rss_mib",
               "cuda_peak_allocated_mib")


def bench_memory(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    n = min(sizes.memory_clips, len(manifest))
    runs = {}
    for repeat in (1, MEMORY_REPEAT):
        csv_path = write_repeated_csv(manifest, n, repeat, scratch / "memory")
        runs[f"{repeat}x"] = run_memory(csv_path, scratch / f"memory-x{repeat}.h5", device)
    one, many = runs["1x"], runs[f"{MEMORY_REPEAT}x"]
    ratios = {key: many[key] / one[key] for key in MEMORY_KEYS if one.get(key)}
    import inspect

    from deepfeat.extract import extract_features

    batch = inspect.signature(extract_features).parameters["clips_per_batch"].default
    return {"network": MEMORY_NETWORK, "clips": n, "repeat": MEMORY_REPEAT, "batch_size": batch, "runs": runs,
            "ratio": ratios}


# ============================================================================ targets and report

def targets(results: dict) -> list[dict]:
    """The issue's targets with their measured figures: PASS/MISS (or n/a when not measured)."""
    rows = []

    def add(name, goal, measured, ok):
        rows.append({"target": name, "goal": goal, "measured": measured, "pass": ok})

    fe = results.get("frontend") or {}
    ratio = fe.get("fast_over_matplotlib")
    add("fast renderer vs matplotlib (clips/s)", ">= 10x", ratio, None if ratio is None else ratio >= 10)
    for net, fwd in (results.get("forward") or {}).items():
        speedup = fwd.get("speedup_over_naive")
        add(f"{net}: forward-only vs naive floor (images/s)", ">= 1.5x", speedup,
            None if speedup is None else speedup >= 1.5)
    for net, e2e in (results.get("end_to_end") or {}).items():
        frac = e2e.get("fraction_of_forward")
        add(f"{net}: end-to-end clips/s / forward-only images/s", ">= 85 %", frac,
            None if frac is None else frac >= 0.85)
    mem = (results.get("memory") or {}).get("ratio") or {}
    for key, label in (("main_peak_rss_mib", "main process"), ("tree_peak_pss_mib", "process tree, PSS")):
        if key in mem:
            add(f"peak memory, {MEMORY_REPEAT}x files / 1x ({label})", "<= 1.2x", mem[key], mem[key] <= 1.2)
    svm = results.get("svm") or {}
    if "wall_seconds" in svm:
        add(f"deepfeat svm on {svm['rows']} x {svm['dim']} ({svm['classes']} classes)", "< 60 s", svm["wall_seconds"],
            svm["wall_seconds"] < 60)
    return rows


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _measured(row: dict) -> str:
    value, goal = row["measured"], row["goal"]
    if value is None:
        return "n/a"
    if "%" in goal:
        return f"{100 * value:.0f} %"
    if goal.endswith("s"):
        return f"{value:.1f} s"
    return f"{value:.2f}x"


def _verdict(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def target_table(rows: list[dict]) -> str:
    lines = ["| target | goal | measured | |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['goal']} | {_measured(r)} | {_verdict(r['pass'])} |" for r in rows]
    return "\n".join(lines)


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


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
    out = ["## 2./3. Image CNNs: forward only, naive floor, end to end", "",
           "Forward only: `Extractor.embed` on ready-made uint8 images (its device's batch and memory format: "
           "4 contiguous, traced and frozen on CPU; 64 channels_last fp16 on CUDA; inference mode). "
           "Naive: the same module, one image at a time, contiguous float32, `torch.no_grad`. End to end: "
           "`extract_features` on the first clips of the dataset (pipeline: first batch to last commit; wall: the "
           "whole call with model load and HDF5 write).", "",
           "| network | weights | forward images/s | naive images/s | forward / naive | end-to-end clips/s (clips) "
           "| e2e / forward | wall clips/s | x real time |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for net, f in fwd.items():
        e = e2e.get(net) or {}
        if "skipped" in f:
            out.append(f"| {net} | skipped: {f['skipped']} | | | | | | | |")
            continue
        out.append(f"| {net} | {f['weights']} | {_fmt(f['images_per_s'])} | {_fmt(f['naive_images_per_s'])} | "
                   f"{f['speedup_over_naive']:.2f}x | {_fmt(e.get('clips_per_s'))} ({e.get('clips', 'n/a')}) | "
                   f"{_percent(e.get('fraction_of_forward'))} | {_fmt(e.get('wall_clips_per_s'))} | "
                   f"{_fmt(e.get('realtime_factor'))} |")
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
           "all its processes, sampled every 50 ms from `/proc` (PSS counts the pages the forked workers share with "
           "the main process once; RSS counts them in every process).", "",
           "| run | clips | seconds | main peak RSS MiB | worker peak RSS MiB | tree peak PSS MiB | tree peak RSS MiB "
           "| CUDA peak MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in mem["runs"].items():
        out.append(f"| {name} | {r['clips']} | {r['seconds']:.1f} | "
                   + " | ".join(_fmt(r.get(k), 0) for k in MEMORY_KEYS) + " |")
    out += ["| ratio | | | " + " | ".join(f"{mem['ratio'][k]:.2f}x" if k in mem["ratio"] else ""
                                           for k in MEMORY_KEYS) + " |", ""]
    if mem["clips"] < mem["batch_size"]:
        out += [f"The 1x run has fewer clips than one batch ({mem['batch_size']}): the 10x run embeds larger "
                "batches, which alone raises its peak. The full benchmark uses more clips.", ""]
    return out


def render_readme(results: dict) -> str:
    m, data = results["machine"], results["dataset"]
    quick = " (quick mode: tiny sizes, not the benchmark)" if results["quick"] else ""
    out = [f"# deepfeat benchmark{quick}", "",
           "Made by `make bench` (`benchmarks/bench.py`); every figure below was measured in this one run, next "
           "to the figure it is compared with. Front-end and forward-only rates are the best of the repetitions "
           "listed in `bench.json` (`sizes`); end-to-end rates are one run each.", "",
           f"- machine: {m['cpu_cores']} cores ({m['cpu']}), torch {m['torch']} ({m['torch_threads']} threads), "
           f"device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}, Python {m['python']}",
           f"- load average (1, 5, 15 min) at start {m.get('load_average_at_start', 'n/a')}, at end "
           f"{m.get('load_average_at_end', 'n/a')}; total time {results['total_seconds']:.0f} s",
           f"- dataset: {data['source']} ({data['clips']} clips, {data['name']})", "",
           "## Targets", "", target_table(results["targets"]), ""]
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
    if results.get("errors"):
        out += ["## Errors", ""] + [f"- {k}: {v.strip().splitlines()[-1]}" for k, v in results["errors"].items()] + [""]
    return "\n".join(out)


# ============================================================================ main

def run_benchmark(data: str | None, out: Path, sizes: Sizes, quick: bool, device_name: str | None,
                  networks: list[str], audio_models: list[str], sections: set[str]) -> dict:
    import torch

    from deepfeat.errors import DeepfeatError
    from deepfeat.extractors.base import pick_device

    global _T0
    _T0 = time.perf_counter()
    device = pick_device(device_name)
    results: dict = {"quick": quick, "sizes": asdict(sizes), "machine": machine_info(device), "errors": {},
                     "section_seconds": {}}
    say(f"machine: {results['machine']['cpu_cores']} cores, torch {torch.__version__}, device {device}")

    def section(name: str, fn):
        """Run one measurement; a failure is recorded (and fails the run at the end), not fatal."""
        say(f"{name} ...")
        tic = time.perf_counter()
        try:
            return fn()
        except DeepfeatError as e:
            say(f"{name}: skipped: {e}")
            return {"skipped": str(e)}
        except Exception:  # noqa: BLE001 - keep the other measurements; the error is reported
            results["errors"][name] = traceback.format_exc()
            say(f"{name}: FAILED\n{results['errors'][name]}")
            return None
        finally:
            results["section_seconds"][name] = time.perf_counter() - tic

    with tempfile.TemporaryDirectory(prefix="deepfeat-bench-") as tmp:
        scratch = Path(tmp)
        manifest, source = resolve_data(data, scratch, sizes)
        results["dataset"] = {"source": source, "name": manifest.name, "clips": len(manifest)}
        images = None
        if "frontend" in sections:
            fe = section("frontend", lambda: bench_frontend(manifest, sizes))
            if fe is not None and "skipped" not in fe:
                results["frontend"], images = fe
        if "image" in sections and networks:
            if images is None:
                images = bench_frontend(manifest, Sizes(**{**asdict(sizes), "frontend_repeats": 1}))[1]
            images = np.stack(images)
            results["forward"], results["end_to_end"] = {}, {}
            for net in networks:
                fwd = section(f"forward {net}", lambda: bench_forward(net, IMAGE_NETWORKS[net], images, sizes, device))
                if fwd is not None:
                    results["forward"][net] = fwd
                e2e = section(f"end-to-end {net}",
                              lambda: bench_extract(head(manifest, sizes.clips_for(net)), net, IMAGE_NETWORKS[net],
                                                    scratch, device))
                if e2e is not None:
                    if fwd is not None and "images_per_s" in fwd and "clips_per_s" in e2e:
                        e2e["fraction_of_forward"] = e2e["clips_per_s"] / fwd["images_per_s"]
                    results["end_to_end"][net] = e2e
        if "audio" in sections and audio_models:
            results["audio_models"] = {}
            for name in audio_models:
                a = section(f"audio {name}", lambda: bench_extract(head(manifest, sizes.clips_for(name)), name,
                                                                   AUDIO_MODELS[name], scratch, device))
                if a is not None:
                    results["audio_models"][name] = a
        if "svm" in sections:
            results["svm"] = section("svm", lambda: bench_svm(scratch, sizes))
        if "crnn" in sections:
            results["crnn"] = section("crnn", lambda: bench_crnn(manifest, scratch, sizes, device))
        if "memory" in sections:
            results["memory"] = section("memory", lambda: bench_memory(manifest, scratch, sizes, device))
    for key in ("svm", "crnn", "memory"):
        if results.get(key) is None or "skipped" in (results.get(key) or {}):
            results.pop(key, None)
    results["targets"] = targets(results)
    results["total_seconds"] = time.perf_counter() - _T0
    if hasattr(os, "getloadavg"):
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out.mkdir(parents=True, exist_ok=True)
    from deepfeat.evaluation import jsonable

    (out / "bench.json").write_text(json.dumps(jsonable(results), indent=2) + "\n")
    (out / "README.md").write_text(render_readme(results))
    return results


SECTIONS = ("frontend", "image", "audio", "svm", "crnn", "memory")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help=f"dataset folder or label CSV (default: {DEFAULT_DATA} when present, else demo data)")
    p.add_argument("--out", default=None, help="report folder (default: results/bench, --quick: features/bench-quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run for development, not the benchmark")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch in this process (default: torch's choice, one per core)")
    p.add_argument("--networks", default=",".join(IMAGE_NETWORKS),
                   help="comma-separated image CNNs to measure ('' for none)")
    p.add_argument("--audio-models", default=",".join(AUDIO_MODELS),
                   help="comma-separated audio models to measure ('' for none)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _names(text: str, allowed, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        from deepfeat.errors import ConfigError

        raise ConfigError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return 0
    from deepfeat.errors import DeepfeatError

    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    sizes = QUICK if args.quick else FULL
    out = Path(args.out or ("features/bench-quick" if args.quick else "results/bench"))
    try:
        results = run_benchmark(args.data, out, sizes, args.quick, args.device,
                                _names(args.networks, IMAGE_NETWORKS, "network"),
                                _names(args.audio_models, AUDIO_MODELS, "audio model"),
                                set(_names(args.sections, SECTIONS, "section")))
    except DeepfeatError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    m = results["machine"]
    print(f"\nmachine: {m['cpu_cores']} cores ({m['cpu']}), torch {m['torch']}, {m['torch_threads']} threads, "
          f"device {m['device']}; load average at start {m.get('load_average_at_start')}")
    print(f"dataset: {results['dataset']['source']}; total {results['total_seconds']:.0f} s; wrote {out}/README.md, "
          f"{out}/bench.json\n")
    print("\n".join(f"{_verdict(r['pass']):4s}  {r['target']}: {_measured(r)} (goal {r['goal']})"
                    for r in results["targets"]))
    if results["errors"]:
        print(f"\n{len(results['errors'])} measurement(s) failed: {', '.join(results['errors'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
