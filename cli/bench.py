"""``deepfeat bench [--quick] [--data DATA] [--out DIR] ...`` → ``benchmarks/bench.py`` (``make bench``).

The benchmark is a script of the source checkout, not part of the installed library: this command
finds it next to the ``cli`` folder (an editable install, as ``make install`` makes) and runs it.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

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


@click.command("bench", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args):
    """Speed benchmark: front end, forward, end to end, start-up, busy machine, CPU plans, GPU, memory.

    Writes results/bench/README.md and bench.json. `deepfeat bench --help` lists its options.
    """
    sys.exit(load_benchmark().main(list(args)))
