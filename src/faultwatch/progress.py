"""Progress and endings of the long commands, the same for all of them.

- Progress (what runs now: a notebook's cells, training epochs, the steps of an image build or
  of a retrain) goes to stderr, one plain line per step, readable in a terminal and in a CI
  log alike. stdout keeps what the command produced (and `--json` output stays JSON).
- A command that produced something ends with one line on stdout,
  `done: <what> in <where>; next: <command>`. Inside `dvc repro` (DVC sets DVC_STAGE for a
  stage's command) the next command is DVC's business: the line stops after <where>.

Code that runs inside a notebook cell (the training loop) writes to the cell, not to the
terminal. While the notebook runner executes a notebook in its own process it sets
FAULTWATCH_PROGRESS, and `step` writes to the process's own stderr (`sys.__stderr__`, which
the engine does not capture): the executed notebook is the same with or without progress.
`in_runner()` tells such code whether anyone is listening; in JupyterLab nobody is.
"""

from __future__ import annotations

import os
import sys

ENV = "FAULTWATCH_PROGRESS"


def in_runner() -> bool:
    """True while `faultwatch nb run` (or a command built on it) executes the notebook here."""
    return bool(os.environ.get(ENV))


def step(message: str) -> None:
    """One line of progress on stderr: the terminal's, even from inside a cell the runner runs."""
    stream = sys.__stderr__ if in_runner() and sys.__stderr__ is not None else sys.stderr
    print(message, file=stream, flush=True)


def done_line(what: str, where: str | None, next_cmd: str | None = None) -> str:
    """A command's last line: what it produced, where, and the command to run next (left out
    inside `dvc repro`, and when there is none)."""
    line = f"done: {what}" + (f" in {where}" if where else "")
    if next_cmd and not os.environ.get("DVC_STAGE"):
        line += f"; next: {next_cmd}"
    return line


def done(what: str, where: str | None, next_cmd: str | None = None) -> str:
    """Print `done_line(...)` on stdout, and return it."""
    line = done_line(what, where, next_cmd)
    print(line, flush=True)
    return line
