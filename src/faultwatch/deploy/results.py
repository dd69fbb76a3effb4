"""What each deploy operation did, as data: the CLI prints it (faultwatch.cli.deploy_verbs),
retrain composes it (faultwatch.retrain). Nothing here prints.

A gate's refusal (a smoke test, a canary's analysis) is a result with its figures; a request
the deployment cannot carry out is an error (faultwatch.deploy.errors). `Watch` is how an
operation tells what it does while it runs: the steps on the way (the CLI prints them on
stderr) and each analysis of a gradual canary as it comes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from faultwatch.deploy.analysis import Analysis

PRODUCTION = "production"  # RegistryRecord.outcome when a version became `prod`


def _ignore(_: Any) -> None:
    pass


@dataclass(frozen=True)
class CanaryStep:
    """One step of a gradual canary: its share of the traffic and the analysis after it."""

    pct: int
    analysis: Analysis

    @property
    def passed(self) -> bool:
        return self.analysis.verdict == "pass"


@dataclass(frozen=True)
class Watch:
    """Who hears what an operation does while it runs (the defaults hear nothing)."""

    progress: Callable[[str], None] = _ignore  # a step on the way, one line
    waiting: Callable[[str], None] = _ignore  # another command holds the lock: who
    analysed: Callable[[CanaryStep], None] = _ignore  # a canary step's analysis, as it comes


QUIET = Watch()


@dataclass(frozen=True)
class RegistryRecord:
    """What the deployment recorded in the registry: a version made production (the traffic
    moved to it) or turned away (`canary-aborted`, `rolled-back`). `error`: the registry could
    not be written, a warning only: the traffic has moved, `deploy status` shows the
    disagreement."""

    version: str
    outcome: str  # PRODUCTION, or the refusal (faultwatch.registry.CANARY_ABORTED, ROLLED_BACK)
    why: str
    error: str | None = None

    def line(self) -> str:
        """One line for a person, indented under the command's own."""
        if self.outcome == PRODUCTION:
            if self.error is not None:
                return f"  warning: the registry could not record {self.version} as production: {self.error}"
            return f"  registry: {self.version} is production ({self.why})"
        if self.error is not None:
            return f"  warning: the registry could not record {self.outcome} on {self.version}: {self.error}"
        return f"  registry: {self.version} {self.outcome} ({self.why})"


@dataclass(frozen=True)
class SmokeFigures:
    """A colour's smoke test: its answers on the golden set against the recorded ones."""

    passed: bool
    message: str
    n: int | None = None  # golden signals sent
    max_abs_diff: float | None = None  # largest |probability - recorded|
    label_mismatches: int | None = None
    model_versions: tuple[str, ...] = ()
    request_id: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SmokeFigures:
        """From the dict a Colour keeps in the state file."""
        diff = d.get("max_abs_diff")
        return cls(
            passed=bool(d.get("passed")),
            message=str(d.get("message") or ""),
            n=d.get("n"),
            max_abs_diff=None if diff is None or math.isnan(diff) else diff,
            label_mismatches=d.get("label_mismatches"),
            model_versions=tuple(d.get("model_versions") or ()),
            request_id=str(d.get("request_id") or ""),
        )


@dataclass(frozen=True)
class UpResult:
    """`deploy up`: `version` live on `colour` behind the router at `url`; `already`: it was
    (nothing started, no smoke test)."""

    version: str
    colour: str
    url: str | None
    router_log: Path
    already: bool = False
    smoke: SmokeFigures | None = None
    registry: tuple[RegistryRecord, ...] = ()
    router_restarted: bool = False  # it was down: started again, the colours left running


@dataclass(frozen=True)
class StageResult:
    """`deploy stage`: `version` on the standby `colour`; no traffic. `smoke.passed` False: the
    gate refused it (the colour is stopped, `live` keeps all the traffic)."""

    version: str
    colour: str
    live: str
    url: str | None
    port: int
    approval: str  # the promotion gate's decision on the version
    smoke: SmokeFigures
    already: bool = False  # it was staged already, its smoke test passed
    shadow_stopped: bool = False  # a shadow to the old standby was turned off

    @property
    def passed(self) -> bool:
        return self.smoke.passed


@dataclass(frozen=True)
class SwitchResult:
    """`deploy switch`: all the traffic moved from `frm` to `to` in `ms` milliseconds."""

    version: str
    frm: str
    to: str
    ms: float
    url: str | None
    registry: tuple[RegistryRecord, ...] = ()


@dataclass(frozen=True)
class RollbackResult:
    """`deploy rollback`: a canary ended (`canary_pct` > 0: the standby back to 0 %, `live`
    keeps the traffic), or all the traffic back to the standby (`live` is now that colour)."""

    live: str
    other: str  # the colour that lost its traffic
    version: str  # of the live colour
    canary_pct: int  # the canary's share before, 0 when this was a switch back
    url: str | None
    registry: tuple[RegistryRecord, ...] = ()


CanaryOutcome = Literal["set", "live", "passed", "aborted"]


@dataclass(frozen=True)
class CanaryResult:
    """`deploy canary`: the staged `colour` (`version`) against `live`.

    outcome: "set" (one share given, `pct` < 100), "live" (it reached 100 %: all the traffic,
    production), "passed" (every step's analysis passed, the last step below 100 %), "aborted"
    (a step's analysis did not pass: back to 0 %, the last of `steps` says why)."""

    version: str
    colour: str
    live: str
    url: str | None
    outcome: CanaryOutcome
    pct: int  # the share the staged colour has now
    steps: tuple[CanaryStep, ...] = ()  # the analysed steps, in order
    plan: tuple[int, ...] = ()  # the steps asked for (a gradual canary)
    registry: tuple[RegistryRecord, ...] = ()

    @property
    def passed(self) -> bool:
        return self.outcome != "aborted"

    @property
    def analyses_passed(self) -> int:
        return sum(s.passed for s in self.steps)


@dataclass(frozen=True)
class ShadowResult:
    """`deploy shadow on|off`: live traffic copied to the staged `colour`, or no more."""

    on: bool
    colour: str | None
    version: str | None
    url: str | None


@dataclass(frozen=True)
class AnalyseResult:
    """`deploy analyse`: the analysis gate on the staged colour over the last window."""

    version: str
    analysis: Analysis

    @property
    def passed(self) -> bool:
        return self.analysis.verdict == "pass"


DownOutcome = Literal["nothing", "orphans", "stopped"]


@dataclass(frozen=True)
class DownResult:
    """`deploy down`: "stopped" the router and both colours (and `orphans`, processes of this
    project no state listed), "orphans" only those (no state), or "nothing" to stop."""

    outcome: DownOutcome
    orphans: tuple[str, ...] = ()
    prediction_log: str = ""  # where the log stays, for a person


@dataclass(frozen=True)
class ReplicaStatus:
    """One server of a colour: its process, and what the router's health checks make of it."""

    server: str  # the router's name: blue, blue_2, ...
    port: int
    pid: int
    running: bool  # its supervisor (or container) runs
    router: str | None  # the router's status: UP, DOWN, DRAIN (weight 0), MAINT; None: not read

    @property
    def up(self) -> bool:
        """Running, and taken by the router (or the router not read)."""
        return self.running and (self.router is None or self.router.startswith(("UP", "DRAIN")))


@dataclass(frozen=True)
class ColourStatus:
    version: str
    model_tag: str
    port: int
    pid: int
    tag: str
    container: str | None
    running: bool  # one of its replicas runs at least
    smoke: dict[str, Any] | None
    weight: int
    router_counts: dict[str, int] | None
    replicas: tuple[ReplicaStatus, ...] = ()
    models: dict[str, str] | None = None  # a fleet bento's groups and store entries

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["replicas"] = [{**asdict(r), "up": r.up} for r in self.replicas]
        if self.models is None:
            d.pop("models")
        return d


@dataclass(frozen=True)
class StatusResult:
    """`deploy status`: the state, what runs, the router's counters, the registry's view."""

    router_url: str | None
    router_pid: int | None
    router_up: bool
    router_error: str | None
    runtime: str
    prediction_log: str
    live: str | None
    weights: dict[str, int]
    colours: dict[str, ColourStatus]
    shadow: bool
    last_analysis: dict[str, Any] | None
    history: list[dict[str, Any]]
    registry: dict[str, Any]  # faultwatch.deploy.live.Serving.to_dict()
    shadow_copies: dict[str, int] | None = None  # None: the router was not read
    shadow_agreement: dict[str, Any] | None = None  # None: nothing staged beside a live colour
    answering: list[str] = field(default_factory=list)  # colours taking requests now (router's)
    router_differences: list[str] = field(default_factory=list)  # router against the state

    def to_dict(self) -> dict[str, Any]:
        """The document `deploy status --json` prints (its keys in this order)."""
        router: dict[str, Any] = {"url": self.router_url, "pid": self.router_pid}
        router["up"] = self.router_up
        router["differences"] = self.router_differences
        if self.router_error is not None:
            router["error"] = self.router_error
        out: dict[str, Any] = {
            "router": router,
            "runtime": self.runtime,
            "prediction_log": self.prediction_log,
            "live": self.live,
            "answering": self.answering,
            "weights": self.weights,
            "colours": {name: c.to_dict() for name, c in self.colours.items()},
            "shadow": self.shadow,
            "last_analysis": self.last_analysis,
            "history": self.history,
            "registry": self.registry,
        }
        if self.shadow_copies is not None:
            out["shadow_copies"] = self.shadow_copies
        if self.shadow_agreement is not None:
            out["shadow_agreement"] = self.shadow_agreement
        return out
