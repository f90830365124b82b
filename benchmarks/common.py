"""What the benchmark runs on and how it times: sizes, networks, dataset, machine, clock.

Shared by :mod:`measure`, :mod:`memory`, :mod:`report` and the ``bench.py`` entry. Nothing here
imports torch or deepfeat at module level, so the memory child process starts from a small image.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA = Path("../shared/datasets/esc10")  #: relative to the working directory (the repository root)
#: (network, weights): Lite0 with its real ImageNet weights, the others randomly initialised (-w none).
IMAGE_NETWORKS = {"efficientnet_lite0": "imagenet", "densenet121": "none", "resnet50": "none", "vgg16": "none"}
#: audio model → weights used (random where the pretrained file is not bundled; BirdNET exists only trained)
AUDIO_MODELS = {"panns_cnn14": "none", "openl3": "none", "birdnet": None}
MEMORY_NETWORK = "efficientnet_lite0"
MEMORY_REPEAT = 10
#: the networks measured in fresh processes, quiet and beside busy processes, and in several CPU plans
PROCESS_NETWORKS = {"efficientnet_lite0": "imagenet", "densenet121": "none"}
STARTUP_NETWORK = "efficientnet_lite0"
GPU_NETWORK = "densenet121"  #: end to end on CUDA, float16, random initialisation


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does (clips, images, repetitions)."""

    frontend_clips: int
    frontend_repeats: int
    forward_images: int  #: images per network for the forward pass (frozen and eager on CPU)
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
    workers_clips: int = 200  #: clips extracted in process and on 1 and 2 local Dask workers (opt-in)
    workers_shards: int = 4
    sgd_rows: int = 20000  #: synthetic store of --svm sgd vs svc peak memory (opt-in)
    sgd_dim: int = 1280
    sgd_classes: int = 10
    process_clips: dict = field(default_factory=dict)  #: network → clips of each fresh-process run
    process_repeats: int = 2  #: quiet/contended pairs, run alternately (A B A B); the best of each is kept
    busy_processes: int = 2  #: busy-loop processes competing with the contended runs
    startup_clips: int = 5
    startup_repeats: int = 3  #: after one warm-up run (bytecode, colour-map cache, page cache)
    plan_clips: int = 80  #: clips per CPU plan
    gpu_repeat: int = 10  #: the GPU run lists the dataset's clips this many times

    def clips_for(self, network: str) -> int:
        """Number of clips of the end-to-end run of ``network`` (an image CNN or an audio model)."""
        if network in AUDIO_MODELS:
            return self.audio_clips.get(network, self.audio_clips_default)
        return self.e2e_clips.get(network, self.e2e_clips_default)

    def most_clips(self) -> int:
        """The largest number of clips any measurement reads."""
        return max(self.frontend_clips, self.crnn_clips, self.memory_clips, self.workers_clips, self.e2e_clips_default,
                   self.audio_clips_default, self.startup_clips, self.plan_clips, *self.e2e_clips.values(),
                   *self.audio_clips.values(), *self.process_clips.values())


FULL = Sizes(frontend_clips=40, frontend_repeats=3, forward_images=64, forward_repeats=2,
             e2e_clips={"efficientnet_lite0": 200, "vgg16": 80}, e2e_clips_default=80,
             audio_clips={"openl3": 10}, audio_clips_default=32,
             svm_rows=2000, svm_dim=4096, svm_classes=50, svm_folds=5, crnn_clips=400, crnn_epochs=3,
             memory_clips=100, process_clips={"efficientnet_lite0": 200, "densenet121": 100}, process_repeats=2,
             startup_clips=5, startup_repeats=3, plan_clips=80, gpu_repeat=10)
QUICK = Sizes(frontend_clips=4, frontend_repeats=1, forward_images=4, forward_repeats=1,
              e2e_clips_default=4, audio_clips_default=2, svm_rows=200, svm_dim=256, svm_classes=10, svm_folds=5,
              crnn_clips=10, crnn_epochs=1, memory_clips=2, workers_clips=8, workers_shards=2, sgd_rows=400,
              sgd_dim=32, sgd_classes=4, process_clips={"efficientnet_lite0": 3, "densenet121": 2},
              process_repeats=1, busy_processes=1, startup_clips=2, startup_repeats=1, plan_clips=3, gpu_repeat=1)


# --- clock and timing ---------------------------------------------------------------------------
_clock = {"start": time.perf_counter()}


def restart_clock() -> None:
    """Set the zero of :func:`elapsed` (and of the progress lines) to now."""
    _clock["start"] = time.perf_counter()


def elapsed() -> float:
    """Seconds since the last :func:`restart_clock` (or the import of this module)."""
    return time.perf_counter() - _clock["start"]


def say(message: str) -> None:
    """Print a progress line on stderr, prefixed with :func:`elapsed` (seconds)."""
    print(f"[{elapsed():6.1f} s] {message}", file=sys.stderr, flush=True)


def best_seconds(fn, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn``.

    Parameters
    ----------
    fn : callable
        Called with no arguments; its result is discarded.
    repeats : int
        Number of calls (at least one is made).

    Returns
    -------
    float
        The fastest call's wall time (seconds, ``time.perf_counter``).
    """
    best = float("inf")
    for _ in range(max(1, repeats)):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def rate(count: int, seconds: float) -> float:
    """``count`` items in ``seconds`` as items per second (``inf`` for a zero time)."""
    return count / seconds if seconds > 0 else float("inf")


# --- machine -------------------------------------------------------------------------------------
def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (runnable processes), or None where the OS has none."""
    if not hasattr(os, "getloadavg"):
        return None
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device) -> dict:
    """The machine, the software and the load at the start, for the report.

    Parameters
    ----------
    device : torch.device
        Device the networks run on; a CUDA device adds the GPU's name.

    Returns
    -------
    dict
        ``cpu_cores``, ``available_cores``, ``passive_wait`` (OpenMP threads sleep when they wait),
        ``torch_threads``, ``torch``, ``python``, ``platform``, ``device``, ``cpu``,
        ``load_average_at_start`` (where the OS has one) and ``gpu`` (on CUDA).
    """
    import torch

    from deepfeat.threads import available_cores, passive_wait

    info = {"cpu_cores": os.cpu_count(), "available_cores": available_cores(), "passive_wait": passive_wait(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
            "cpu": _cpu_model()}
    load = load_average()
    if load is not None:
        info["load_average_at_start"] = load
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --- dataset -------------------------------------------------------------------------------------
def resolve_data(data: str | None, scratch: Path, sizes: Sizes):
    """The manifest to benchmark on.

    Parameters
    ----------
    data : str or None
        Dataset folder or label CSV; None: :data:`DEFAULT_DATA` when present, else synthetic demo
        data (5 s clips at 44.1 kHz, enough for ``sizes``) written to ``scratch``.
    scratch : Path
        Folder for the demo data.
    sizes : Sizes
        The run's sizes (how many demo clips are needed).

    Returns
    -------
    manifest : deepfeat.datasets.Manifest
    source : str
        Where the clips come from, for the report.
    """
    from deepfeat.datasets import load_manifest
    from deepfeat.demo import write_demo_dataset

    if data is not None:
        return load_manifest(data), str(data)
    if DEFAULT_DATA.exists():
        return load_manifest(DEFAULT_DATA), str(DEFAULT_DATA)
    per_class = max(5, -(-sizes.most_clips() // 5))
    say(f"{DEFAULT_DATA} not found: writing demo data ({per_class} clips per class, 5 s, 44.1 kHz)")
    root = write_demo_dataset(scratch / "demo-data", clips_per_class=per_class, duration=5.0, sample_rate=44100)
    return load_manifest(root), f"demo data (deepfeat.demo.write_demo_dataset, {per_class * 5} clips of 5 s)"


def head(manifest, n: int):
    """The first ``n`` clips of ``manifest`` as a manifest of their own."""
    from deepfeat.datasets import Manifest

    return Manifest(manifest.name, manifest.root, manifest.clips[:n])


def audio_seconds(manifest) -> float:
    """Total duration of the clips of ``manifest`` (seconds, from the file headers)."""
    import soundfile as sf

    return float(sum(sf.info(str(c.path)).duration for c in manifest.clips))
