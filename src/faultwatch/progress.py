"""Progress and endings of the long commands, the same for all of them.

- Progress (what runs now: a notebook's cells, training epochs, the steps of an image build or
  of a retrain) goes to stderr, one plain line per step, readable in a terminal and in a CI
  log alike. stdout keeps what the command produced (and `--json` output stays JSON).
- A command that produced something ends with one line on stdout,
  `done: <what> in <where>; next: <command>`. Inside `dvc repro` (DVC sets DVC_STAGE for a
  stage's command) the next command is DVC's business: the line stops after <where>.
- The next command is one a person can paste: a tool of the project's venv (dvc, faultwatch,
  jupyter) that their shell's PATH does not find as the same file is named by its path,
  `.venv/bin/dvc` from the project root (`pasteable`). Under make (`make run`) the PATH is the
  Makefile's, which puts the venv first, not the shell's: there the path is always given.

Code that runs inside a notebook cell (the training loop) writes to the cell, not to the
terminal. While the notebook runner executes a notebook in its own process it sets
FAULTWATCH_PROGRESS, and `step` writes to the process's own stderr (`sys.__stderr__`, which
the engine does not capture): the executed notebook is the same with or without progress.
`in_runner()` tells such code whether anyone is listening; in JupyterLab nobody is.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from faultwatch import settings

ENV = "FAULTWATCH_PROGRESS"
# the venv's tools that hints name; a word so named is a command where a space follows it
# (`faultwatch deploy status`), not in a name (`faultwatch-base`, `faultwatch:v0.0.1`)
VENV_TOOLS = ("dvc", "faultwatch", "jupyter")
# set by make in its recipes' environment: their PATH is the Makefile's, not the person's
UNDER_MAKE = "MAKELEVEL"
_TOOL_WORD = re.compile(r"(?<![\w./:-])(" + "|".join(VENV_TOOLS) + r")(?= )")


def in_runner() -> bool:
    """True while `faultwatch nb run` (or a command built on it) executes the notebook here."""
    return settings.get(ENV)


def step(message: str) -> None:
    """One line of progress on stderr: the terminal's, even from inside a cell the runner runs."""
    stream = sys.__stderr__ if in_runner() and sys.__stderr__ is not None else sys.stderr
    print(message, file=stream, flush=True)


def tool_command(tool: str) -> str:
    """How a person runs the venv's `tool` from here: its bare name where their PATH finds this
    venv's own (an activated venv), else its path: relative when it lies under the current
    folder (`.venv/bin/dvc` at the project root, where <root>/.venv is this venv), else
    absolute."""
    venv_bin = Path(sys.executable).parent
    mine = venv_bin / tool
    if not mine.is_file():
        return tool  # not a venv's tool here: PATH's, whatever it is
    found = None if settings.get(UNDER_MAKE) else shutil.which(tool)
    if found and os.path.samefile(found, mine):
        return tool
    cwd = Path.cwd()
    for candidate in (cwd / ".venv/bin" / tool, *(d / ".venv/bin" / tool for d in cwd.parents)):
        if candidate.is_file() and os.path.samefile(candidate, mine):
            return os.path.relpath(candidate, cwd)
    return str(mine)


def pasteable(text: str) -> str:
    """`text` with every venv tool it names as a command (VENV_TOOLS) as `tool_command` says."""
    return _TOOL_WORD.sub(lambda m: tool_command(m.group(1)), text)


def done_line(what: str, where: str | None, next_cmd: str | None = None) -> str:
    """A command's last line: what it produced, where, and the command to run next (left out
    inside `dvc repro`, and when there is none), pasteable as it stands (`pasteable`)."""
    line = f"done: {what}" + (f" in {where}" if where else "")
    if next_cmd and not settings.get("DVC_STAGE"):
        line += f"; next: {pasteable(next_cmd)}"
    return line


def done(what: str, where: str | None, next_cmd: str | None = None) -> str:
    """Print `done_line(...)` on stdout, and return it."""
    line = done_line(what, where, next_cmd)
    print(line, flush=True)
    return line
