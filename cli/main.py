"""``deepfeat``: the command group. Subcommands are imported only when invoked, so
``deepfeat --help`` stays fast and a stage's heavy imports (torch, sklearn) load only for it.

Each subcommand lives in ``cli/<name>.py`` (installed as ``deepfeat.cli.<name>``) and calls
one library function; the table below is the map from command to code.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from deepfeat import __version__
from deepfeat.errors import DeepfeatError

COMMANDS = {
    "demo-data": ("deepfeat.cli.demo_data", "demo_data"),
    "plot": ("deepfeat.cli.plot", "plot"),
    "extract": ("deepfeat.cli.extract", "extract"),
    "inspect": ("deepfeat.cli.inspect", "inspect_store"),
    "export": ("deepfeat.cli.export", "export"),
    "weights": ("deepfeat.cli.weights", "weights"),
    "svm": ("deepfeat.cli.svm", "svm"),
    "crnn": ("deepfeat.cli.crnn", "crnn"),
    "finetune": ("deepfeat.cli.finetune", "finetune"),
    "pretrain": ("deepfeat.cli.pretrain", "pretrain"),
    "ssl-study": ("deepfeat.cli.ssl_study", "ssl_study"),
    "explain": ("deepfeat.cli.explain", "explain"),
    "fuse": ("deepfeat.cli.fuse", "fuse"),
    "report": ("deepfeat.cli.report", "report"),
    "paper": ("deepfeat.cli.paper", "paper"),
    "bench": ("deepfeat.cli.bench", "bench"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name, (module, _) in COMMANDS.items() if importlib.util.find_spec(module) is not None]

    def get_command(self, ctx, name):
        if name not in COMMANDS or importlib.util.find_spec(COMMANDS[name][0]) is None:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deepfeat")
@click.option("-v", "--verbose", is_flag=True, help="Log details (INFO) to stderr.")
def cli(verbose: bool):
    """deepfeat: audio features from frozen pretrained networks, classified with classical models.

    \b
    Stages: plot → extract → svm / crnn → fuse → report.
    """
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="deepfeat", standalone_mode=False)
    except DeepfeatError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Interrupted: finished batches are kept; rerun the same command to resume.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted: finished batches are kept; rerun the same command to resume.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except OSError as e:  # the file system refused (permissions, full disk, a folder where a file should be)
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"Error: {where}{e.strerror or e}; check the path, its permissions and the free space", err=True)
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
