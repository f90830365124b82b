"""Options shared by several subcommands."""
from __future__ import annotations

import click

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries (for scripts).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
fold_option = click.option("--fold", type=int, default=5, show_default=True,
                           help="Held-out test fold; the other folds form the development set.")
