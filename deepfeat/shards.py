"""Sharded extraction, in this process or on a Dask cluster: ``deepfeat extract ... --shards N``.

The manifest is split into N contiguous shards (:func:`plan_shards`), each extracted into its own
resumable store ``OUT.h5.shards/shard-<i>-of-<N>.h5`` (the journal of :mod:`deepfeat.store`),
then merged into ``OUT.h5`` in manifest order (:func:`deepfeat.merge.merge_stores`); the shard
folder is removed after a successful merge unless ``keep_shards``. A shard is made of whole
batches of ``clips_per_batch`` clips, so each batch it embeds is a batch of a single run: the
merged store holds the ids, order, features and attributes (timings aside) a single run writes.

With ``scheduler`` (``--scheduler`` or ``DEEPFEAT_SCHEDULER``), one Dask task per shard runs on a
cluster (:mod:`deepfeat.cluster`): ``local:K`` starts a ``LocalCluster`` of K worker processes on
this machine, anything else is the address of a running scheduler (e.g. one of dask-jobqueue's
``SLURMCluster``; README). Each worker process loads the network once, runs one shard at a time
with the cores it was given and uses its GPU when it has one. A worker that dies mid-shard is
replaced and Dask reruns the task, which resumes that shard's journal; a shard that fails leaves
the others' stores complete, and rerunning the same command extracts only the unfinished shards.
The client shows one progress bar: clips committed across all shards, read from their journals.
The output folder must be on a file system that the client and every worker share.
"""
from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import PlotConfig, canonical_json
from .datasets import Manifest
from .errors import ConfigError
from .extract import CLIPS_PER_BATCH, extract_features, make_extractor, store_config
from .merge import merge_stores
from .store import committed_clips, store_status

log = logging.getLogger("deepfeat.shards")

#: environment variable read by ``deepfeat extract --scheduler``
SCHEDULER_ENV = "DEEPFEAT_SCHEDULER"
_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.h5")


@dataclass(frozen=True)
class Shard:
    """Clips ``start`` to ``stop`` (manifest positions) of a run split into ``count`` shards."""

    index: int  #: 0-based
    count: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict:
        """The ``shard`` entry of the shard store's configuration."""
        return asdict(self)

    def path(self, out: str | Path) -> Path:
        """This shard's store for the run writing ``out``."""
        return shard_dir(out) / f"shard-{self.index + 1:05d}-of-{self.count:05d}.h5"

    def clips_done(self, out: str | Path) -> int:
        """Clips of this shard committed so far (all of them once its store is complete)."""
        path = self.path(out)
        return len(self) if path.exists() else max(0, committed_clips(path) - self.start)


def shard_dir(out: str | Path) -> Path:
    """The folder of the shard stores of ``out``: ``OUT.h5.shards/``."""
    return Path(str(out) + ".shards")


def plan_shards(n_clips: int, count: int, clips_per_batch: int = CLIPS_PER_BATCH) -> list[Shard]:
    """Split ``n_clips`` clips into ``count`` contiguous shards of whole batches of ``clips_per_batch``
    clips, as even as batches allow (fewer shards when there are fewer batches than ``count``).

    The same arguments always give the same shards."""
    if count < 1 or clips_per_batch < 1:
        raise ConfigError(f"--shards and --batch-size must be at least 1, got {count} and {clips_per_batch}")
    batches = -(-n_clips // clips_per_batch)
    count = max(1, min(count, batches))
    bounds = [min(n_clips, (i * batches // count) * clips_per_batch) for i in range(count + 1)]
    return [Shard(i, count, bounds[i], bounds[i + 1]) for i in range(count)]


@dataclass(frozen=True)
class ExtractorSpec:
    """The arguments of :func:`deepfeat.extract.make_extractor`: what a worker needs to build the
    network (sent instead of a loaded network), and the key of its per-process cache."""

    network: str
    weights: str | None = None
    plot: PlotConfig | None = None
    layer: str | None = None
    device: str | None = None
    precision: str = "auto"
    seed: int = 0
    size: tuple[int, int] | None = None  #: image networks: (height, width) instead of the network's input size

    def build(self, device: str | None = None):
        """The extractor (not loaded), on ``device`` if given, else on :attr:`device`."""
        return make_extractor(self.network, weights=self.weights, plot=self.plot, layer=self.layer,
                              device=device or self.device, precision=self.precision, seed=self.seed, size=self.size)

    def key(self) -> str:
        return canonical_json(asdict(self))


def extract_sharded(manifest: Manifest, spec: ExtractorSpec, out: str | Path, *, shards: int | None = None,
                    scheduler: str | None = None, clips_per_batch: int = CLIPS_PER_BATCH, workers: int | None = None,
                    threads: int | None = None, on_error: str = "skip", overwrite: bool = False,
                    keep_shards: bool = False, progress: bool = True) -> Path:
    """Extract ``manifest`` in shards and merge them into the store ``out`` (module docstring).

    Parameters
    ----------
    manifest : Manifest
    spec : ExtractorSpec
        The network; built where the shards run.
    out : str or Path
        The merged store; shards go to ``OUT.h5.shards/``.
    shards : int, optional
        Number of shards. Default: that of an unfinished run of ``out``, else the number of Dask
        workers (1 without ``scheduler``).
    scheduler : str, optional
        ``local:K`` (a LocalCluster of K worker processes) or a Dask scheduler's address; None:
        the shards run one after the other in this process, with ``workers`` front-end processes.
    clips_per_batch, workers, threads, on_error
        As :func:`deepfeat.extract.extract_features` (``workers``, ``threads``: in-process runs only;
        a Dask worker plans its own, :func:`deepfeat.cluster.worker_threads`).
    overwrite : bool
        Discard ``out``, its journal and its shards first.
    keep_shards : bool
        Keep ``OUT.h5.shards/`` after the merge.
    progress : bool
        One progress bar: clips done across all shards.

    Returns
    -------
    Path
        The merged store.
    """
    out = Path(out)
    if scheduler and (workers or threads):
        raise ConfigError("--workers/--threads set the CPU plan of a run in this process; on Dask each worker "
                          "process plans its own front end and threads: drop them")
    if overwrite:
        _discard(out)
    with _runner(scheduler, manifest, spec, workers, threads) as runner:
        if store_status(out, runner.config()) == "complete":
            log.info("%s: already complete for this configuration; nothing to do", out)
            return out
        plan = _plan(out, len(manifest), shards, clips_per_batch, runner.workers)
        with _progress_bar(plan, out, len(manifest), progress, spec.network):
            reports = runner.run(out, plan, {"clips_per_batch": clips_per_batch, "on_error": on_error})
    path = merge_stores([shard.path(out) for shard in plan], out)
    _gather_logs(plan, out, reports)
    if not keep_shards:
        shutil.rmtree(shard_dir(out))
    return path


class _InProcess:
    """Runs the shards one after the other in this process, the network loaded once."""

    def __init__(self, manifest: Manifest, spec: ExtractorSpec, workers: int | None, threads: int | None):
        self.manifest, self.frontend_workers, self.threads = manifest, workers, threads
        self.extractor = spec.build()
        self.extractor.load()

    def config(self) -> dict:
        return store_config(self.manifest, self.extractor)

    def workers(self) -> int:
        return 1

    def run(self, out: Path, plan: list[Shard], options: dict) -> dict:
        for shard in plan:
            extract_features(self.manifest, self.extractor, shard.path(out), workers=self.frontend_workers,
                             threads=self.threads, progress=False, shard=shard, **options)
        return {}


@contextmanager
def _runner(scheduler: str | None, manifest: Manifest, spec: ExtractorSpec, workers: int | None,
            threads: int | None):
    if not scheduler:
        yield _InProcess(manifest, spec, workers, threads)
        return
    from .cluster import DaskRunner, dask_client

    with dask_client(scheduler) as client:
        yield DaskRunner(client, manifest, spec)


def _discard(out: Path) -> None:
    for path in (out, Path(str(out) + ".partial"), shard_dir(out)):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _plan(out: Path, n_clips: int, shards: int | None, clips_per_batch: int, workers) -> list[Shard]:
    """The shards of this run: ``shards`` of them, else as many as an unfinished run of ``out`` has,
    else ``workers()``; a :class:`ConfigError` when an unfinished run of ``out`` has another count."""
    found = {int(m.group(2)) for p in shard_dir(out).glob("shard-*") if (m := _NAME.match(p.name))}
    count = shards if shards is not None else min(found) if found else workers()
    plan = plan_shards(n_clips, count, clips_per_batch)
    if found - {len(plan)}:
        raise ConfigError(f"{shard_dir(out)}: holds an unfinished run in {min(found)} shards; rerun with "
                          f"--shards {min(found)} to finish it, or pass --overwrite to start again")
    return plan


@contextmanager
def _progress_bar(plan: list[Shard], out: Path, total: int, enabled: bool, name: str):
    """A progress bar of the clips committed across all shards, read from their journals every 0.5 s."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    def done() -> int:
        return sum(shard.clips_done(out) for shard in plan)

    stop = threading.Event()
    with tqdm(total=total, initial=done(), unit="clip", desc=f"extract {name} ({len(plan)} shards)") as bar:
        def poll():
            while not stop.wait(0.5):
                bar.update(max(0, done() - bar.n))

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            bar.update(max(0, done() - bar.n))


def _gather_logs(plan: list[Shard], out: Path, reports: dict[int, dict]) -> None:
    """Append the shards' logs to ``OUT.h5.log``, each after a line saying where it ran (the shard
    folder may be removed next)."""
    with open(str(out) + ".log", "a", encoding="utf-8") as merged:
        for shard in plan:
            r = reports.get(shard.index)
            where = f" on {r['host']} pid {r['pid']} ({r['device']}; networks loaded in that process: {r['loads']})" \
                if r else ""
            merged.write(f"--- shard {shard.index + 1} of {shard.count} (clips {shard.start}-{shard.stop - 1}){where} ---\n")
            shard_log = Path(str(shard.path(out)) + ".log")
            if shard_log.exists():
                merged.write(shard_log.read_text(encoding="utf-8"))
        merged.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} merged {len(plan)} shards into {out}\n")
