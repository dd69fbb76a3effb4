"""`faultwatch` console script: the stage commands dvc.yaml calls, and a few helpers.

One module per command group registers its sub-parsers next to their handlers
(`set_defaults(func=...)`); `parser()` calls them in the order `faultwatch --help` lists them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys

from faultwatch.cli import (
    config,
    data,
    deploy,
    group,
    model,
    monitor,
    notebooks,
    registry,
    report,
    retrain,
    review,
    serve,
    traffic,
)
from faultwatch.errors import FaultwatchError
from faultwatch.paths import bentoml_home, project_root

# `faultwatch --help`: what a person runs, in order (the commands one by one: their own --help)
ORDER_OF_THINGS = """\
faultwatch: a fault detector for 1-D signals, from the data to a served and watched model.

The order of things, from the project root (faultwatch and dvc are in .venv/bin):
  1. make run (or .venv/bin/dvc repro)  the pipeline: data, EDA, training, evaluation, the
                                        model in the store, its bento, reports/index.html
  2. faultwatch promote                 after a commit: the candidate against production
  3. faultwatch deploy up               production behind the router; then deploy stage
                                        VERSION, canary, switch (or rollback)
  4. faultwatch monitor                 drift and performance of what was served
  5. faultwatch retrain --from-log      the labelled production signals: a new model, gated
                                        and rolled out by canary

faultwatch report writes reports/index.html (all of it on one page); report --list lists the
files under reports/.
"""

# the command groups in the order --help lists their commands
COMMAND_GROUPS = (
    data,
    group,
    notebooks,
    model,
    registry,
    serve,
    deploy,
    traffic,
    retrain,
    monitor,
    review,
    report,
    config,
)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="faultwatch",
        description=ORDER_OF_THINGS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {importlib.metadata.version('faultwatch')}",
    )
    # COMMAND: the usage line lists no hidden alias (a parser added without help)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in COMMAND_GROUPS:
        commands.register(sub)
    return ap


def _project_environment() -> None:
    """The project's BentoML store (absolute) and offline W&B for every command and the
    processes it starts, whether or not it was started through `make`."""
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        os.environ["BENTOML_HOME"] = str(bentoml_home(project_root()))
    except FileNotFoundError:
        pass  # outside a project: BentoML's own default


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv), run the command; a FaultwatchError is one line on
    stderr and exit status 1."""
    args = parser().parse_args(argv)
    _project_environment()
    try:
        return args.func(args)
    except FaultwatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
