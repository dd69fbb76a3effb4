"""Training model groups in parallel on one machine: DVC's experiment queue with N workers.

`dvc repro` runs one stage at a time. DVC's own way to run pipelines side by side is its
experiment queue: `faultwatch group train --jobs N` queues one experiment a group (`dvc exp run
--queue group-register@NAME`: that group's stages, on the workspace as it is), runs the queue
with N workers (`dvc exp run --run-all --jobs N`; each experiment in its own copy under
.dvc/tmp/exps, sharing the project's DVC cache and BentoML store), then brings every group's
results into the workspace. That last step is ours: `dvc exp apply` takes one experiment's
whole workspace, so a second one would undo the first's dvc.lock. Each group's results are its
own stages' entries of dvc.lock and its own folder (groups/NAME/), which no other group's
experiment touches; they are merged entry by entry, then `dvc checkout` links the cached
outputs. What `dvc status` says afterwards is what `dvc repro` would have left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from faultwatch.errors import FaultwatchError
from faultwatch.groups import GROUPS_DIR, specs, write_group_params
from faultwatch.params import load_params

PREFIX = "fleet-"  # the queued experiments' names: fleet-<group>-<stamp>


class FleetError(FaultwatchError):
    """The experiment queue could not train a group."""


@dataclass(frozen=True)
class Trained:
    group: str
    experiment: str
    rev: str


def _env(root: Path) -> dict[str, str]:
    """The queue's workers call `dvc` and the stages call bin/faultwatch: the project's .venv
    first on PATH, however this was started."""
    venv = root / ".venv" / "bin"
    return {**os.environ, "PATH": f"{venv}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(cmd: list[str], root: Path, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise FleetError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc


def _dvc(root: Path) -> str:
    own = root / ".venv" / "bin" / "dvc"
    return str(own) if own.exists() else (shutil.which("dvc") or "dvc")


def experiment_revs(root: Path) -> dict[str, str]:
    """name -> commit of every experiment of the repository (git refs under refs/exps/)."""
    out = _run(
        ["git", "for-each-ref", "refs/exps", "--format=%(refname) %(objectname)"],
        root,
        "listing the experiments",
    ).stdout
    revs = {}
    for line in out.splitlines():
        ref, _, sha = line.partition(" ")
        revs[ref.rsplit("/", 1)[-1]] = sha
    return revs


def train(root: Path, names: list[str] | None, jobs: int, progress=print) -> list[Trained]:
    """Each group of `names` (default: every group) through its stages, `jobs` at a time."""
    groups = specs(load_params(root / "params.yaml"))
    names = names or list(groups)
    unknown = [n for n in names if n not in groups]
    if unknown:
        listed = ", ".join(groups) or "none"
        raise FleetError(f"no group {', '.join(unknown)} in params.yaml (groups: {listed})")
    if jobs < 1:
        raise FleetError(f"--jobs {jobs}: at least 1")
    dvc = _dvc(root)
    stamp = time.strftime("%Y%m%d%H%M%S")
    queued = {}
    for name in names:
        exp = f"{PREFIX}{name}-{stamp}"
        _run([dvc, "exp", "run", "--queue", "-n", exp, f"group-register@{name}"], root,
             f"queueing {name}")  # fmt: skip
        queued[name] = exp
    progress(f"queued {len(queued)} groups; running the queue with {jobs} workers")
    t0 = time.monotonic()
    run = subprocess.run(
        [dvc, "exp", "run", "--run-all", "--jobs", str(jobs)],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
    )
    progress(f"the queue ran in {time.monotonic() - t0:.0f} s")
    revs = experiment_revs(root)
    done = [Trained(n, e, revs[e]) for n, e in queued.items() if e in revs]
    failed = [n for n, e in queued.items() if e not in revs]
    collect(root, done)
    if failed or run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-20:])
        raise FleetError(
            f"groups {', '.join(failed) or '(none)'} did not finish (the others' results are in "
            f"the workspace; `dvc queue logs NAME` shows a failed one's output):\n{tail}"
        )
    return done


def collect_experiments(root: Path, experiments: list[str]) -> list[Trained]:
    """`collect` for experiments named fleet-<group>[-<stamp>] (or run on a cluster and pulled
    with `dvc exp pull`): each one's group is the one whose stages it ran."""
    groups = specs(load_params(root / "params.yaml"))
    revs = experiment_revs(root)
    done = []
    for exp in experiments:
        if exp not in revs:
            raise FleetError(f"no experiment {exp!r} here (`dvc exp pull origin {exp}` first?)")
        rest = exp.removeprefix(PREFIX)
        group = next((g for g in sorted(groups, key=len, reverse=True)
                      if rest == g or rest.startswith(f"{g}-")), None)  # fmt: skip
        if group is None:
            raise FleetError(
                f"{exp}: not a group's experiment ({PREFIX}<group>[-...]; groups: "
                f"{', '.join(groups) or 'none'})"
            )
        done.append(Trained(group, exp, revs[exp]))
    collect(root, done)
    return done


def _stages_of(lock: dict, group: str) -> dict[str, dict]:
    return {
        name: entry
        for name, entry in (lock.get("stages") or {}).items()
        if name.startswith("group-") and name.endswith(f"@{group}")
    }


def collect(root: Path, done: list[Trained]) -> None:
    """Each experiment's own group into the workspace: its dvc.lock entries, the files git
    tracks in its folder, then its cached outputs (`dvc checkout`)."""
    if not done:
        return
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.is_file() else None
    lock = lock or {"schema": "2.0", "stages": {}}
    stages = lock.setdefault("stages", {})
    for t in done:
        theirs = yaml.safe_load(
            _run(["git", "show", f"{t.rev}:dvc.lock"], root, f"reading {t.experiment}").stdout
        )
        stages.update(_stages_of(theirs, t.group))
        _run(["git", "checkout", t.rev, "--", f"{GROUPS_DIR}/{t.group}"], root,
             f"bringing {t.group}'s files")  # fmt: skip
        _run(["git", "reset", "-q", "--", f"{GROUPS_DIR}/{t.group}"], root, "unstaging")
        write_group_params(root, t.group)  # its artifacts.yaml entry (the same params file)
    tmp = lock_path.with_suffix(".lock.tmp")
    tmp.write_text(yaml.safe_dump(lock, sort_keys=False, width=80))
    os.replace(tmp, lock_path)
    targets = [name for t in done for name in _stages_of(lock, t.group)]
    _run([_dvc(root), "checkout", "--force", *targets], root, "dvc checkout of the groups")
