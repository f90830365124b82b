"""Peak memory of ``extract`` in a fresh process, and of the process tree it starts.

:func:`bench_memory` runs ``extract_features`` twice in a fresh process (this file run as a script,
:func:`memory_child`): on N clips and on the same clips listed :data:`~common.MEMORY_REPEAT` times.
The child reports its own peak RSS and its workers' (the kernel's high-water marks); meanwhile a
:class:`TreeSampler` in this process sums RSS, PSS and USS over the child and all its descendants
with psutil. Units: MiB (2**20 bytes).
"""
from __future__ import annotations

import csv
import inspect
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from common import IMAGE_NETWORKS, MEMORY_NETWORK, MEMORY_REPEAT, Sizes

#: the figures of one run that :func:`bench_memory` compares between the 1x and the 10x run
MEMORY_KEYS = ("main_peak_rss_mib", "worker_peak_rss_mib", "tree_peak_pss_mib", "tree_peak_uss_mib",
               "tree_peak_rss_mib", "cuda_peak_allocated_mib")
_TREE_FIELDS = ("rss", "pss", "uss")  #: fields of ``psutil.Process.memory_full_info`` summed over the tree
MIB = 2**20


# --- the process tree, sampled from outside ------------------------------------------------------
def tree_memory(root: psutil.Process) -> tuple[int, dict[str, int]]:
    """Summed memory of ``root`` and all its descendants, now.

    Parameters
    ----------
    root : psutil.Process

    Returns
    -------
    processes : int
        Number of processes in the tree (0 once ``root`` is gone).
    totals : dict
        ``rss``, ``pss`` and ``uss`` summed over the tree (bytes); a process that ends while it is
        read counts 0.
    """
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, dict.fromkeys(_TREE_FIELDS, 0)
    totals = dict.fromkeys(_TREE_FIELDS, 0)
    for proc in tree:
        try:
            info = proc.memory_full_info()
        except psutil.Error:  # gone, a zombie, or not readable
            continue
        for key in _TREE_FIELDS:
            totals[key] += getattr(info, key)
    return len(tree), totals


class TreeSampler(threading.Thread):
    """Samples :func:`tree_memory` of process ``pid`` every ``interval`` seconds; keeps the peaks.

    Parameters
    ----------
    pid : int
        Root of the tree (its descendants are found anew at every sample).
    interval : float
        Seconds between samples.

    Attributes
    ----------
    available : bool
        Whether psutil reports PSS here (Linux); else the thread samples nothing.
    peak_bytes : dict
        Largest summed ``rss``, ``pss`` and ``uss`` seen (bytes; each peak on its own).
    max_processes, samples : int
        Largest tree seen, and number of samples taken.
    """

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_bytes = dict.fromkeys(_TREE_FIELDS, 0)
        self.max_processes = self.samples = 0
        self.available = hasattr(psutil.Process().memory_full_info(), "pss")
        self._stop_event = threading.Event()

    def run(self):
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while self.available and not self._stop_event.is_set():
            processes, totals = tree_memory(root)
            for key, value in totals.items():
                self.peak_bytes[key] = max(self.peak_bytes[key], value)
            self.max_processes = max(self.max_processes, processes)
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self):
        """Stop sampling and wait for the thread to end."""
        self._stop_event.set()
        self.join()

    def figures(self) -> dict:
        """The peaks as report figures: ``tree_peak_{rss,pss,uss}_mib`` (MiB), ``tree_max_processes``
        and ``tree_samples``."""
        peaks = {f"tree_peak_{key}_mib": value / MIB for key, value in self.peak_bytes.items()}
        return {**peaks, "tree_max_processes": self.max_processes, "tree_samples": self.samples}


# --- the measured process ------------------------------------------------------------------------
def write_repeated_csv(manifest, n: int, repeat: int, folder: Path) -> Path:
    """Write a label CSV listing the first ``n`` clips of ``manifest`` ``repeat`` times.

    Each repetition lists them under another folder of ``folder`` (symbolic links to the clips), so
    every row is a distinct clip id. Returns the CSV's path; rewriting it in place is allowed.
    """
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
    """This process's peak RSS (MiB): the kernel's ``VmHWM``, else ``getrusage``'s ``ru_maxrss``.

    psutil has no peak RSS on Linux, and ``ru_maxrss`` of a freshly started process keeps the RSS
    of the process that started it (Linux carries it across ``fork`` and ``exec``), so the
    high-water mark of ``/proc/self/status`` is read where it exists.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(spec: dict) -> dict:
    """Run in the measured process: extract ``spec["csv"]`` and report this process's own peaks.

    Parameters
    ----------
    spec : dict
        ``csv`` (label CSV), ``out`` (store path), ``network``, ``weights`` and ``device``.

    Returns
    -------
    dict
        ``clips``, ``seconds``, ``main_peak_rss_mib``, ``worker_peak_rss_mib`` (the largest
        front-end worker's, ``getrusage``) and on CUDA ``cuda_peak_allocated_mib``.
    """
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
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(extractor.device) / MIB
    return out


def run_memory(csv_path: Path, out: Path, device) -> dict:
    """Extract ``csv_path`` with :data:`~common.MEMORY_NETWORK` in a fresh process, sampling its tree.

    Returns
    -------
    dict
        :func:`memory_child`'s figures, plus :meth:`TreeSampler.figures` where PSS is available.
    """
    spec = {"csv": str(csv_path), "out": str(out), "network": MEMORY_NETWORK,
            "weights": IMAGE_NETWORKS[MEMORY_NETWORK], "device": str(device)}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"memory run on {csv_path.name} failed ({proc.returncode}): {stderr.strip()[-500:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    if sampler.available:
        figures.update(sampler.figures())
    return figures


def bench_memory(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    """Peak memory of ``extract`` on ``sizes.memory_clips`` clips and on them listed ``MEMORY_REPEAT`` times.

    Returns
    -------
    dict
        ``runs`` (``"1x"`` and ``"10x"``: :func:`run_memory`'s figures), ``ratio`` (10x over 1x for
        each of :data:`MEMORY_KEYS` measured), ``clips`` and ``batch_size`` (clips per batch of
        ``extract_features``).
    """
    n = min(sizes.memory_clips, len(manifest))
    runs = {}
    for repeat in (1, MEMORY_REPEAT):
        csv_path = write_repeated_csv(manifest, n, repeat, scratch / "memory")
        runs[f"{repeat}x"] = run_memory(csv_path, scratch / f"memory-x{repeat}.h5", device)
    one, many = runs["1x"], runs[f"{MEMORY_REPEAT}x"]
    ratios = {key: many[key] / one[key] for key in MEMORY_KEYS if one.get(key)}
    from deepfeat.extract import extract_features

    batch = inspect.signature(extract_features).parameters["clips_per_batch"].default
    return {"network": MEMORY_NETWORK, "clips": n, "repeat": MEMORY_REPEAT, "batch_size": batch, "runs": runs,
            "ratio": ratios}


if __name__ == "__main__":  # the measured process of run_memory: one JSON line of figures on stdout
    print(json.dumps(memory_child(json.loads(sys.argv[1]))))
