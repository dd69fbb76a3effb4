"""The router against the state: what a deploy command killed half-way leaves apart, found and
set right; and a router that died, started again as the state says.

A deploy command changes the router first and saves the state after (faultwatch.deploy.state);
killed in between, or between two of its router commands, it leaves the two disagreeing.
`differences` names each disagreement; `restore` sets the router to the state. The state wins:
it records what was done whole, so a command killed half-way is undone, and run again by the
person. Every deploy command that changes the deployment does this first and says what it
found (`deploy status` shows the differences, and changes nothing). Each move keeps a colour
with traffic (weights are raised before others are lowered), so no request fails for it.

`stop_orphans`: servers and routers of this project that the state does not list (a command
killed before it saved them), stopped by `deploy down`.

`restart_router`: HAProxy died (`deploy status` says the router is down); `deploy up` starts it
again with the state's colours, weights and shadow, the colours left running as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from faultwatch.deploy import router as rt
from faultwatch.deploy.config import params, router_config
from faultwatch.deploy.processes import (
    ROUTER_MARKER,
    project_tags,
    routers_of,
    stop_pid,
    stop_tagged,
)
from faultwatch.deploy.state import State


@dataclass(frozen=True)
class Wanted:
    """One colour as the state says the router should hold it."""

    in_service: bool  # smoke-tested: its servers ready (else parked in maintenance)
    weight: int
    ports: list[int] | None  # its replicas' ports; None: no process recorded


def wanted(st: State) -> dict[str, Wanted]:
    out = {}
    for colour in rt.COLOURS:
        c = st.colours.get(colour)
        serving = c is not None and c.smoke_passed
        out[colour] = Wanted(
            serving,
            st.weights.get(colour, 0) if serving else 0,
            [r.port for r in c.servers] if c is not None else None,
        )
    return out


def shadow_urls(st: State) -> str | None:
    """The shadow map's value the state asks for: the staged colour's servers, or off."""
    c = st.colours.get(st.standby) if st.shadow and st.standby else None
    return ",".join(f"http://{st.host}:{r.port}" for r in c.servers) if c is not None else None


def differences(st: State, a: rt.RuntimeAPI, map_path: Path) -> list[str]:
    """Where the router and the state disagree, one line each; [] when they agree."""
    stats = a.stats()
    out = []
    for colour, w in wanted(st).items():
        for i, name in enumerate(a.names(colour)):
            row = stats.get(name, {})
            parked = row.get("status", "").startswith("MAINT")
            if parked and w.in_service:
                out.append(f"{name}: in maintenance on the router, in service in the state")
                continue
            if not parked and not w.in_service:
                out.append(f"{name}: in service on the router, not in the state")
                continue
            weight = int(row.get("uweight") or 0)
            if w.in_service and weight != w.weight:
                out.append(f"{name}: weight {weight} % on the router, {w.weight} % in the state")
            port = row.get("addr", "").rpartition(":")[2]
            if w.ports and i < len(w.ports) and port != str(w.ports[i]):
                out.append(f"{name}: port {port} on the router, {w.ports[i]} in the state")
    shadowing = _shadow_value(a, map_path).startswith("http")
    if shadowing != bool(shadow_urls(st)):
        on = "on" if shadowing else "off"
        out.append(f"shadow: {on} on the router, {'off' if shadowing else 'on'} in the state")
    return out


def _shadow_value(a: rt.RuntimeAPI, map_path: Path) -> str:
    for line in a(f"show map {map_path}").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == rt.MAP_KEY:
            return parts[2]
    return rt.SHADOW_OFF


def restore(st: State, a: rt.RuntimeAPI, map_path: Path) -> None:
    """The router as the state says: addresses, parked servers back in service (or servers
    parked), weights (those raised before those lowered), backups, the shadow."""
    stats = a.stats()
    want = wanted(st)
    for colour, w in want.items():
        first = stats.get(a.names(colour)[0], {})
        if w.ports:
            a.set_address(colour, w.ports)
        if w.in_service and first.get("status", "").startswith("MAINT"):
            a.enable(colour)
    now = {c: int(stats.get(a.names(c)[0], {}).get("uweight") or 0) for c in want}
    for colour in sorted(want, key=lambda c: want[c].weight <= now[c]):  # raise, then lower
        if want[colour].in_service:
            a.set_weight(colour, want[colour].weight)
    for colour, w in want.items():
        if w.in_service:
            a.enable_backup(colour, True)
        else:
            a.disable(colour)
    a.shadow(shadow_urls(st), map_path)


def reconcile(st: State, a: rt.RuntimeAPI, map_path: Path, say: Callable[[str], None]) -> bool:
    """Find the router and the state apart, say so, set the router to the state; whether they
    were apart."""
    found = differences(st, a, map_path)
    if not found:
        return False
    say(
        "the router and the state disagree (a deploy command stopped half-way?): "
        + "; ".join(found)
        + ". Setting the router to the state."
    )
    restore(st, a, map_path)
    return True


def restart_router(st: State, cfg: rt.RouterConfig, timeout_s: float = 10.0) -> int:
    """HAProxy started again on the state's address, in front of the state's colours as they
    run, then set to the state (weights, backups, shadow); its pid."""
    ports: rt.Ports = {
        c: [r.port for r in st.colours[c].servers] if c in st.colours else None for c in rt.COLOURS
    }
    pid = rt.start(cfg, ports, None)
    a = rt.RuntimeAPI(cfg.sock, replicas=st.replicas)
    restore(st, a, cfg.map_path)
    # HAProxy starts its servers unchecked: back once the live colour passed a health check
    live = a.names(st.live) if st.live else []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(a.server_status().get(n, "") == "UP" for n in live):
            break
        time.sleep(0.05)
    return pid


def stop_orphans(root: Path) -> list[str]:
    """Servers of this project that the state does not list any more (a command killed half
    way, a state file replaced), found by the project they carry in their environment, and
    routers running this project's config; stopped. Returns what was stopped, in words."""
    stopped = []
    for tag in project_tags(root.resolve()):
        n = stop_tagged(tag)
        if n:
            stopped.append(f"server {tag} ({n} processes)")
    for pid in routers_of(router_config(root, State(), params(root)).cfg_path):
        if stop_pid(pid, ROUTER_MARKER):
            stopped.append(f"router pid {pid}")
    return stopped
