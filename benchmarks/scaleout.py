"""Scale-out figures, opt-in sections of the benchmark (``--sections workers,sgd_memory``).

``workers``: ``extract`` of the first clips of the dataset in this process, then sharded on a Dask
``LocalCluster`` of 1 and of 2 worker processes (``deepfeat extract --shards S --scheduler local:K``),
as clips/s of the whole call (cluster start, model loads and merge included). On a machine with
fewer cores than two workers need, expect about 1x: the section shows that sharding works and what
it costs.

``sgd_memory``: peak RSS of ``deepfeat svm STORE --svm sgd`` and ``--svm svc`` on the same large
synthetic store, each in a fresh process (this file run as a script, :func:`svm_child`), with one C
value (no grid search) and one job. ``svc`` refuses stores over its kernel's row cap; the child
lifts the cap to measure what svc would need.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from common import IMAGE_NETWORKS, MEMORY_NETWORK, Sizes, head, rate, say

SGD_KINDS = ("sgd", "svc")  #: the ``--svm`` kinds compared by :func:`bench_sgd_memory`


def bench_workers(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    """Extract ``sizes.workers_clips`` clips with :data:`~common.MEMORY_NETWORK` in this process,
    then in ``sizes.workers_shards`` shards on 1 and on 2 local Dask workers.

    Returns
    -------
    dict
        ``runs``: ``in-process``, ``local:1``, ``local:2`` → ``wall_seconds`` and ``clips_per_s``;
        ``local2_over_local1`` and ``local1_over_in_process`` (ratios of clips/s).
    """
    from deepfeat.extract import extract_features
    from deepfeat.shards import ExtractorSpec, extract_sharded

    subset = head(manifest, sizes.workers_clips)
    spec = ExtractorSpec(MEMORY_NETWORK, weights=IMAGE_NETWORKS[MEMORY_NETWORK], device=str(device))
    runs = {}
    for name in ("in-process", "local:1", "local:2"):
        out = scratch / f"workers-{name.replace(':', '')}.h5"
        say(f"workers: {name}")
        tic = time.perf_counter()
        if name == "in-process":
            extract_features(subset, spec.build(), out, overwrite=True, progress=False)
        else:
            extract_sharded(subset, spec, out, shards=sizes.workers_shards, scheduler=name, overwrite=True,
                            progress=False)
        wall = time.perf_counter() - tic
        runs[name] = {"wall_seconds": wall, "clips_per_s": rate(len(subset), wall)}
        out.unlink()
    per_s = {name: r["clips_per_s"] for name, r in runs.items()}
    return {"network": MEMORY_NETWORK, "weights": spec.weights, "clips": len(subset), "shards": sizes.workers_shards,
            "runs": runs, "local2_over_local1": per_s["local:2"] / per_s["local:1"],
            "local1_over_in_process": per_s["local:1"] / per_s["in-process"]}


def bench_sgd_memory(scratch: Path, sizes: Sizes) -> dict:
    """Peak RSS of ``deepfeat svm --svm KIND`` for each of :data:`SGD_KINDS` on a synthetic store of
    ``sizes.sgd_rows`` x ``sizes.sgd_dim`` (``sizes.sgd_classes`` classes, 5 folds).

    Returns
    -------
    dict
        The store's shape, ``runs`` (kind → :func:`svm_child`'s figures) and ``sgd_over_svc`` (ratio
        of peak RSS).
    """
    import subprocess

    from measure import write_svm_store

    store = scratch / "sgd-store.h5"
    shape = write_svm_store(store, replace(sizes, svm_rows=sizes.sgd_rows, svm_dim=sizes.sgd_dim,
                                           svm_classes=sizes.sgd_classes))
    runs = {}
    for kind in SGD_KINDS:
        say(f"sgd_memory: --svm {kind}")
        spec = {"store": str(store), "kind": kind, "out": str(scratch / f"sgd-run-{kind}")}
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), json.dumps(spec)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"deepfeat svm --svm {kind} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        runs[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**shape, "c": 1.0, "runs": runs, "sgd_over_svc": runs["sgd"]["peak_rss_mib"] / runs["svc"]["peak_rss_mib"]}


def svm_child(spec: dict) -> dict:
    """Run in the measured process: ``deepfeat svm`` (``run_svm``) on ``spec["store"]`` with
    ``--svm spec["kind"] --c-grid 1 -j 1``; its seconds, peak RSS (MiB) and test accuracy."""
    from memory import _own_peak_rss_mib

    import deepfeat.classify
    from deepfeat.classify import run_svm

    deepfeat.classify.MAX_KERNEL_ROWS = 10 ** 9  # measure what svc needs, above the cap it enforces
    tic = time.perf_counter()
    metrics = run_svm(spec["store"], fold=5, run_dir=spec["out"], kind=spec["kind"], c_grid=(1.0,), n_jobs=1)
    return {"seconds": time.perf_counter() - tic, "peak_rss_mib": _own_peak_rss_mib(),
            "test_accuracy": metrics["test_accuracy"]}


def render_section(workers: dict | None, sgd: dict | None) -> list[str]:
    """The report's README section of these figures (Markdown lines)."""
    out = ["## 11. Scale-out (opt-in sections)", ""]
    if workers:
        out += [f"`extract` of {workers['clips']} clips with {workers['network']} ({workers['weights']}): in this "
                f"process, then in {workers['shards']} shards on a Dask LocalCluster of K worker processes "
                "(wall time of the whole call: cluster start, model loads, merge).", "",
                "| run | wall s | clips/s |", "|---|---:|---:|"]
        out += [f"| {name} | {r['wall_seconds']:.1f} | {r['clips_per_s']:.2f} |" for name, r in workers["runs"].items()]
        out += ["", f"2 workers / 1 worker: **{workers['local2_over_local1']:.2f}x**; 1 worker / in process: "
                f"{workers['local1_over_in_process']:.2f}x.", ""]
    if sgd:
        out += [f"`deepfeat svm STORE --fold 5 --c-grid 1 -j 1` on a synthetic store of {sgd['rows']} x {sgd['dim']} "
                f"({sgd['classes']} classes), each kind in a fresh process (svc's row cap lifted):", "",
                "| --svm | seconds | peak RSS MiB | test accuracy |", "|---|---:|---:|---:|"]
        out += [f"| {kind} | {r['seconds']:.1f} | {r['peak_rss_mib']:,.0f} | {100 * r['test_accuracy']:.0f} % |"
                for kind, r in sgd["runs"].items()]
        out += ["", f"sgd / svc peak RSS: **{sgd['sgd_over_svc']:.2f}x**.", ""]
    return out


if __name__ == "__main__":  # the measured process of bench_sgd_memory: one JSON line of figures on stdout
    print(json.dumps(svm_child(json.loads(sys.argv[1]))))
