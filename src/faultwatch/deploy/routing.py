"""Moving traffic between the colours: the checks before (something deployed, a standby ready)
and the moves (weights, the switch, the shadow), on the router and in the state together."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from faultwatch.deploy import router as rt
from faultwatch.deploy.config import router_api
from faultwatch.deploy.errors import NothingDeployed, StandbyNotReady
from faultwatch.deploy.processes import ROUTER_MARKER, alive, pid_alive, set_low_priority
from faultwatch.deploy.reconcile import reconcile
from faultwatch.deploy.state import Colour, State, state_dir


def at_router(st: State) -> str:
    """Where a deploy command's work is, for its done line."""
    return f"the router at {st.url}"


def require_up(root: Path, st: State, say: Callable[[str], None] | None = None) -> rt.RuntimeAPI:
    """The router's API; NothingDeployed when no router and live colour are recorded running.
    With `say` (a command that changes the deployment, holding its lock): the router set to the
    state first where the two disagree, said (faultwatch.deploy.reconcile)."""
    if st.live is None or not pid_alive(st.router_pid, ROUTER_MARKER):
        raise NothingDeployed("nothing is deployed here: `faultwatch deploy up` first")
    a = router_api(root, st.replicas)
    if say is not None:
        reconcile(st, a, state_dir(root) / rt.MAP_FILE, say)
    return a


def ready_standby(st: State, what: str) -> Colour:
    """The staged colour, running and smoke-tested; StandbyNotReady (naming `what` was asked)
    otherwise."""
    colour = st.standby
    c = st.colours.get(colour) if colour else None
    if c is None:
        raise StandbyNotReady(f"{what}: nothing is staged; `faultwatch deploy stage VERSION` first")
    if not c.smoke_passed:
        why = (c.smoke or {}).get("message", "no smoke test")
        raise StandbyNotReady(
            f"{what}: {colour} ({c.version}) has not passed its smoke test: {why}"
        )
    if not alive(c):
        raise StandbyNotReady(
            f"{what}: {colour} ({c.version}) is not running any more (log {c.log}); stage it "
            "again: `faultwatch deploy stage VERSION`"
        )
    return c


def apply_weights(a: rt.RuntimeAPI, st: State, weights: dict[str, int]) -> None:
    """Raise before lowering: at no moment does every colour have weight 0. A colour that gets
    traffic runs at full CPU priority (a shadow ran at a lower one)."""
    for colour, w in weights.items():
        c = st.colours.get(colour)
        if w > 0 and c is not None:
            set_low_priority(c.tag, False)
    order = sorted(weights, key=lambda c: weights[c] < st.weights.get(c, 0))
    for colour in order:
        a.set_weight(colour, weights[colour])
        st.weights[colour] = weights[colour]


def switch_to(a: rt.RuntimeAPI, st: State, colour: str) -> None:
    """All the traffic to `colour`, which becomes the live one."""
    other = "green" if colour == "blue" else "blue"
    apply_weights(a, st, {colour: 100, other: 0})
    st.live = colour


def shadow_off(a: rt.RuntimeAPI, st: State, map_path: Path) -> None:
    """No more copies, and the colour that got them back at full CPU priority."""
    a.shadow(None, map_path)
    st.shadow = False
    c = st.colours.get(st.standby) if st.standby else None
    if c is not None:
        set_low_priority(c.tag, False)


def drain(a: rt.RuntimeAPI, colour: str, timeout_s: float = 30.0) -> None:
    """Wait until the colour has no request in flight (it takes no new ones any more)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if a.counters()[colour]["scur"] == 0:
            return
        time.sleep(0.05)


def router_errors(a: rt.RuntimeAPI, colour: str) -> int:
    """The 5xx answers and broken responses the router counted for `colour`."""
    c = a.counters()[colour]
    return c["5xx"] + c["eresp"]
