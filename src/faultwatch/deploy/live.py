"""What serves here, and whether the registry says the same.

The registry calls a version `prod` only while it takes all the traffic: the deploy commands
assign it when that happens (`up`, `switch`, a canary reaching 100 %, a rollback to it) and
record a refusal on the version they turned away (`canary-aborted`, `rolled-back`). `serving`
reads the deployment's state (no lock) and the registry, and names any disagreement: a
production version that nothing serves here, or a live version the registry does not call
production. `deploy status`, `registry list` and the report page all show it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from faultwatch import registry
from faultwatch.deploy import fleet
from faultwatch.deploy.processes import ROUTER_MARKER, alive, pid_alive
from faultwatch.deploy.results import PRODUCTION, RegistryRecord
from faultwatch.deploy.state import Colour, State, load
from faultwatch.errors import FaultwatchError


def router_up(st: State) -> bool:
    return pid_alive(st.router_pid, ROUTER_MARKER)


def live_colour(st: State) -> Colour | None:
    """The colour that has the traffic, when the router and it run."""
    c = st.colours.get(st.live) if st.live else None
    return c if c is not None and router_up(st) and alive(c) else None


@dataclass
class Serving:
    """The deployment here against the registry."""

    live_version: str | None  # what the router sends the traffic to (None: nothing runs)
    live_colour: str | None
    share: int  # % of the traffic on the live colour (less during a canary)
    url: str | None
    production: str | None  # the registry's `prod` version
    problem: str | None  # a disagreement between the two, in words; None when they agree

    def line(self) -> str:
        """One line for a person."""
        if self.live_version:
            here = (
                f"{self.live_version} live on {self.live_colour} at {self.url} "
                f"({self.share} % of the traffic)"
            )
        else:
            here = "nothing deployed here"
        return f"serving: {here}; registry production: {self.production or 'none'}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def serving(root: Path) -> Serving:
    """What serves here and what the registry says (see the module docstring)."""
    try:
        st = load(root)
    except FaultwatchError:
        st = State()
    c = live_colour(st)
    try:
        prod = registry.production(root)
    except FaultwatchError as e:
        return Serving(c.version if c else None, st.live if c else None, 0, st.url, None, str(e))
    version = c.version if c else None
    share = st.weights.get(st.live, 0) if c and st.live else 0
    problem = None
    if version and c is not None and c.models:  # a fleet: each group's production, not one
        return Serving(version, st.live, share, st.url, prod.version if prod else None, None)
    if version and (prod is None or prod.version != version):
        problem = (
            f"{version} serves the traffic here (on {st.live}), but the registry's production is "
            f"{prod.version if prod else 'none'}: `faultwatch deploy up {version}` records it"
        )
    elif prod is not None and version is None:
        why = "the router is down" if st.live and not router_up(st) else "nothing deployed"
        problem = (
            f"the registry's production is {prod.version}, but nothing serves it here ({why}): "
            f"`faultwatch deploy up {prod.version}`"
        )
    return Serving(
        version, st.live if c else None, share, st.url, prod.version if prod else None, problem
    )


def running(root: Path) -> bool:
    """A router and a live colour run here (`faultwatch deploy up`)."""
    return live_colour(load(root)) is not None


def mark_live(root: Path, version: str, why: str) -> RegistryRecord | None:
    """The registry follows the traffic: `version` has all of it, so it is `prod`. None when
    it already was. A registry that cannot be written is a warning in the record, not a
    failure: the traffic has moved, and `deploy status` shows the disagreement. A fleet bento:
    each group's version (faultwatch.deploy.fleet)."""
    if fleet.is_fleet(version):
        return fleet.mark_live(root, fleet.fleet_models(root, version), why)
    try:
        changed = registry.set_production(version, why, root)
    except FaultwatchError as e:
        return RegistryRecord(version, PRODUCTION, why, str(e))
    return RegistryRecord(version, PRODUCTION, why) if changed else None


def mark_refused(
    root: Path,
    version: str,
    outcome: str,
    why: str,
    against: Colour | None = None,
    only: list[str] | None = None,
) -> RegistryRecord | None:
    """Record on `version` that the deployment turned it away (`canary-aborted`,
    `rolled-back`), with the reason. A fleet bento: on each group whose model differs from the
    colour `against` (the one that keeps or takes the traffic), or only on the groups `only`
    (those a canary's analysis failed: a changed group that was in bounds is not refused)."""
    if fleet.is_fleet(version):
        models = fleet.fleet_models(root, version)
        diff, _ = fleet.changed(against.models if against else {}, models)
        if only:
            diff = {g: m for g, m in diff.items() if g in only}
        return fleet.mark_refused(root, diff, outcome, why)
    try:
        registry.record_outcome(version, outcome, why, root)
    except FaultwatchError as e:
        return RegistryRecord(version, outcome, why, str(e))
    return RegistryRecord(version, outcome, why)


def recorded(*made: RegistryRecord | None) -> tuple[RegistryRecord, ...]:
    """The records an operation made (`mark_live` gives None when nothing changed)."""
    return tuple(r for r in made if r is not None)
