"""The `smarttuner` command line: parse, build a config, call one library function.

Every command is a thin shell over a function of the same name in the library. Commands live
in `train.py` (grpo, sft, pipeline), `inspect_.py` (probe, generate, eval, plot, report, tasks)
and `tools.py` (reward-model, bench); `common.py` holds the app and shared option types.
"""

from __future__ import annotations

import sys

from smarttuner.cli import inspect_, tools, train  # noqa: F401  (registers the commands)
from smarttuner.cli.common import app, console
from smarttuner.config import ConfigError


def main() -> None:
    try:
        app()
    except ConfigError as err:  # raised before a command's own handler (e.g. in callbacks)
        console.print(f"[bold red]error:[/] {err}")
        sys.exit(2)


__all__ = ["app", "main"]
