"""``deepfeat bench [--quick] [--data DATA] [--out DIR] ...`` → ``benchmarks/bench.py`` (``make bench``).

The benchmark is a script of the source checkout, not part of the installed library: this command
finds it next to the ``cli`` folder (an editable install, as ``make install`` makes) and runs it
with the options given here (the same as ``benchmarks/bench.py``'s own; a test keeps them equal).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from .options import LibraryDefault

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def load_benchmark():
    """The ``benchmarks/bench.py`` module of this checkout; :class:`ConfigError` when it is absent."""
    from deepfeat.errors import ConfigError

    if not SCRIPT.is_file():
        raise ConfigError(f"{SCRIPT}: not found; `deepfeat bench` runs the benchmark of a source checkout: "
                          "clone the repository, `make install` there and run `make bench`")
    if "deepfeat_benchmark" in sys.modules:
        return sys.modules["deepfeat_benchmark"]
    spec = importlib.util.spec_from_file_location("deepfeat_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _names(attribute: str) -> LibraryDefault:
    """The benchmark's default list ``attribute`` (comma-separated), read when needed."""
    return LibraryDefault(lambda: ",".join(getattr(load_benchmark(), attribute)))


@click.command("bench")
@click.option("--data", default=None, help="Dataset folder or label CSV (default: ../shared/datasets/esc10 when "
                                           "present, else synthetic demo data).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Report folder (default: results/bench; --quick: features/bench-quick).")
@click.option("--quick", is_flag=True, help="Tiny sizes: a smoke run for development, not the benchmark.")
@click.option("--device", default=None, help="cpu, cuda, ... (default: CUDA when available).")
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch in this process (default: torch's choice, one per core).")
@click.option("--networks", default=_names("IMAGE_NETWORKS"), show_default=True,
              help="Comma-separated image CNNs to measure ('' for none).")
@click.option("--audio-models", default=_names("AUDIO_MODELS"), show_default=True,
              help="Comma-separated audio models to measure ('' for none).")
@click.option("--sections", default=_names("SECTIONS"), show_default=True,
              help="Comma-separated subset of the sections to run.")
def bench(data, out, quick, device, threads, networks, audio_models, sections):
    """Speed benchmark: front end, CNN forward vs naive, end to end, audio models, svm, crnn, memory.

    Every figure is measured in this one run, side by side with what it is compared with. Writes
    OUT/README.md and OUT/bench.json; takes under 15 min on 2 CPU cores (--quick: a minute).
    """
    argv = [*(["--quick"] if quick else []), "--networks", networks, "--audio-models", audio_models,
            "--sections", sections]
    for flag, value in (("--data", data), ("--out", out), ("--device", device), ("--threads", threads)):
        if value is not None:
            argv += [flag, str(value)]
    sys.exit(load_benchmark().main(argv))
