#!/usr/bin/env python
"""The deepfeat speed benchmark: ``make bench`` (or ``python benchmarks/bench.py [--quick]``).

Every figure is measured in this one run, on one dataset, next to the figure it is compared with,
and reported as a rate (clips/s or images/s) and as a ratio:

1. front end, one process: decode + resample (:func:`deepfeat.audio.load_audio`), log-mel
   (:func:`deepfeat.spectrogram.log_mel`), and the ``fast`` renderer against the ``matplotlib``
   renderer on the same spectrograms (plus their mean absolute pixel difference);
2. CNN forward only on ready-made images: ``Extractor.embed`` as ``extract`` runs it (batch 4 on CPU,
   64 channels_last fp16 on CUDA, inference mode) and, on CPU, traced and frozen against eager;
3. ``extract_features`` end to end per network, as a fraction of its forward-only throughput;
4. the audio models (PANNs Cnn14, OpenL3, BirdNET) end to end, as clips/s and × real time;
5. ``deepfeat svm`` on a synthetic ESC-50-size store (2000 × 4096, 50 classes, 5 folds) and the
   CRNN's seconds per epoch;
6. peak memory of ``extract`` (in a fresh process) on N clips and on the same clips listed 10
   times: the main process's peak RSS, the whole process tree's PSS, USS and RSS sampled with
   psutil, and ``torch.cuda.max_memory_allocated`` on a GPU;
7. start-up: ``deepfeat --help`` and ``deepfeat extract`` of 5 clips in a fresh process, less model load;
8. Lite0 and DenseNet-121 in fresh ``deepfeat extract`` processes, quiet and beside two busy-loop
   processes, alternately: throughput, CPU time and their ratios;
9. the CPU plans (front-end workers, torch threads) side by side;
10. on CUDA: DenseNet-121 end to end in float16 with the GPU front end, float16 against float32
    features, GPU images against the CPU renderer's;
11. opt-in (``--sections workers,sgd_memory``): ``extract`` on 1 vs 2 local Dask workers, and the
    peak RSS of ``deepfeat svm --svm sgd`` vs ``svc`` on a 20,000 x 1280 synthetic store.

Writes ``OUT/README.md`` and ``OUT/bench.json`` (default ``results/bench``; ``--quick``, tiny
sizes for development: ``features/bench-quick``) and prints the machine and a table of the
targets last. The machine's load average is recorded at the start and the end: other processes
on the machine slow everything (section 8 measures how much).

This file parses the options and runs the sections; the measurements are in its sibling modules
:mod:`common` (sizes, networks, dataset, clock), :mod:`measure` (1.-5.), :mod:`memory` (6.),
:mod:`processes` (7.-10.), :mod:`scaleout` (11.) and :mod:`report` (targets, README, JSON). It is also loaded
by path (``deepfeat bench``), so it puts its own folder on ``sys.path`` before importing them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import measure  # noqa: E402 - the siblings are found through the sys.path entry above
import memory  # noqa: E402
import processes  # noqa: E402
import report  # noqa: E402
import scaleout  # noqa: E402
from common import (AUDIO_MODELS, DEFAULT_DATA, FULL, IMAGE_NETWORKS, QUICK, Sizes, elapsed,  # noqa: E402
                    head, load_average, machine_info, resolve_data, restart_clock, say)

SECTIONS = ("frontend", "image", "audio", "svm", "crnn", "memory", "startup", "contention", "plans", "gpu")
OPT_IN_SECTIONS = ("workers", "sgd_memory")  #: run only when named in --sections
#: measured with each of its sections' functions as fn(manifest, scratch, sizes, device); gpu only on CUDA
#: unless asked for by name
PROCESS_SECTIONS = {"startup": processes.bench_startup, "contention": processes.bench_contention,
                    "plans": processes.bench_plans, "gpu": processes.bench_gpu}


@dataclass
class _Run:
    """One benchmark run: what it measures on, and its results so far (as written to ``bench.json``)."""

    results: dict
    manifest: object
    scratch: Path
    sizes: Sizes
    device: object

    def section(self, name: str, fn):
        """Run one measurement ``fn()`` and time it (``results["section_seconds"]``, seconds).

        A :class:`~deepfeat.errors.DeepfeatError` (e.g. a model that cannot load here) gives
        ``{"skipped": message}``; any other exception is recorded in ``results["errors"]`` (which
        fails the run at the end) and gives None; the other measurements go on either way.
        """
        from deepfeat.errors import DeepfeatError

        say(f"{name} ...")
        tic = time.perf_counter()
        try:
            return fn()
        except DeepfeatError as e:
            say(f"{name}: skipped: {e}")
            return {"skipped": str(e)}
        except Exception:  # noqa: BLE001 - keep the other measurements; the error is reported
            self.results["errors"][name] = traceback.format_exc()
            say(f"{name}: FAILED\n{self.results['errors'][name]}")
            return None
        finally:
            self.results["section_seconds"][name] = time.perf_counter() - tic


def _run_images(run: _Run, networks: list[str], images) -> None:
    """Forward only and end to end for each image CNN of ``networks`` (front-end ``images``, or None)."""
    sizes, results = run.sizes, run.results
    if images is None:
        images = measure.bench_frontend(run.manifest, replace(sizes, frontend_repeats=1))[1]
    images = np.stack(images)
    results["forward"], results["end_to_end"] = {}, {}
    for net in networks:
        weights = IMAGE_NETWORKS[net]
        fwd = run.section(f"forward {net}", lambda: measure.bench_forward(net, weights, images, sizes, run.device))
        if fwd is not None:
            results["forward"][net] = fwd
        e2e = run.section(f"end-to-end {net}", lambda: measure.bench_extract(
            head(run.manifest, sizes.clips_for(net)), net, weights, run.scratch, run.device))
        if e2e is not None:
            if fwd is not None and "images_per_s" in fwd and "clips_per_s" in e2e:
                e2e["fraction_of_forward"] = e2e["clips_per_s"] / fwd["images_per_s"]
            results["end_to_end"][net] = e2e


def _run_sections(run: _Run, sections: set[str], networks: list[str], audio_models: list[str]) -> None:
    """Run the chosen ``sections`` in their fixed order, storing each one's figures in ``run.results``."""
    results, sizes = run.results, run.sizes
    images = None
    if "frontend" in sections:
        fe = run.section("frontend", lambda: measure.bench_frontend(run.manifest, sizes))
        if fe is not None and "skipped" not in fe:
            results["frontend"], images = fe
    if "image" in sections and networks:
        _run_images(run, networks, images)
    if "audio" in sections and audio_models:
        results["audio_models"] = {}
        for name in audio_models:
            a = run.section(f"audio {name}", lambda: measure.bench_extract(
                head(run.manifest, sizes.clips_for(name)), name, AUDIO_MODELS[name], run.scratch, run.device))
            if a is not None:
                results["audio_models"][name] = a
    if "svm" in sections:
        results["svm"] = run.section("svm", lambda: measure.bench_svm(run.scratch, sizes))
    if "crnn" in sections:
        results["crnn"] = run.section("crnn", lambda: measure.bench_crnn(run.manifest, run.scratch, sizes, run.device))
    if "memory" in sections:
        results["memory"] = run.section("memory", lambda: memory.bench_memory(run.manifest, run.scratch, sizes,
                                                                              run.device))
    for name, fn in PROCESS_SECTIONS.items():
        if name in sections:
            results[name] = run.section(name, lambda: fn(run.manifest, run.scratch, sizes, run.device))
    if "workers" in sections:
        results["workers"] = run.section("workers", lambda: scaleout.bench_workers(run.manifest, run.scratch, sizes,
                                                                                   run.device))
    if "sgd_memory" in sections:
        results["sgd_memory"] = run.section("sgd_memory", lambda: scaleout.bench_sgd_memory(run.scratch, sizes))


def run_benchmark(data: str | None, out: Path, sizes: Sizes, quick: bool, device_name: str | None,
                  networks: list[str], audio_models: list[str], sections: set[str]) -> dict:
    """Measure the chosen sections, judge the targets and write the report.

    Parameters
    ----------
    data : str or None
        Dataset folder or label CSV (None: see :func:`common.resolve_data`).
    out : Path
        Report folder: ``README.md`` and ``bench.json`` are written there.
    sizes : Sizes
        :data:`common.FULL` or :data:`common.QUICK`.
    quick : bool
        Marks the report as a quick (development) run.
    device_name : str or None
        ``cpu``, ``cuda``, ...; None: CUDA when available.
    networks, audio_models : list of str
        Keys of :data:`common.IMAGE_NETWORKS` and :data:`common.AUDIO_MODELS` to measure.
    sections : set of str
        Subset of :data:`SECTIONS`.

    Returns
    -------
    dict
        The results, as written to ``bench.json``.
    """
    import torch

    from deepfeat.extractors.base import pick_device

    restart_clock()
    device = pick_device(device_name)
    results: dict = {"quick": quick, "sizes": asdict(sizes), "machine": machine_info(device), "errors": {},
                     "section_seconds": {}}
    say(f"machine: {results['machine']['cpu_cores']} cores, torch {torch.__version__}, device {device}")
    with tempfile.TemporaryDirectory(prefix="deepfeat-bench-") as tmp:
        scratch = Path(tmp)
        manifest, source = resolve_data(data, scratch, sizes)
        results["dataset"] = {"source": source, "name": manifest.name, "clips": len(manifest)}
        _run_sections(_Run(results, manifest, scratch, sizes, device), sections, networks, audio_models)
    for key in ("svm", "crnn", "memory", *PROCESS_SECTIONS, *OPT_IN_SECTIONS):
        if results.get(key) is None or "skipped" in (results.get(key) or {}):
            results.pop(key, None)
    results["targets"] = report.targets(results)
    results["total_seconds"] = elapsed()
    load = load_average()
    if load is not None:
        results["machine"]["load_average_at_end"] = load
    report.write_report(results, out)
    return results


def parse_args(argv=None) -> argparse.Namespace:
    """The command line's options (``--help`` lists them)."""
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
    p.add_argument("--sections", default=None,
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; gpu only on CUDA), and of "
                        f"the opt-in {','.join(OPT_IN_SECTIONS)}")
    return p.parse_args(argv)


def _names(text: str, allowed, what: str) -> list[str]:
    """The comma-separated names of ``text``; :class:`~deepfeat.errors.ConfigError` for one not in ``allowed``."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        from deepfeat.errors import ConfigError

        raise ConfigError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


def _sections(args: argparse.Namespace) -> set[str]:
    """The sections asked for; by default all, the GPU section only when the run's device is CUDA."""
    if args.sections is not None:
        return set(_names(args.sections, SECTIONS + OPT_IN_SECTIONS, "section"))
    from deepfeat.extractors.base import pick_device

    return set(SECTIONS) - ({"gpu"} if pick_device(args.device).type != "cuda" else set())


def main(argv=None) -> int:
    """Run the benchmark from the command line ``argv``.

    Returns
    -------
    int
        Exit status: 0, 1 when a measurement failed, 2 for a usage or configuration error.
    """
    args = parse_args(argv)
    from deepfeat.errors import DeepfeatError

    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    sizes = QUICK if args.quick else FULL
    out = Path(args.out or ("features/bench-quick" if args.quick else "results/bench"))
    try:
        results = run_benchmark(args.data, out, sizes, args.quick, args.device,
                                _names(args.networks, IMAGE_NETWORKS, "network"),
                               _names(args.audio_models, AUDIO_MODELS, "audio model"), _sections(args))
    except DeepfeatError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    print(report.summary(results, out))
    if results["errors"]:
        print(f"\n{len(results['errors'])} measurement(s) failed: {', '.join(results['errors'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
