"""The retrain loop's machinery: one line per step on stdout, the full output of the commands
it runs (dvc, git) and what the deployment did in the run's log file, and what the steps share
(`Run`)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from faultwatch import progress
from faultwatch.deploy.results import CanaryStep, RegistryRecord, Watch
from faultwatch.errors import FaultwatchError
from faultwatch.groups import DEFAULT_ARTIFACT
from faultwatch.paths import GROUPS_DIR
from faultwatch.report_page import refresh

EXIT_REFUSED = 3  # as `deploy`: a gate said no
LOG_DIR = Path(".faultwatch/retrain")


class RetrainError(FaultwatchError):
    """A step of the loop could not run (as opposed to a gate that refused)."""


@dataclass
class Step:
    """What one step printed: its outcome and a one-line detail."""

    name: str
    outcome: str
    seconds: float
    detail: str

    def line(self) -> str:
        return f"{self.name:<9} {self.outcome:<9} {self.seconds:6.1f} s  {self.detail}"


class Loop:
    """Runs the steps in order, printing one line each, and keeps the full output of the
    commands it calls (dvc, git) and what the deployment did in the run's log file."""

    def __init__(self, root: Path, out: Callable[[str], None] = print):
        self.root, self.out = root, out
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.stamp = stamp
        self.log = root / LOG_DIR / f"{stamp}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)

    def note(self, text: str) -> None:
        with open(self.log, "a") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def report(self, name: str, outcome: str, t0: float, detail: str) -> Step:
        s = Step(name, outcome, time.monotonic() - t0, detail)
        self.out(s.line())
        self.note(f"== {s.line()}")
        return s

    def watch(self) -> Watch:
        """What a deploy operation tells on the way: its steps as progress (stderr), the rest
        into the log."""

        def analysed(step: CanaryStep) -> None:
            self.note(f"  {step.pct} %: " + step.analysis.summary())

        return Watch(
            progress=progress.step,
            waiting=lambda holder: self.note(f"waiting for {holder} to finish ..."),
            analysed=analysed,
        )

    def registry(self, made: tuple[RegistryRecord, ...]) -> None:
        """What the registry recorded, into the log; the report page, which shows it,
        refreshed."""
        for record in made:
            self.note(record.line())
            self.note(f"  {refresh(self.root)}")


def tool(name: str) -> str:
    """The project's venv copy of a tool (beside this Python), else the one on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


# what a command's output says about its progress: the stages `dvc repro` runs, and the lines
# the notebook runner prints for each cell and epoch (faultwatch.progress)
PROGRESS_LINE = re.compile(r"^(Running stage '[^']+'|\[[\w-]+\] (cell|epoch) \d+/\d+)")


def run_logged(loop: Loop, cmd: list[str], what: str) -> None:
    """Run `cmd`, its output into the run's log as it comes (`tail -f` follows it); the lines
    that tell its progress (PROGRESS_LINE) are echoed as progress."""
    loop.note(f"$ {' '.join(cmd)}")
    lines: list[str] = []
    with (
        open(loop.log, "a") as log,
        subprocess.Popen(
            cmd, cwd=loop.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            log.write(line)
            log.flush()
            if PROGRESS_LINE.match(line):
                progress.step(f"  {line.rstrip()}")
    if proc.returncode != 0:
        tail = "\n".join("".join(lines).strip().splitlines()[-15:])
        raise RetrainError(f"{what} failed ({proc.returncode}); log {loop.log}:\n{tail}")


def commit_paths(loop: Loop, paths: list[Path], message: str) -> str:
    """Commit these paths only (the user's other changes stay as they are); the short sha.
    Nothing changed in them: HEAD as it is."""
    names = [str(p) for p in paths if (loop.root / p).exists()]
    run_logged(loop, ["git", "add", "--", *names], "git add")
    staged = subprocess.run(
        ["git", "diff", "--cached", "--quiet", "--", *names], cwd=loop.root
    ).returncode
    if staged:
        run_logged(loop, ["git", "commit", "-q", "-m", message, "--", *names], "git commit")
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=loop.root, capture_output=True, text=True
    ).stdout.strip()


def git_outputs(root: Path, group: str | None = None) -> list[Path]:
    """The outputs dvc.yaml keeps in git (`cache: false`): what `dvc repro` rewrote that a
    commit must hold beside dvc.lock. Those of the project's own stages, or with `group`,
    those of that group's stages (the `foreach` ones, in their `wdir`)."""
    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages") or {}
    found = []
    for stage in stages.values():
        if ("foreach" in stage) != (group is not None):
            continue
        body = (stage.get("do") or {}) if group is not None else stage
        wdir = str(body.get("wdir") or ".").replace("${key}", group or "")
        for kind in ("outs", "metrics", "plots"):
            for out in body.get(kind) or []:
                if isinstance(out, dict):
                    (name, opts), *_ = out.items()
                    if (opts or {}).get("cache") is False:
                        found.append(Path(wdir, name.replace("${key}", group or "")))
    return found


@dataclass
class Run:
    """One retrain: what it was given, and what its steps found on the way."""

    loop: Loop
    source: Path | None
    from_log: str | None = None
    start: float | None = None
    end: float | None = None
    steps: list[int] | None = None  # the canary's; None: params deploy.canary_steps
    interval: float | None = None
    dry_run: bool = False
    checked: dict = field(default_factory=dict)  # validate's summary and production folder
    rel: Path = Path()  # the batch in the data folder, relative to the root
    version: str = ""  # the registry version the pipeline registered
    live: tuple[str, str] = ("", "")  # (colour, version) that served when the rollout began
    t0: float = 0.0  # when the current deploy step began
    switched: bool = False  # the canary put all the traffic on the new version
    group: str | None = None  # `--group`: that model group's retrain (its rows of the log)
    fleet_bento: str = ""  # a group's retrain: the fleet bento packaged with its new version
    labellers: tuple[str, ...] = ()  # --from-log: only their labels (empty: everyone's)

    @property
    def root(self) -> Path:
        return self.loop.root

    @property
    def stages_of(self) -> str | None:
        """The group whose `group-*` stages train the model; None: the project's own stages
        (also for `--group fault_cnn`, the project's model in a fleet)."""
        return None if self.group in (None, DEFAULT_ARTIFACT) else self.group

    @property
    def folder(self) -> Path:
        """Where the model's params, data and registry records are: the group's folder."""
        return self.root / GROUPS_DIR / self.stages_of if self.stages_of else self.root

    @property
    def name(self) -> str:
        """The version as the user names it: `p-100 v0.0.2` for a group."""
        return f"{self.group} {self.version}" if self.group else self.version

    @property
    def deployable(self) -> str:
        """What the rollout stages: the version, or a group's fleet bento."""
        return self.fleet_bento or self.version


Outcome = int | None  # a step's exit status to stop with, or None to go on
