"""CPU threads and processes of a stage: one plan that never oversubscribes the cores.

A stage that feeds a torch network does two kinds of CPU work: the front end (decode, resample,
mel spectrogram, image) and the network. :func:`plan_threads` chooses where they run so that
together they use the cores this process may run on (:func:`available_cores`) and no more:

* below four cores, the front end runs in this process (``workers = 0``) on ``threads`` threads
  while the network waits, then the network runs on the same ``threads = cores``: the two take
  turns with every core rather than fight over them;
* from four cores up, ``workers = cores // 4`` processes prepare the next clips while the network
  runs on the ``threads = cores - workers`` others;
* on a GPU run, every core but one decodes (``workers = cores - 1``).

Features do not depend on the number of workers or where the front end runs. They depend on the
number of torch threads only where oneDNN splits a reduction by thread count (DenseNet's 1×1
convolutions, the frozen VGG16), by float32 rounding (about 1e-6); EfficientNet-Lite0 (tested) and
ResNet-50 give the same bits with 1, 2 or 3 threads. Stores record the plan (attributes ``workers``
and ``threads``).

Waiting threads: torch's OpenMP threads spin at every barrier before they sleep. On a machine
whose cores other processes also use (a lab server, a laptop, deepfeat's own workers) the
spinning takes the CPU those processes need. :func:`prefer_passive_wait`, called by ``import
deepfeat``, sets ``OMP_WAIT_POLICY=PASSIVE`` (unless it is set already) so that they sleep at
once; it works only if torch is not imported yet (:func:`passive_wait`).
"""
from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

#: below this many cores the front end runs in this process, between the network's batches
INLINE_BELOW_CORES = 4
_PASSIVE = {"effective": None}  #: whether OMP_WAIT_POLICY=PASSIVE was set before torch was imported


def prefer_passive_wait() -> None:
    """Make torch's OpenMP threads sleep instead of spin when they wait (``OMP_WAIT_POLICY=PASSIVE``),
    unless the environment already says otherwise. Effective only before torch is imported."""
    if _PASSIVE["effective"] is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        _PASSIVE["effective"] = "torch" not in sys.modules and os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE"


def passive_wait() -> bool:
    """Whether torch's OpenMP threads in this process wait passively (see :func:`prefer_passive_wait`)."""
    return bool(_PASSIVE["effective"])


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup may use (``cpu.max`` of cgroup v2, or v1's quota/period), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a container's CPU quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


@dataclass(frozen=True)
class ThreadPlan:
    """How a stage uses the CPU: ``workers`` front-end processes (0: in this process) and
    ``threads`` torch threads in this process, out of ``cores``."""

    workers: int
    threads: int
    cores: int

    def describe(self) -> str:
        """One line for logs and progress output."""
        front = "front end in this process" if self.workers == 0 else \
            f"{self.workers} front-end worker{'s' if self.workers > 1 else ''}"
        return f"{self.threads} torch thread{'s' if self.threads > 1 else ''}, {front} ({self.cores} cores)"


def _count(value: int | None, what: str) -> int | None:
    if value is not None and (not isinstance(value, int) or value < 0):
        raise ConfigError(f"--{what} must be a whole number >= 0, got {value!r}")
    return value


def plan_threads(workers: int | None = None, threads: int | None = None, *, device: str = "cpu",
                 cores: int | None = None) -> ThreadPlan:
    """The plan of a stage: front-end workers and torch threads that together fit the cores.

    Parameters
    ----------
    workers : int, optional
        Front-end worker processes (0: the front end runs in this process). Default: on CPU, 0
        below :data:`INLINE_BELOW_CORES` cores, else ``cores // 4``; on CUDA, ``cores - 1``.
    threads : int, optional
        torch threads of this process; 0 or None: the cores the workers leave (at least 1).
    device : str
        ``cpu``, ``cuda``, ``cuda:1`` ...: the device the network runs on.
    cores : int, optional
        Default :func:`available_cores`.

    Returns
    -------
    ThreadPlan
    """
    _count(workers, "workers")
    _count(threads, "threads")
    cores = cores or available_cores()
    if workers is None:
        if str(device).startswith("cuda"):
            workers = max(1, cores - 1)
        else:
            workers = 0 if cores < INLINE_BELOW_CORES else cores // 4
    return ThreadPlan(workers=workers, threads=threads or max(1, cores - workers), cores=cores)


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (``None`` or ``0``: leave torch's choice)."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
