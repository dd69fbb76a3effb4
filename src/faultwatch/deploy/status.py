"""`faultwatch deploy status`: the state, what runs (each replica: its process, and whether
the router's health checks take it), the router's counters, the shadow's agreement and the
registry's view, read without the lock."""

from __future__ import annotations

from pathlib import Path

from faultwatch.deploy import router as rt
from faultwatch.deploy.analysis import shadow_agreement
from faultwatch.deploy.config import prediction_log, router_api
from faultwatch.deploy.live import serving
from faultwatch.deploy.processes import ROUTER_MARKER, alive, pid_alive, replica_alive
from faultwatch.deploy.reconcile import differences
from faultwatch.deploy.results import ColourStatus, ReplicaStatus, StatusResult
from faultwatch.deploy.state import State, load, server_name, state_dir
from faultwatch.serve.predlog import PredictionLogError, show_target


def status(root: Path) -> StatusResult:
    """Where the deployment at `root` stands (see the module docstring)."""
    st = load(root)
    router_up = pid_alive(st.router_pid, ROUTER_MARKER)
    log = prediction_log(root)
    registry = serving(root).to_dict()
    counters: dict[str, dict[str, int]] = {}
    servers: dict[str, str] = {}
    copies: dict[str, int] | None = None
    error: str | None = None
    apart: list[str] = []
    if router_up:
        a = router_api(root, st.replicas)
        try:
            counters = a.counters()
            servers = a.server_status()
            copies = a.shadow_stats()
            apart = differences(st, a, state_dir(root) / rt.MAP_FILE)
        except rt.RouterError as e:
            error = str(e)
    colours = {
        name: ColourStatus(
            version=c.version,
            model_tag=c.model_tag,
            port=c.port,
            pid=c.pid,
            tag=c.tag,
            container=c.container or None,
            running=alive(c),
            smoke=c.smoke,
            weight=st.weights.get(name, 0),
            router_counts=counters.get(name),
            replicas=tuple(
                ReplicaStatus(
                    server_name(name, i),
                    r.port,
                    r.pid,
                    replica_alive(c, r),
                    servers.get(server_name(name, i)),
                )
                for i, r in enumerate(c.servers, 1)
            ),
            models=c.models or None,
        )
        for name, c in st.colours.items()
    }
    return StatusResult(
        router_url=st.url,
        router_pid=st.router_pid,
        router_up=router_up,
        router_error=error,
        runtime=st.runtime,
        prediction_log=show_target(log),
        live=st.live,
        weights=st.weights,
        colours=colours,
        shadow=st.shadow,
        last_analysis=st.last_analysis,
        history=st.history[-10:],
        registry=registry,
        shadow_copies=copies,
        shadow_agreement=_agreement(st, log),
        answering=answering(st, servers) if router_up and error is None else [],
        router_differences=apart,
    )


def answering(st: State, servers: dict[str, str]) -> list[str]:
    """The colours the router sends requests to now: those with weight and a server up; when
    none, the colours whose backups are up (the live colour died: the other answers)."""

    def up(name: str) -> bool:
        return servers.get(name, "").startswith("UP")

    names = {c: rt.server_names(c, st.replicas) for c in rt.COLOURS}
    weighted = [c for c in rt.COLOURS if st.weights.get(c, 0) > 0 and any(map(up, names[c]))]
    return weighted or [c for c in rt.COLOURS if any(up(f"{n}_b") for n in names[c])]


def _agreement(st: State, log: Path | str) -> dict | None:
    """The shadow's answers against the live ones since the shadow last went on; None when no
    colour stands beside a live one."""
    standby = st.standby
    if not (st.live and standby and standby in st.colours):
        return None
    since = next(
        (h["time"] for h in reversed(st.history) if h["action"] == "shadow" and h.get("on")),
        0.0,
    )
    try:
        return shadow_agreement(log, st.live, standby, since)
    except PredictionLogError as e:  # a database down: status still shows the rest
        return {"error": str(e)}
