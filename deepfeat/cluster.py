"""Extracting shards on a Dask cluster (:func:`deepfeat.shards.extract_sharded` with a scheduler).

In the client, :class:`DaskRunner` submits one task per shard (:func:`run_shard`) and waits for
all of them; :func:`dask_client` connects to a scheduler or starts a ``LocalCluster``. In each
worker process, the task

* loads the network once and keeps it for the next shard of the same configuration
  (:func:`worker_extractor`);
* runs one shard at a time, with as many torch threads as the worker has Dask threads
  (:func:`worker_threads`: the cores it was given), so workers sharing a node do not oversubscribe
  it; the front end runs in the worker process itself (Dask's worker processes are daemons, which
  cannot start processes of their own);
* uses its GPU when it has one (on a node with several, worker ``k`` of a ``LocalCluster`` takes
  GPU ``k mod count``).
"""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from .datasets import Manifest
from .errors import ClusterError, ConfigError, DeepfeatError
from .extract import CLIPS_PER_BATCH, extract_features, store_config
from .shards import SCHEDULER_ENV, ExtractorSpec, Shard, shard_dir

log = logging.getLogger("deepfeat.cluster")


class _Worker:
    """This process's loaded extractor (at most one) and what it has done."""

    lock = threading.RLock()  #: one shard at a time per process
    key: str | None = None
    extractor = None
    loads = 0


def worker_extractor(spec: ExtractorSpec):
    """``spec``'s extractor, loaded; built once per process and kept for the next shards of the same spec."""
    with _Worker.lock:
        if _Worker.key != spec.key():
            _Worker.key, _Worker.extractor = None, None  # release the previous network first
            extractor = spec.build(device=_worker_device(spec.device))
            extractor.load()
            _Worker.key, _Worker.extractor, _Worker.loads = spec.key(), extractor, _Worker.loads + 1
        return _Worker.extractor


def _dask_worker():
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):  # not in a Dask worker
        return None


def worker_threads() -> int | None:
    """Torch CPU threads of a shard: the thread count of the Dask worker running it (the cores it
    was given); None outside a worker (torch's own choice)."""
    worker = _dask_worker()
    return worker.state.nthreads if worker is not None else None


def _worker_device(device: str | None) -> str | None:
    """``device``; unset, on a node with several GPUs, the GPU of this worker's rank (a
    LocalCluster names its workers 0, 1, ...); else None (CUDA when available, else CPU)."""
    import torch

    worker = _dask_worker()
    count = torch.cuda.device_count()
    if device is not None or count < 2 or worker is None or not isinstance(worker.name, int):
        return device
    return f"cuda:{worker.name % count}"


def shard_config(manifest: Manifest, spec: ExtractorSpec) -> dict:
    """The configuration of the merged store (a Dask task: the worker keeps the network it loads)."""
    return store_config(manifest, worker_extractor(spec))


def run_shard(manifest: Manifest, spec: ExtractorSpec, out: str | Path, shard: Shard, *,
              clips_per_batch: int = CLIPS_PER_BATCH, on_error: str = "skip") -> dict:
    """Extract ``shard`` of ``manifest`` into its store (resuming it); the Dask task of a shard.

    Returns where it ran: ``shard`` (index), ``host``, ``pid``, ``device``, ``loads`` (networks
    this process has loaded)."""
    from .threads import torch_threads

    threads = worker_threads()
    with _Worker.lock, torch_threads(threads):
        extractor = worker_extractor(spec)
        extract_features(manifest, extractor, shard.path(out), clips_per_batch=clips_per_batch, workers=0,
                         threads=threads, on_error=on_error, progress=False, shard=shard)
    return {"shard": shard.index, "host": socket.gethostname(), "pid": os.getpid(), "device": str(extractor.device),
            "loads": _Worker.loads}


def _manifest(manifest: Manifest) -> Manifest:
    return manifest


class DaskRunner:
    """Runs one task per shard on the cluster of ``client``.

    The manifest is the result of a task of its own, which every shard task depends on: it is sent
    once, and computed again should the workers holding it die (scattered data would be lost)."""

    def __init__(self, client, manifest: Manifest, spec: ExtractorSpec):
        self.client, self.spec = client, spec
        self.manifest = client.submit(_manifest, manifest, pure=False)

    def config(self) -> dict:
        return self.client.submit(shard_config, self.manifest, self.spec, pure=False).result()

    def workers(self) -> int:
        return len(self.client.scheduler_info()["workers"])

    def run(self, out: Path, plan: list[Shard], options: dict) -> dict[int, dict]:
        """Waits for every shard, then raises the first failure (after logging each). Returns
        shard index → :func:`run_shard`'s report."""
        from distributed import wait

        run = uuid.uuid4().hex[:8]
        futures = [self.client.submit(run_shard, self.manifest, self.spec, str(out), shard, pure=False,
                                      key=f"deepfeat-shard-{shard.index + 1}-of-{shard.count}-{run}", **options)
                   for shard in plan]
        wait(futures)
        failures = [(shard, future.exception()) for shard, future in zip(plan, futures) if future.status == "error"]
        if failures:
            raise _shard_error(out, failures)
        return {shard.index: future.result() for shard, future in zip(plan, futures)}


@contextmanager
def dask_client(scheduler: str):
    """A ``distributed.Client`` for ``scheduler``; a ``local:K`` cluster is started here and closed on exit."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--scheduler needs Dask: pip install 'dask[distributed]' (make install includes it)") from None
    local = re.fullmatch(r"local(?::(\d+))?", scheduler)
    if local:
        n = int(local.group(1) or 1)
        if n < 1:
            raise ConfigError(f"--scheduler {scheduler}: a local cluster needs at least 1 worker (local:K)")
        threads = max(1, (os.cpu_count() or 1) // n)
        with LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout="30s")
    except (OSError, TimeoutError, ValueError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler {scheduler!r} ({str(e).splitlines()[0][:120]}); "
                           f"start it (dask scheduler) or correct --scheduler / {SCHEDULER_ENV}") from None
    with client:
        yield client


def _shard_error(out: Path, failures: list) -> Exception:
    """The error to raise for failed shards: a :class:`DeepfeatError` naming them, or the first
    unexpected exception as it is (a bug)."""
    for shard, error in failures:
        log.error("shard %d/%d failed: %s: %s", shard.index + 1, shard.count, type(error).__name__, error)
    shard, error = failures[0]
    names = ", ".join(str(s.index + 1) for s, _ in failures)
    resume = (f"the other shards are saved in {shard_dir(out)}; rerun the same command to extract only the unfinished "
              "ones")
    if isinstance(error, DeepfeatError):
        return type(error)(f"shard {shard.index + 1} of {shard.count}: {error} ({resume})")
    if type(error).__name__ == "KilledWorker":
        return ClusterError(f"shard(s) {names} of {shard.count}: their worker died each time they ran (killed, or out "
                            f"of memory: give workers more memory or lower --batch-size); {resume}")
    return error
