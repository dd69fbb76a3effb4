"""`faultwatch deploy`: what each command does (see faultwatch.deploy.router for the router).

Two colours, blue and green, are two `faultwatch serve` processes of registry versions on free
loopback ports (or, with `up --runtime container`, two containers of faultwatch-<project>:<version>: see
faultwatch.deploy.containers), both logging to the one prediction log: a SQLite file, or
with FAULTWATCH_PREDICTION_LOG=postgresql://... a PostgreSQL database (what several machines
behind one router share; the analysis reads either). One colour is *live*; the other is the
*standby*: the staged new version, or the previous one after a switch (what `rollback` returns
to). A colour takes traffic only after it answered /readyz and passed its smoke test: its
answers on the golden set recorded at registration, within `deploy.smoke_tolerance`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from faultwatch import progress
from faultwatch.deploy import router as rt
from faultwatch.deploy.analysis import (
    Analysis,
    DeployParams,
    analyse,
    live_rate,
    shadow_agreement,
)
from faultwatch.deploy.live import (
    ROUTER_MARKER,
    SERVER_MARKER,
    alive,
    mark_live,
    mark_refused,
    serving,
)
from faultwatch.deploy.state import Colour, DeployError, State, load, locked, save, state_dir
from faultwatch.paths import bentoml_home, display_path
from faultwatch.registry import CANARY_ABORTED, ROLLED_BACK
from faultwatch.serve.predlog.entries import PredictionLogError
from faultwatch.serve.predlog.sqlite import resolve_target, show_target

EXIT_REFUSED = 3  # a gate said no: smoke test, analysis, inconclusive analysis


def say(msg: str) -> None:
    """What a command did or decided (stdout); the steps on the way are `progress.step`
    (stderr), and a command that changed the deployment ends with `progress.done`."""
    print(msg, flush=True)


def at_router(st: State) -> str:
    return f"the router at {st.url}"


def _shown(target: Path | str, root: Path) -> str:
    """The prediction log for a person: a file relative to the project, a URL masked."""
    return display_path(target, root) if isinstance(target, Path) else show_target(target)


def params(root: Path) -> DeployParams:
    from faultwatch.params import load_params, section

    return section("deploy", load_params(root / "params.yaml"))


def prediction_log(root: Path) -> Path | str:
    """The log both colours write: FAULTWATCH_PREDICTION_LOG (a path, made absolute, or a
    postgresql:// URL kept a str), else the serve default. Print it with `show_target`."""
    return resolve_target(os.environ.get("FAULTWATCH_PREDICTION_LOG"), root)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- versions and models
def resolve(root: Path, version: str | None) -> tuple[str, str, Path, str]:
    """(registry version, model tag, store entry folder, approval) of `version` (default: the
    production version, else the latest approved one)."""
    import bentoml
    from bentoml.exceptions import NotFound

    from faultwatch import registry

    if version is None:
        v = registry.production(root) or registry.latest_approved(root)
        if v is None:
            raise DeployError(
                "no production or approved version in the registry: promote one "
                "(`faultwatch promote`) or name a version (`faultwatch registry list`)"
            )
    else:
        v = registry.get(version, root)
    if not v.model_tag:
        raise DeployError(f"registry version {v.version} names no model store entry")
    try:
        entry = bentoml.models.get(v.model_tag)
    except NotFound:
        home = bentoml_home(root)
        raise DeployError(
            f"model {v.model_tag} of registry version {v.version} is not in the store {home}. "
            f"Rebuild it from its commit {v.commit[:12]}: `git worktree add ../fw-{v.version} "
            f"{v.commit}`, then in that folder `dvc pull` (or `dvc repro register`) with "
            f"BENTOML_HOME={home}; then stage it again"
        ) from None
    return v.version, str(entry.tag), Path(entry.path), v.approval


def training_fault_rate(entry_path: Path) -> float | None:
    """The fault share of the split the model was evaluated on, recorded at registration."""
    from faultwatch.serve.golden import GoldenError, load_golden

    try:
        return load_golden(entry_path).fault_rate
    except GoldenError:
        return None


# ---------------------------------------------------------------------- serving processes
def wait_ready(url: str, c: Colour, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    log = Path(c.log)
    while time.monotonic() < deadline:
        if not (alive(c) if c.container else rt.pid_alive(c.pid)):
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise DeployError(f"the server exited before it was ready; its log {log}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise DeployError(f"{url}/readyz did not answer 200 within {timeout_s:g} s; log: {log}")


RUNTIMES = ("process", "container")


def start_colour(
    root: Path,
    colour: str,
    version: str,
    model_tag: str,
    p: DeployParams,
    runtime: str = "process",
) -> Colour:
    port = free_port(p.host)
    d = state_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    log = d / f"{colour}.log"
    tag = f"{colour}-{uuid.uuid4().hex[:12]}"
    if runtime == "container":
        return start_container(root, colour, version, model_tag, p, port, log, tag)
    env = {
        **os.environ,
        rt.TAG_ENV: tag,
        rt.PROJECT_ENV: str(root.resolve()),  # `deploy down` finds it even when the state lost it
        "FAULTWATCH_COLOUR": colour,
        "FAULTWATCH_PREDICTION_LOG": str(prediction_log(root)),
        "BENTOML_HOME": str(bentoml_home(root).resolve()),
    }
    progress.step(f"  starting {colour}: {version} ({model_tag}) on {p.host}:{port} (log {log})")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            # the registry version: its bento when one packages the model, else this checkout's
            [
                sys.executable,
                "-m",
                "faultwatch",
                "serve",
                version,
                "--host",
                p.host,
                "--port",
                str(port),
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: outlives the CLI, stopped whole
        )
    c = Colour(version, model_tag, port, proc.pid, str(log), time.time(), tag=tag)
    ready_or_stopped(c, p, colour, time.monotonic())
    return c


def ready_or_stopped(c: Colour, p: DeployParams, colour: str, t0: float, what: str = "") -> None:
    """Wait for the colour's /readyz; stop it on any failure (also an interrupt)."""
    try:
        wait_ready(f"http://{p.host}:{c.port}", c, p.ready_timeout_s)
    except BaseException:
        stop_colour(c)
        raise
    progress.step(f"  {colour} ready in {time.monotonic() - t0:.1f} s{what}")


def start_container(
    root: Path,
    colour: str,
    version: str,
    model_tag: str,
    p: DeployParams,
    port: int,
    log: Path,
    tag: str,
) -> Colour:
    from faultwatch.deploy import containers

    eng, image = containers.image_for(version, model_tag, root)
    name = f"faultwatch-{tag}"
    log.unlink(missing_ok=True)  # the container's log file is its own, one per container
    progress.step(
        f"  starting {colour}: {image} ({model_tag}) as container {name} on {p.host}:{port}"
    )
    t0 = time.monotonic()
    containers.run(
        eng,
        image,
        name,
        p.host,
        port,
        prediction_log(root),
        log,
        {rt.TAG_ENV: tag, "FAULTWATCH_COLOUR": colour},
    )
    c = Colour(
        version,
        model_tag,
        port,
        containers.host_pid(eng, name),
        str(log),
        time.time(),
        tag=tag,
        container=name,
    )
    ready_or_stopped(c, p, colour, t0, " (container start to /readyz)")
    return c


def smoke(c: Colour, entry_path: Path, p: DeployParams) -> dict[str, Any]:
    from faultwatch.serve.golden import load_golden, smoke_test

    try:
        golden = load_golden(entry_path)
    except Exception as e:  # a missing or malformed golden set is a failed smoke test
        return {"passed": False, "message": str(e)}
    result = smoke_test(f"http://{p.host}:{c.port}", golden, tolerance=p.smoke_tolerance)
    return {**result.as_dict(), "passed": bool(result.passed)}


def stop_colour(c: Colour | None) -> None:
    """The server, gracefully (its supervisor stops its workers), then any worker left."""
    if c is not None and c.container:
        from faultwatch.deploy import containers

        containers.stop(c.container)
    elif c is not None:
        rt.stop_pid(c.pid, SERVER_MARKER)
    if c is not None:
        rt.stop_tagged(c.tag)


# ---------------------------------------------------------------------- the router
def router_config(root: Path, st: State, p: DeployParams) -> rt.RouterConfig:
    return rt.RouterConfig(
        host=st.host,
        port=st.port or p.port,
        state_dir=state_dir(root),
        buffer_kib=p.router_buffer_kib,
        shadow_max_inflight=p.shadow_max_inflight,
        shadow_timeout_s=p.shadow_timeout_s,
    )


def api(root: Path, st: State) -> rt.RuntimeAPI:
    return rt.RuntimeAPI(rt.socket_path(state_dir(root)))


def require_up(root: Path, st: State) -> rt.RuntimeAPI:
    if st.live is None or not rt.pid_alive(st.router_pid, ROUTER_MARKER):
        raise DeployError("nothing is deployed here: `faultwatch deploy up` first")
    return api(root, st)


def apply_weights(a: rt.RuntimeAPI, st: State, weights: dict[str, int]) -> None:
    """Raise before lowering: at no moment does every colour have weight 0. A colour that gets
    traffic runs at full CPU priority (a shadow ran at a lower one)."""
    for colour, w in weights.items():
        c = st.colours.get(colour)
        if w > 0 and c is not None:
            rt.set_low_priority(c.tag, False)
    order = sorted(weights, key=lambda c: weights[c] < st.weights.get(c, 0))
    for colour in order:
        a.set_weight(colour, weights[colour])
        st.weights[colour] = weights[colour]


def shadow_off(a: rt.RuntimeAPI, st: State, map_path: Path) -> None:
    """No more copies, and the colour that got them back at full CPU priority."""
    a.shadow(None, map_path)
    st.shadow = False
    c = st.colours.get(st.standby) if st.standby else None
    if c is not None:
        rt.set_low_priority(c.tag, False)


def ready_standby(st: State, what: str) -> Colour:
    colour = st.standby
    c = st.colours.get(colour) if colour else None
    if c is None:
        raise DeployError(f"{what}: nothing is staged; `faultwatch deploy stage VERSION` first")
    if not c.smoke_passed:
        why = (c.smoke or {}).get("message", "no smoke test")
        raise DeployError(f"{what}: {colour} ({c.version}) has not passed its smoke test: {why}")
    if not alive(c):
        raise DeployError(
            f"{what}: {colour} ({c.version}) is not running any more (log {c.log}); stage it "
            "again: `faultwatch deploy stage VERSION`"
        )
    return c


# ---------------------------------------------------------------------- commands
def cmd_up(root: Path, version: str | None, port: int | None, runtime: str = "process") -> int:
    if runtime not in RUNTIMES:
        raise DeployError(f"--runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime == "container":  # before anything is stopped or started
        from faultwatch.deploy import containers

        containers.check_reachable(prediction_log(root))
    p = params(root)
    with locked(root, "up"):
        st = load(root)
        version, tag, entry, _ = resolve(root, version)
        if (
            st.live
            and rt.pid_alive(st.router_pid, ROUTER_MARKER)
            and alive(st.colours.get(st.live))
        ):
            live = st.colours[st.live]
            if live.version == version and st.runtime == runtime:
                say(f"already up: {st.live} serves {version} at {st.url}")
                if st.weights.get(st.live, 0) == 100:  # the registry follows the traffic
                    _registry(root, mark_live(root, version, f"deploy up: live on {st.live}"))
                return 0
            raise DeployError(
                f"already up with {live.version} live on {st.live}; "
                f"`faultwatch deploy stage {version}` then `switch`, or `down` first"
            )
        cleanup(root, st)  # leftovers of a router or servers that died
        st = State(host=p.host, port=port or p.port, history=st.history, runtime=runtime)
        check_port_free(st.host, st.port)  # before anything starts: nothing to leave behind
        progress.step(
            f"deploy up: {version} as blue ({runtime}) behind the router on {st.host}:{st.port}"
        )
        cfg = router_config(root, st, p)
        blue: Colour | None = None
        try:
            blue = start_colour(root, "blue", version, tag, p, runtime)
            blue.smoke = smoke(blue, entry, p)
            if not blue.smoke["passed"]:
                raise DeployError(
                    f"blue ({version}) failed its smoke test: {blue.smoke['message']}"
                )
            say(f"  {blue.smoke.get('message') or 'smoke test passed'}")
            st.router_pid = rt.start(cfg, {"blue": blue.port, "green": None}, None)
            a = api(root, st)
            a.enable("blue")
            a.set_weight("blue", 100)
            a.enable_backup("blue", True)
        except BaseException:  # also an interrupt: stop what this command started
            rt.stop_pid(st.router_pid, ROUTER_MARKER)
            stop_colour(blue)
            raise
        st.colours = {"blue": blue}
        st.live, st.weights = "blue", {"blue": 100, "green": 0}
        st.record("up", colour="blue", version=version, model_tag=tag)
        save(root, st)
        _registry(root, mark_live(root, version, f"deploy up: live on blue at {st.url}"))
    progress.done(
        f"{version} live on blue (router log {display_path(cfg.log_path, root)})",
        at_router(st),
        "faultwatch deploy stage VERSION (a new version as green)",
    )
    return 0


def check_port_free(host: str, port: int) -> None:
    """DeployError when the router's port is taken: checked before anything starts."""
    from faultwatch.serve.launch import ServeError
    from faultwatch.serve.launch import check_port_free as check

    try:
        check(host, port)
    except ServeError as e:
        raise DeployError(f"{e}; nothing was started") from None


def _registry(root: Path, line: str | None) -> None:
    """Say what the registry recorded, and refresh the report page, which shows it."""
    if line:
        from faultwatch.report_page import refresh

        say(line)
        say(f"  {refresh(root)}")


def cmd_stage(root: Path, version: str) -> int:
    p = params(root)
    with locked(root, "stage"):
        st = load(root)
        a = require_up(root, st)
        colour = st.standby
        assert colour is not None
        version, tag, entry, approval = resolve(root, version)
        if st.runtime == "container":  # refused before the standby is touched
            from faultwatch.deploy import containers

            containers.image_for(version, tag, root)
            containers.check_reachable(prediction_log(root))
        old = st.colours.get(colour)
        if old and old.version == version and alive(old) and old.smoke_passed:
            say(f"already staged: {version} on {colour}, smoke test passed")
            return 0
        if st.weights.get(colour, 0) > 0:
            raise DeployError(
                f"{colour} takes {st.weights[colour]} % of the traffic (a canary): "
                "`faultwatch deploy rollback` first"
            )
        progress.step(f"deploy stage: {version} as {colour}")
        if approval != "approved":
            say(
                f"  note: the promotion gate's decision on {version} is '{approval}' "
                f"(`faultwatch registry show {version}`); it takes traffic only after its smoke "
                "test, and `canary --steps` gates each step on live traffic"
            )
        if st.shadow:
            shadow_off(a, st, router_config(root, st, p).map_path)
            say("  shadow off (its target is being replaced)")
        a.disable(colour)
        if old is not None:
            drain(a, colour)
            stop_colour(old)
            st.colours.pop(colour, None)
            save(root, st)
        c = start_colour(root, colour, version, tag, p, st.runtime)
        c.smoke = smoke(c, entry, p)
        a.set_address(colour, c.port)
        if not c.smoke["passed"]:
            stop_colour(c)
            c.pid = 0
            st.colours[colour] = c
            st.record(
                "stage", colour=colour, version=version, smoke="failed", reason=c.smoke["message"]
            )
            save(root, st)
            say(f"refused: {colour} ({version}) failed its smoke test: {c.smoke['message']}")
            say(f"{st.live} keeps all the traffic; nothing was switched")
            return EXIT_REFUSED
        a.enable(colour)
        a.set_weight(colour, 0)
        a.enable_backup(colour, True)
        st.colours[colour] = c
        st.record("stage", colour=colour, version=version, model_tag=tag, smoke="passed")
        save(root, st)
    progress.done(
        f"{version} staged on {colour} (port {c.port}), "
        f"{c.smoke.get('message') or 'smoke test passed'}; no traffic yet",
        at_router(st),
        "faultwatch deploy canary --steps (or: deploy shadow on, deploy switch)",
    )
    return 0


def drain(a: rt.RuntimeAPI, colour: str, timeout_s: float = 30.0) -> None:
    """Wait until the colour has no request in flight (it takes no new ones any more)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if a.counters()[colour]["scur"] == 0:
            return
        time.sleep(0.05)


def _switch_to(a: rt.RuntimeAPI, st: State, colour: str) -> None:
    other = "green" if colour == "blue" else "blue"
    apply_weights(a, st, {colour: 100, other: 0})
    st.live = colour


def cmd_switch(root: Path) -> int:
    p = params(root)
    with locked(root, "switch"):
        st = load(root)
        a = require_up(root, st)
        c = ready_standby(st, "switch")
        old, new = st.live, st.standby
        assert old and new
        t0 = time.monotonic()
        if st.shadow:
            shadow_off(a, st, router_config(root, st, p).map_path)
        _switch_to(a, st, new)
        took = (time.monotonic() - t0) * 1e3
        st.record("switch", frm=old, to=new, version=c.version, ms=round(took, 1))
        save(root, st)
        _registry(root, mark_live(root, c.version, f"deploy switch: all traffic on {new}"))
    progress.done(
        f"all traffic to {new} ({c.version}), switched in {took:.0f} ms; {old} stays up",
        at_router(st),
        f"faultwatch deploy status (faultwatch deploy rollback returns to {old})",
    )
    return 0


def cmd_rollback(root: Path) -> int:
    with locked(root, "rollback"):
        st = load(root)
        a = require_up(root, st)
        live, standby = st.live, st.standby
        assert live and standby
        if st.weights.get(standby, 0) > 0:
            pct = st.weights[standby]
            apply_weights(a, st, {live: 100, standby: 0})
            st.record("rollback", canary_of=standby, to=live)
            save(root, st)
            back = st.colours.get(standby)
            if back is not None and back.version != st.colours[live].version:
                why = f"deploy rollback: its canary at {pct} % on {standby} ended by hand"
                _registry(root, mark_refused(root, back.version, ROLLED_BACK, why))
            progress.done(
                f"rolled back: the canary on {standby} is at 0 %, {live} has all the traffic",
                at_router(st),
                "faultwatch deploy stage VERSION (another version), or deploy down",
            )
            return 0
        c = st.colours.get(standby)
        if c is None or not alive(c) or not c.smoke_passed:
            raise DeployError(
                f"nothing to roll back to: {standby} "
                + ("does not run" if c is None or not alive(c) else "has not passed its smoke test")
            )
        _switch_to(a, st, standby)
        st.record("rollback", frm=live, to=standby, version=c.version)
        save(root, st)
        left = st.colours.get(live)
        if left is not None and left.version != c.version:
            why = f"deploy rollback: all traffic back to {standby} ({c.version})"
            _registry(root, mark_refused(root, left.version, ROLLED_BACK, why))
        _registry(root, mark_live(root, c.version, f"deploy rollback from {live}"))
    progress.done(
        f"rolled back: all traffic to {standby} ({c.version}); {live} stays up",
        at_router(st),
        "faultwatch deploy status",
    )
    return 0


def router_errors(a: rt.RuntimeAPI, colour: str) -> int:
    c = a.counters()[colour]
    return c["5xx"] + c["eresp"]


TRAFFIC_WINDOW_S = 10.0  # how far back `canary --steps` measures the live traffic


def check_traffic(log: Path | str, steps: list[int], interval: float, p: DeployParams) -> None:
    """Refuse a gradual canary whose first step cannot get `deploy.min_requests` answers from
    the live traffic of the last TRAFFIC_WINDOW_S seconds: every step would be inconclusive."""
    first = next((s for s in steps if s < 100), None)
    if first is None:
        return
    rate = live_rate(log, TRAFFIC_WINDOW_S)
    expected = rate * interval * first / 100
    if expected >= p.min_requests:
        return
    need = f"{p.min_requests / (rate * first / 100):.0f} s" if rate > 0 else "traffic first"
    raise DeployError(
        f"canary --steps {','.join(map(str, steps))} --interval {interval:g}: the live traffic "
        f"of the last {TRAFFIC_WINDOW_S:g} s is {rate:.1f} answers/s, so at {first} % the canary "
        f"would get about {expected:.0f} answers in {interval:g} s, below deploy.min_requests "
        f"({p.min_requests}): the analysis would be inconclusive. Raise --interval (at {first} "
        f"%: {need}), start with a larger step, or send more traffic; nothing was changed"
    )


def cmd_canary(root: Path, pct: int | None, steps: list[int] | None, interval: float | None) -> int:
    p = params(root)
    with locked(root, "canary"):
        st = load(root)
        a = require_up(root, st)
        c = ready_standby(st, "canary")
        live, green = st.live, st.standby
        assert live and green
        if steps is None:
            assert pct is not None
            if pct >= 100:
                _switch_to(a, st, green)
                st.record("canary", colour=green, pct=100, switched=True)
                save(root, st)
                _registry(root, mark_live(root, c.version, f"deploy canary 100 %: live on {green}"))
                progress.done(
                    f"canary 100 %: {green} ({c.version}) is live; {live} stays up",
                    at_router(st),
                    f"faultwatch deploy status (faultwatch deploy rollback returns to {live})",
                )
                return 0
            apply_weights(a, st, {green: pct, live: 100 - pct})
            st.record("canary", colour=green, pct=pct)
            save(root, st)
            progress.done(
                f"canary: {green} ({c.version}) takes {pct} %, {live} {100 - pct} %",
                at_router(st),
                "faultwatch deploy analyse (then: deploy switch, or deploy rollback)",
            )
            return 0

        interval = p.canary_interval_s if interval is None else interval
        log = prediction_log(root)
        check_traffic(log, steps, interval, p)
        entry = resolve(root, c.version)[2]
        reference = training_fault_rate(entry)
        progress.step(
            f"canary {c.version} on {green}: steps {steps} %, {interval:g} s each, analysis "
            f"against {live}"
        )
        for step in steps:
            if step >= 100:
                _switch_to(a, st, green)
                st.record("canary", colour=green, pct=100, switched=True)
                save(root, st)
                why = f"deploy canary: every step passed, live on {green}"
                _registry(root, mark_live(root, c.version, why))
                say(f"  100 %: {green} ({c.version}) is live; {live} stays up for rollback.")
                progress.done(
                    f"{c.version} live on {green} after the canary",
                    at_router(st),
                    f"faultwatch deploy status (faultwatch deploy rollback returns to {live})",
                )
                return 0
            apply_weights(a, st, {green: step, live: 100 - step})
            since, errors0 = time.time(), router_errors(a, green)
            st.record("canary", colour=green, pct=step)
            save(root, st)
            progress.step(f"  {step} %: waiting {interval:g} s ...")
            time.sleep(interval)
            result = analyse(
                log,
                green,
                live,
                since,
                p,
                reference,
                router_errors=router_errors(a, green) - errors0,
            )
            st.last_analysis = {**result.to_dict(), "step": step}
            say("  " + result.summary().replace("\n", "\n  "))
            if result.verdict != "pass":
                apply_weights(a, st, {green: 0, live: 100})
                st.record(
                    "canary_abort",
                    colour=green,
                    pct=step,
                    verdict=result.verdict,
                    reason=result.reason,
                )
                save(root, st)
                why = f"canary at {step} % on {green}: {result.verdict} ({result.reason})"
                _registry(root, mark_refused(root, c.version, CANARY_ABORTED, why))
                say(
                    f"aborted at {step} %: {result.verdict} ({result.reason}); {green} is back "
                    f"to 0 %, {live} has all the traffic."
                )
                return EXIT_REFUSED
            save(root, st)
        progress.done(
            f"canary done at {steps[-1]} % on {green} ({c.version}), every analysis passed",
            at_router(st),
            "faultwatch deploy switch (all traffic to it)",
        )
        return 0


def cmd_shadow(root: Path, on: bool) -> int:
    p = params(root)
    with locked(root, "shadow"):
        st = load(root)
        a = require_up(root, st)
        cfg = router_config(root, st, p)
        if not on:
            shadow_off(a, st, cfg.map_path)
            st.record("shadow", on=False)
            save(root, st)
            progress.done("shadow off", at_router(st), "faultwatch deploy status")
            return 0
        c = ready_standby(st, "shadow on")
        # on one host the shadow's inference shares the CPU with the live one: in the idle
        # class it gets what the live colour leaves (copies it cannot take wait, then are
        # dropped and counted)
        if p.shadow_low_priority:
            rt.set_low_priority(c.tag, True)
        a.shadow(f"http://{p.host}:{c.port}", cfg.map_path)
        st.shadow = True
        st.record("shadow", on=True, colour=st.standby, version=c.version)
        save(root, st)
    progress.done(
        f"shadow on: live traffic copied to {st.standby} ({c.version}), its answers logged, "
        "not returned",
        at_router(st),
        "faultwatch deploy status (the agreement with the live answers)",
    )
    return 0


def cmd_analyse(root: Path, window_s: float) -> int:
    p = params(root)
    st = load(root)
    require_up(root, st)
    c = ready_standby(st, "analyse")
    live, green = st.live, st.standby
    assert live and green
    result: Analysis = analyse(
        prediction_log(root),
        green,
        live,
        time.time() - window_s,
        p,
        training_fault_rate(resolve(root, c.version)[2]),
        router_errors=0,
    )
    say(result.summary())
    return 0 if result.verdict == "pass" else EXIT_REFUSED


def status_dict(root: Path) -> dict[str, Any]:
    st = load(root)
    router_up = rt.pid_alive(st.router_pid, ROUTER_MARKER)
    out: dict[str, Any] = {
        "router": {"url": st.url, "pid": st.router_pid, "up": router_up},
        "runtime": st.runtime,
        "prediction_log": show_target(prediction_log(root)),
        "live": st.live,
        "weights": st.weights,
        "colours": {},
        "shadow": st.shadow,
        "last_analysis": st.last_analysis,
        "history": st.history[-10:],
        "registry": serving(root).to_dict(),
    }
    counters: dict[str, dict[str, int]] = {}
    if router_up:
        a = api(root, st)
        try:
            counters = a.counters()
            out["shadow_copies"] = a.shadow_stats()
        except rt.RouterError as e:
            out["router"]["error"] = str(e)
    for name, c in st.colours.items():
        out["colours"][name] = {
            "version": c.version,
            "model_tag": c.model_tag,
            "port": c.port,
            "pid": c.pid,
            "tag": c.tag,
            "container": c.container or None,
            "running": alive(c),
            "smoke": c.smoke,
            "weight": st.weights.get(name, 0),
            "router_counts": counters.get(name),
        }
    standby = st.standby
    if st.live and standby and standby in st.colours:
        since = next(
            (h["time"] for h in reversed(st.history) if h["action"] == "shadow" and h.get("on")),
            0.0,
        )
        try:
            out["shadow_agreement"] = shadow_agreement(
                prediction_log(root), st.live, standby, since
            )
        except PredictionLogError as e:  # a database down: status still shows the rest
            out["shadow_agreement"] = {"error": str(e)}
    return out


def cmd_status(root: Path, as_json: bool) -> int:
    s = status_dict(root)
    if as_json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    reg = s["registry"]
    if s["live"] is None:
        say("nothing deployed (`faultwatch deploy up`)")
        say(f"registry production: {reg['production'] or 'none'}")
        if reg["problem"]:
            say(f"DISAGREE: {reg['problem']}")
        return 0
    r = s["router"]
    say(
        f"router {r['url']} ({'up' if r['up'] else 'DOWN'}, pid {r['pid']}); live: {s['live']}"
        f" (colours as {'processes' if s['runtime'] == 'process' else 'containers'})"
    )
    say(f"prediction log: {s['prediction_log']}")
    for name, c in s["colours"].items():
        smoke = "passed" if (c["smoke"] or {}).get("passed") else "FAILED" if c["smoke"] else "-"
        counts = c["router_counts"] or {}
        say(
            f"  {name:5} {c['version']:>8} {c['model_tag']:30} port {c['port']:<5} "
            f"weight {c['weight']:>3} % {'running' if c['running'] else 'stopped'}, smoke {smoke},"
            f" answers 2xx {counts.get('2xx', '-')} 5xx {counts.get('5xx', '-')}"
        )
    copies = s.get("shadow_copies") or {}
    say(
        f"shadow: {'on' if s['shadow'] else 'off'}"
        + (
            f" (copies sent {copies.get('sent')}, answered {copies.get('answered')}, failed "
            f"{copies.get('failed')}, dropped busy {copies.get('dropped_busy')}, dropped body "
            f"{copies.get('dropped_body')})"
            if copies
            else ""
        )
    )
    agr = s.get("shadow_agreement")
    if agr and agr.get("error"):
        say(f"shadow agreement: not read ({agr['error']})")
    elif agr and agr["shadow_answers"]:
        same = "n/a" if agr["same_label"] is None else f"{agr['same_label']:.1%}"
        diff = "n/a" if agr["mean_abs_diff"] is None else f"{agr['mean_abs_diff']:.4f}"
        say(
            f"shadow agreement: {agr['joined']} of {agr['shadow_answers']} shadow answers found "
            f"their live twin; same label {same}, mean |probability difference| {diff}"
        )
    la = s.get("last_analysis")
    if la:
        say(f"last analysis (step {la.get('step')} %): {la['verdict']} - {la['reason']}")
    say(f"registry production: {reg['production'] or 'none'}")
    if reg["problem"]:
        say(f"DISAGREE: {reg['problem']}")
    return 0


def cleanup(root: Path, st: State) -> None:
    rt.stop_pid(st.router_pid, ROUTER_MARKER)
    for c in st.colours.values():
        stop_colour(c)


def stop_orphans(root: Path) -> list[str]:
    """Servers of this project that the state does not list any more (a command killed half
    way, a state file replaced), found by the project they carry in their environment, and
    routers running this project's config; stopped. Returns what was stopped, in words."""
    stopped = []
    for tag in rt.project_tags(root.resolve()):
        n = rt.stop_tagged(tag)
        if n:
            stopped.append(f"server {tag} ({n} processes)")
    for pid in rt.routers_of(router_config(root, State(), params(root)).cfg_path):
        if rt.stop_pid(pid, ROUTER_MARKER):
            stopped.append(f"router pid {pid}")
    return stopped


def cmd_down(root: Path) -> int:
    with locked(root, "down"):
        st = load(root)
        if st.live is None and not st.colours and not st.router_pid:
            orphans = stop_orphans(root)
            if orphans:
                progress.done(
                    f"stopped what no deployment state listed: {', '.join(orphans)}",
                    "this project",
                    "faultwatch deploy up",
                )
                return 0
            say("nothing deployed; nothing to stop.")
            return 0
        if rt.pid_alive(st.router_pid, ROUTER_MARKER):
            rt.stop_pid(
                st.router_pid, ROUTER_MARKER
            )  # clients first: no request reaches a dying server
        for c in st.colours.values():
            stop_colour(c)
        orphans = stop_orphans(root)
        if orphans:
            say(f"  also stopped what the state did not list: {', '.join(orphans)}")
        history = st.history
        st = State(history=history)
        st.record("down")
        save(root, st)
    from faultwatch.report_page import refresh

    say(f"  {refresh(root)}")  # it shows what serves
    progress.done(
        "the router and both colours stopped; the prediction log stays",
        _shown(prediction_log(root), root),
        "faultwatch deploy up (the production version as blue)",
    )
    return 0
