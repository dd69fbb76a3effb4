"""`faultwatch deploy up | stage | switch | rollback | down`: each a function that does it and
returns what it did (faultwatch.deploy.results), or raises a named error
(faultwatch.deploy.errors) with the deployment unchanged. The canary, the shadow and the
analysis are in faultwatch.deploy.canary, `status` in faultwatch.deploy.status.

Two colours, blue and green, are two `faultwatch serve` processes of registry versions on free
loopback ports (or, with `up --runtime container`, two containers of faultwatch-<project>:<version>:
see faultwatch.deploy.containers), both logging to the one prediction log: a SQLite file, or
with FAULTWATCH_PREDICTION_LOG=postgresql://... a PostgreSQL database (what several machines
behind one router share; the analysis reads either). One colour is *live*; the other is the
*standby*: the staged new version, or the previous one after a switch (what `rollback` returns
to). A colour takes traffic only after it answered /readyz and passed its smoke test: its
answers on the golden set recorded at registration, within `deploy.smoke_tolerance`. With
`up --replicas N` each colour is N servers behind the router (faultwatch.deploy.router),
started, smoke-tested and stopped together.

Every operation that changes the deployment runs in `deployment(root, verb)` (the lock, the
state loaded, saved on success: faultwatch.deploy.state), first setting the router to the state
where a killed command left them apart (faultwatch.deploy.reconcile); the registry follows the
traffic (faultwatch.deploy.live), and the records it made are in the result.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from faultwatch.deploy import containers
from faultwatch.deploy import router as rt
from faultwatch.deploy.analysis import DeployParams
from faultwatch.deploy.config import params, prediction_log, router_api, router_config, shown_log
from faultwatch.deploy.errors import (
    AlreadyUp,
    DeployError,
    NothingToRollBack,
    PortTaken,
    SmokeTestFailed,
    StandbyBusy,
)
from faultwatch.deploy.live import mark_live, mark_refused, recorded
from faultwatch.deploy.processes import (
    ROUTER_MARKER,
    RUNTIMES,
    alive,
    every_replica_alive,
    pid_alive,
    start_colour,
    stop_colour,
    stop_pid,
)
from faultwatch.deploy.reconcile import restart_router, stop_orphans
from faultwatch.deploy.results import (
    QUIET,
    DownResult,
    RollbackResult,
    SmokeFigures,
    StageResult,
    SwitchResult,
    UpResult,
    Watch,
)
from faultwatch.deploy.routing import (
    apply_weights,
    drain,
    ready_standby,
    require_up,
    shadow_off,
    switch_to,
)
from faultwatch.deploy.state import Colour, State, deployment
from faultwatch.deploy.versions import Resolved, require_approved, resolve, smoke
from faultwatch.registry import ROLLED_BACK
from faultwatch.serve.launch import ServeError
from faultwatch.serve.launch import check_port_free as _check_bind


# ---------------------------------------------------------------------- up
def up(
    root: Path,
    version: str | None = None,
    port: int | None = None,
    runtime: str = "process",
    watch: Watch = QUIET,
    replicas: int = 1,
) -> UpResult:
    """`version` (default: production, else the latest approved) as blue behind the router on
    `port` (default: deploy.port), `replicas` servers per colour; already up with it: nothing
    started (`already`)."""
    if runtime not in RUNTIMES:
        raise DeployError(f"--runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if replicas < 1:
        raise DeployError(f"--replicas {replicas}: a colour needs one server at least")
    if replicas > 1 and runtime == "container":
        raise DeployError(
            f"--replicas {replicas} --runtime container: containers run one per colour; "
            "replicas are processes (--runtime process)"
        )
    log_target = prediction_log(root)
    if runtime == "container":  # before anything is stopped or started
        containers.check_reachable(log_target)
    p = params(root)
    with deployment(root, "up", watch.waiting) as d:
        st = d.state
        r = resolve(root, version)
        require_approved(root, r.version, "go live (deploy up)")
        cfg = router_config(root, st, p)
        if st.live and alive(st.colours.get(st.live)):
            if pid_alive(st.router_pid, ROUTER_MARKER):
                return _already_up(root, st, r, runtime, replicas, cfg.log_path)
            st.router_pid = restart_router(st, cfg)  # the router died; the colours run on
            st.record("up", router="restarted", pid=st.router_pid)
            d.save()
            return replace(
                _already_up(root, st, r, runtime, replicas, cfg.log_path), router_restarted=True
            )
        _stop_all(st)  # leftovers of a router or servers that died
        st = d.state = State(
            host=p.host,
            port=port or p.port,
            history=st.history,
            runtime=runtime,
            replicas=replicas,
        )
        check_port_free(st.host, st.port)  # before anything starts: nothing to leave behind
        each = f", {replicas} replicas" if replicas > 1 else ""
        watch.progress(
            f"deploy up: {r.version} as blue ({runtime}{each}) behind the router on "
            f"{st.host}:{st.port}"
        )
        cfg = router_config(root, st, p)
        blue = _start_blue(root, st, r, p, cfg, log_target, watch)
        st.colours = {"blue": blue}
        st.live, st.weights = "blue", {"blue": 100, "green": 0}
        more = {"replicas": replicas} if replicas > 1 else {}
        st.record("up", colour="blue", version=r.version, model_tag=r.model_tag, **more)
        d.save()
        made = mark_live(root, r.version, f"deploy up: live on blue at {st.url}")
    assert blue.smoke is not None
    return UpResult(
        r.version,
        "blue",
        st.url,
        cfg.log_path,
        smoke=SmokeFigures.from_dict(blue.smoke),
        registry=recorded(made),
    )


def _already_up(
    root: Path, st: State, r: Resolved, runtime: str, replicas: int, router_log: Path
) -> UpResult:
    """A deployment runs: the same version, runtime and replicas is nothing to do, another is
    refused."""
    assert st.live is not None
    live = st.colours[st.live]
    if live.version != r.version or st.runtime != runtime:
        raise AlreadyUp(
            f"already up with {live.version} live on {st.live}; "
            f"`faultwatch deploy stage {r.version}` then `switch`, or `down` first"
        )
    if st.replicas != replicas:
        raise AlreadyUp(
            f"already up with {st.replicas} replicas per colour (asked: {replicas}); the "
            "router's servers are set at `up`: `faultwatch deploy down`, then `up` again"
        )
    made = None
    if st.weights.get(st.live, 0) == 100:  # the registry follows the traffic
        made = mark_live(root, r.version, f"deploy up: live on {st.live}")
    return UpResult(r.version, st.live, st.url, router_log, already=True, registry=recorded(made))


def _start_blue(
    root: Path,
    st: State,
    r: Resolved,
    p: DeployParams,
    cfg: rt.RouterConfig,
    log_target: Path | str,
    watch: Watch,
) -> Colour:
    """Blue started and smoke-tested, then the router in front of it with all the traffic on
    it; on any failure (also an interrupt) what was started is stopped."""
    blue: Colour | None = None
    try:
        blue = start_colour(
            root,
            "blue",
            r.version,
            r.model_tag,
            p,
            st.runtime,
            log_target,
            watch.progress,
            st.replicas,
            st.port,
        )
        blue.models = _models(r)
        blue.smoke = smoke(blue, r, p)
        if not blue.smoke["passed"]:
            raise SmokeTestFailed(
                f"blue ({r.version}) failed its smoke test: {blue.smoke['message']}"
            )
        st.router_pid = rt.start(cfg, {"blue": [s.port for s in blue.servers], "green": None}, None)
        a = router_api(root, st.replicas)
        a.enable("blue")
        a.set_weight("blue", 100)
        a.enable_backup("blue", True)
    except BaseException:
        stop_pid(st.router_pid, ROUTER_MARKER)
        stop_colour(blue)
        raise
    return blue


def _models(r: Resolved) -> dict[str, str]:
    """A fleet bento's groups and their store entries, for the state ({} for one model)."""
    return {g: m.tag for g, m in (r.models or {}).items()}


def check_port_free(host: str, port: int) -> None:
    """PortTaken when the router's port is taken: checked before anything starts."""
    try:
        _check_bind(host, port)
    except ServeError as e:
        raise PortTaken(f"{e}; nothing was started") from None


# ---------------------------------------------------------------------- stage
def stage(root: Path, version: str, watch: Watch = QUIET) -> StageResult:
    """`version` as the standby colour, smoke-tested, with no traffic. A failed smoke test is
    the result's `passed` False (the colour stopped, recorded), not an error."""
    p = params(root)
    log_target = prediction_log(root)
    with deployment(root, "stage", watch.waiting) as d:
        st = d.state
        a = require_up(root, st, watch.progress)
        colour, live = st.standby, st.live
        assert colour is not None and live is not None
        r = resolve(root, version)
        if st.runtime == "container":  # refused before the standby is touched
            containers.image_for(r.version, r.model_tag, root)
            containers.check_reachable(log_target)
        old = st.colours.get(colour)

        def result(c: Colour, **how: bool) -> StageResult:
            figures = SmokeFigures.from_dict(c.smoke or {})
            return StageResult(r.version, colour, live, st.url, c.port, r.approval, figures, **how)

        if old and old.version == r.version and every_replica_alive(old) and old.smoke_passed:
            return result(old, already=True)
        if st.weights.get(colour, 0) > 0:
            raise StandbyBusy(
                f"{colour} takes {st.weights[colour]} % of the traffic (a canary): "
                "`faultwatch deploy rollback` first"
            )
        watch.progress(f"deploy stage: {r.version} as {colour}")
        shadow_was_on = st.shadow
        if st.shadow:  # its target is being replaced
            shadow_off(a, st, router_config(root, st, p).map_path)
        a.disable(colour)
        if old is not None:
            drain(a, colour)
            stop_colour(old)
            st.colours.pop(colour, None)
            d.save()
        c = start_colour(
            root,
            colour,
            r.version,
            r.model_tag,
            p,
            st.runtime,
            log_target,
            watch.progress,
            st.replicas,
            st.port,
        )
        c.models = _models(r)
        c.smoke = smoke(c, r, p)
        a.set_address(colour, [s.port for s in c.servers])
        st.colours[colour] = c
        if not c.smoke["passed"]:
            stop_colour(c)
            c.pid = 0
            for s in c.replicas:
                s.pid = 0
            st.record(
                "stage",
                colour=colour,
                version=r.version,
                smoke="failed",
                reason=c.smoke["message"],
            )
            return result(c, shadow_stopped=shadow_was_on)
        a.enable(colour)
        a.set_weight(colour, 0)
        a.enable_backup(colour, True)
        st.record("stage", colour=colour, version=r.version, model_tag=r.model_tag, smoke="passed")
        return result(c, shadow_stopped=shadow_was_on)


# ---------------------------------------------------------------------- switch and rollback
def switch(root: Path, watch: Watch = QUIET) -> SwitchResult:
    """All the traffic to the staged colour (its smoke test passed); the other stays up."""
    p = params(root)
    with deployment(root, "switch", watch.waiting) as d:
        st = d.state
        a = require_up(root, st, watch.progress)
        c = ready_standby(st, "switch")
        require_approved(root, c.version, "take the traffic (deploy switch)")
        old, new = st.live, st.standby
        assert old and new
        t0 = time.monotonic()
        if st.shadow:
            shadow_off(a, st, router_config(root, st, p).map_path)
        switch_to(a, st, new)
        took = (time.monotonic() - t0) * 1e3
        st.record("switch", frm=old, to=new, version=c.version, ms=round(took, 1))
        d.save()
        made = mark_live(root, c.version, f"deploy switch: all traffic on {new}")
    return SwitchResult(c.version, old, new, took, st.url, recorded(made))


def rollback(root: Path, watch: Watch = QUIET) -> RollbackResult:
    """A canary back to 0 %, or (no canary) all the traffic back to the standby colour; the
    registry records the version turned away."""
    with deployment(root, "rollback", watch.waiting) as d:
        st = d.state
        a = require_up(root, st, watch.progress)
        live, standby = st.live, st.standby
        assert live and standby
        if st.weights.get(standby, 0) > 0:
            pct = st.weights[standby]
            apply_weights(a, st, {live: 100, standby: 0})
            st.record("rollback", canary_of=standby, to=live)
            d.save()
            back = st.colours.get(standby)
            made = None
            if back is not None and back.version != st.colours[live].version:
                why = f"deploy rollback: its canary at {pct} % on {standby} ended by hand"
                made = mark_refused(root, back.version, ROLLED_BACK, why, st.colours[live])
            version = st.colours[live].version
            return RollbackResult(live, standby, version, pct, st.url, recorded(made))
        c = st.colours.get(standby)
        if c is None or not alive(c) or not c.smoke_passed:
            raise NothingToRollBack(
                f"nothing to roll back to: {standby} "
                + ("does not run" if c is None or not alive(c) else "has not passed its smoke test")
            )
        require_approved(root, c.version, "take the traffic back (deploy rollback)")
        switch_to(a, st, standby)
        st.record("rollback", frm=live, to=standby, version=c.version)
        d.save()
        left = st.colours.get(live)
        refused = None
        if left is not None and left.version != c.version:
            why = f"deploy rollback: all traffic back to {standby} ({c.version})"
            refused = mark_refused(root, left.version, ROLLED_BACK, why, c)
        made = mark_live(root, c.version, f"deploy rollback from {live}")
    return RollbackResult(standby, live, c.version, 0, st.url, recorded(refused, made))


# ---------------------------------------------------------------------- down
def _stop_all(st: State) -> None:
    stop_pid(st.router_pid, ROUTER_MARKER)
    for c in st.colours.values():
        stop_colour(c)


def down(root: Path, watch: Watch = QUIET) -> DownResult:
    """Stop the router, then both colours, then anything of this project no state listed; the
    prediction log stays."""
    with deployment(root, "down", watch.waiting) as d:
        st = d.state
        if st.live is None and not st.colours and not st.router_pid:
            orphans = stop_orphans(root)
            return DownResult("orphans" if orphans else "nothing", tuple(orphans))
        if pid_alive(st.router_pid, ROUTER_MARKER):
            # clients first: no request reaches a dying server
            stop_pid(st.router_pid, ROUTER_MARKER)
        for c in st.colours.values():
            stop_colour(c)
        orphans = stop_orphans(root)
        d.state = State(history=st.history)
        d.state.record("down")
    return DownResult("stopped", tuple(orphans), shown_log(prediction_log(root), root))
