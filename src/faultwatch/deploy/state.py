"""The deployment's state: one JSON file, written atomically, and one lock.

`.faultwatch/deploy/state.json` holds the router (pid, port), both colours (registry version,
model tag, port, pid, smoke test, and each replica's port and pid: `deploy up --replicas N`
runs N servers per colour), which colour is live, the weights, the shadow, the last
analysis and the history of actions. Every command reads it, acts, and writes it whole through
a temporary file and a rename, so a reader never sees half a file and a killed command leaves
the previous state. Commands that change something run in `deployment(root, verb)`: it holds
`.faultwatch/deploy/lock` (flock) for their whole run, loads the state and saves it on success;
a second command waits up to `FAULTWATCH_DEPLOY_LOCK_WAIT` seconds (default 120), then refuses
naming the holder (LockBusy); `status` reads without the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faultwatch import settings
from faultwatch.deploy import failpoints
from faultwatch.deploy.errors import BadStateFile, LockBusy
from faultwatch.deploy.errors import DeployError as DeployError  # where callers have found it
from faultwatch.paths import write_text_atomic

LOCK_WAIT_ENV = "FAULTWATCH_DEPLOY_LOCK_WAIT"
HISTORY_KEPT = 200


def state_dir(root: Path) -> Path:
    return root / ".faultwatch" / "deploy"


def server_name(colour: str, index: int) -> str:
    """The router's name for replica `index` (from 1) of `colour`: blue, blue_2, blue_3, ..."""
    return colour if index == 1 else f"{colour}_{index}"


@dataclass
class Replica:
    """One server of a colour: the router's server `blue`, `blue_2`, ... (the first is the
    colour's own port, pid and log)."""

    port: int
    pid: int
    log: str  # the server's own output


@dataclass
class Colour:
    version: str  # registry version, e.g. v0.0.2
    model_tag: str  # fault_cnn:<store version>
    port: int  # the first replica's (what a state file before replicas held alone)
    pid: int
    log: str  # the server's own output
    started_at: float
    smoke: dict[str, Any] | None = None  # SmokeResult.as_dict() and "passed"
    tag: str = ""  # FAULTWATCH_DEPLOY_TAG in the environment of its processes
    container: str = ""  # the container's name (runtime "container"); "" for a process
    # every replica, the first included; empty in a state file written before replicas
    replicas: list[Replica] = field(default_factory=list)
    # a fleet bento (faultwatch.deploy.fleet): each group's store entry; {} for one model
    models: dict[str, str] = field(default_factory=dict)

    @property
    def servers(self) -> list[Replica]:
        """Its replicas, in the router's order (one for a state file without them)."""
        return self.replicas or [Replica(self.port, self.pid, self.log)]

    @property
    def model_version(self) -> str:
        return self.model_tag.split(":", 1)[-1]

    @property
    def smoke_passed(self) -> bool:
        return bool(self.smoke and self.smoke.get("passed"))


@dataclass
class State:
    router_pid: int | None = None
    runtime: str = "process"  # the colours: processes, or containers of the project image
    replicas: int = 1  # servers per colour (`up --replicas`), the router's slots for each
    host: str = "127.0.0.1"
    port: int | None = None
    live: str | None = None  # the colour with the traffic (100 % once switched)
    colours: dict[str, Colour] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: {"blue": 0, "green": 0})
    shadow: bool = False
    last_analysis: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def standby(self) -> str | None:
        """The colour that is not live (the staged one, or the one switched away from)."""
        if self.live is None:
            return None
        return "green" if self.live == "blue" else "blue"

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.port else None

    def record(self, action: str, **detail: Any) -> None:
        self.history.append({"time": round(time.time(), 3), "action": action, **detail})
        del self.history[:-HISTORY_KEPT]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["colours"] = {k: asdict(v) for k, v in self.colours.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> State:
        colours = {
            k: Colour(**{**v, "replicas": [Replica(**r) for r in v.get("replicas") or []]})
            for k, v in (d.get("colours") or {}).items()
        }
        return cls(**{**d, "colours": colours})


def path(root: Path) -> Path:
    return state_dir(root) / "state.json"


def load(root: Path) -> State:
    p = path(root)
    if not p.is_file():
        return State()
    try:
        return State.from_dict(json.loads(p.read_text()))
    except (ValueError, TypeError) as e:
        raise BadStateFile(
            f"{p}: not a deployment state file ({e}); stop what it started (the processes with "
            "FAULTWATCH_DEPLOY_TAG in their environment), move the file away, `deploy up` again"
        ) from None


def save(root: Path, state: State) -> None:
    write_text_atomic(path(root), json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n")


def _ignore(holder: str) -> None:
    pass


@contextmanager
def locked(root: Path, command: str, waiting: Callable[[str], None] = _ignore) -> Iterator[None]:
    """Hold the deployment lock for one command (see the module docstring); `waiting` hears
    the holder's name once, when another command holds it."""
    d = state_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    wait_s: float = settings.get(LOCK_WAIT_ENV)
    with open(d / "lock", "a+") as f:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another deploy command"
                if time.monotonic() >= deadline:
                    raise LockBusy(
                        f"{holder} holds the deployment lock {d / 'lock'}; waited {wait_s:g} s "
                        f"({LOCK_WAIT_ENV}); try again when it has finished"
                    ) from None
                if not told:
                    waiting(holder)
                    told = True
                time.sleep(0.1)
        f.seek(0)
        f.truncate()
        f.write(f"`faultwatch deploy {command}` (pid {os.getpid()})\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


class Deployment:
    """The state of one locked command (`deployment`): `state` to read and change, `save()`
    where a step must be on disk before the next (a reader sees a canary's weights while it
    waits; the registry's page reads what serves)."""

    def __init__(self, root: Path, state: State):
        self.root, self.state = root, state
        self._saved = state.to_dict()

    def save(self) -> None:
        save(self.root, self.state)
        self._saved = self.state.to_dict()
        failpoints.reach("saved")

    def changed(self) -> bool:
        return self.state.to_dict() != self._saved


@contextmanager
def deployment(
    root: Path, command: str, waiting: Callable[[str], None] = _ignore
) -> Iterator[Deployment]:
    """Take the lock, load the state; on success save it once more if it changed since the last
    save. On an exception nothing more is saved: what was saved before stays."""
    with locked(root, command, waiting):
        d = Deployment(root, load(root))
        yield d
        if d.changed():
            d.save()
