"""`faultwatch deploy canary | shadow | analyse`: the staged colour on live traffic.

A canary gives the staged colour a share of the traffic: one share by hand (`canary 10`), or
steps (`canary --steps`) that each wait `--interval` seconds, then run the analysis gate
(faultwatch.deploy.analysis) on what the colour answered meanwhile; a step that does not pass
takes it back to 0 %, and reaching 100 % makes it live (production in the registry). The
shadow copies live requests to it without returning its answers; `analyse` runs the gate on the
last window without moving anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from faultwatch.deploy import analysis, fleet
from faultwatch.deploy import router as rt
from faultwatch.deploy.analysis import DeployParams
from faultwatch.deploy.config import params, prediction_log, router_config
from faultwatch.deploy.errors import TooLittleTraffic
from faultwatch.deploy.fleet_analysis import FleetAnalysis, analyse_fleet
from faultwatch.deploy.live import mark_live, mark_refused, recorded
from faultwatch.deploy.processes import set_low_priority
from faultwatch.deploy.results import (
    QUIET,
    AnalyseResult,
    CanaryOutcome,
    CanaryResult,
    CanaryStep,
    RegistryRecord,
    ShadowResult,
    Watch,
)
from faultwatch.deploy.routing import (
    apply_weights,
    ready_standby,
    require_up,
    router_errors,
    shadow_off,
    switch_to,
)
from faultwatch.deploy.state import Colour, Deployment, deployment, load
from faultwatch.deploy.versions import require_approved, resolve, training_fault_rate
from faultwatch.registry import CANARY_ABORTED

TRAFFIC_WINDOW_S = 10.0  # how far back `canary --steps` measures the live traffic


def canary(
    root: Path,
    pct: int | None = None,
    steps: list[int] | None = None,
    interval: float | None = None,
    watch: Watch = QUIET,
) -> CanaryResult:
    """`pct` % of the traffic to the staged colour, or `steps` gated by the analysis, each
    `interval` seconds (default: deploy.canary_interval_s). An analysis that does not pass is
    the result's outcome "aborted" (the colour back to 0 %, recorded), not an error."""
    p = params(root)
    with deployment(root, "canary", watch.waiting) as d:
        a = require_up(root, d.state, watch.progress)
        c = ready_standby(d.state, "canary")
        require_approved(root, c.version, "take a canary's share of the traffic")
        if steps is None:
            assert pct is not None
            return _one_share(root, d, a, c, pct)
        interval = p.canary_interval_s if interval is None else interval
        return _gradual(root, d, a, c, steps, interval, p, watch)


def _one_share(root: Path, d: Deployment, a: rt.RuntimeAPI, c: Colour, pct: int) -> CanaryResult:
    st = d.state
    live, green = st.live, st.standby
    assert live and green
    if pct >= 100:
        switch_to(a, st, green)
        st.record("canary", colour=green, pct=100, switched=True)
        d.save()
        made = mark_live(root, c.version, f"deploy canary 100 %: live on {green}")
        return CanaryResult(c.version, green, live, st.url, "live", 100, registry=recorded(made))
    apply_weights(a, st, {green: pct, live: 100 - pct})
    st.record("canary", colour=green, pct=pct)
    d.save()
    return CanaryResult(c.version, green, live, st.url, "set", pct)


def _gradual(
    root: Path,
    d: Deployment,
    a: rt.RuntimeAPI,
    c: Colour,
    steps: list[int],
    interval: float,
    p: DeployParams,
    watch: Watch,
) -> CanaryResult:
    """Through `steps` while each analysis passes (see the module docstring)."""
    st = d.state
    live, green = st.live, st.standby
    assert live and green
    log = prediction_log(root)
    check_traffic(log, steps, interval, p)
    reference = references(root, c, st.colours[live])
    watch.progress(
        f"canary {c.version} on {green}: steps {steps} %, {interval:g} s each, analysis "
        f"against {live}"
    )
    judged: list[CanaryStep] = []

    def result(outcome: CanaryOutcome, pct: int, made: RegistryRecord | None) -> CanaryResult:
        return CanaryResult(
            c.version,
            green,
            live,
            st.url,
            outcome,
            pct,
            steps=tuple(judged),
            plan=tuple(steps),
            registry=recorded(made),
        )

    for step in steps:
        if step >= 100:
            switch_to(a, st, green)
            st.record("canary", colour=green, pct=100, switched=True)
            d.save()
            why = f"deploy canary: every step passed, live on {green}"
            return result("live", 100, mark_live(root, c.version, why))
        judged.append(_step(d, a, green, live, step, interval, log, p, reference, watch))
        watch.analysed(judged[-1])
        verdict = judged[-1].analysis
        if verdict.verdict != "pass":
            apply_weights(a, st, {green: 0, live: 100})
            st.record(
                "canary_abort",
                colour=green,
                pct=step,
                verdict=verdict.verdict,
                reason=verdict.reason,
            )
            d.save()
            why = f"canary at {step} % on {green}: {verdict.verdict} ({verdict.reason})"
            failed = getattr(verdict, "failed", None)  # a fleet's: the groups that failed
            made = mark_refused(root, c.version, CANARY_ABORTED, why, st.colours[live], failed)
            return result("aborted", 0, made)
        d.save()
    return result("passed", steps[-1], None)


def _step(
    d: Deployment,
    a: rt.RuntimeAPI,
    green: str,
    live: str,
    step: int,
    interval: float,
    log: Path | str,
    p: DeployParams,
    reference: float | None | FleetReference,
    watch: Watch,
) -> CanaryStep:
    """`step` % to the staged colour, `interval` seconds of traffic, the analysis of them."""
    st = d.state
    apply_weights(a, st, {green: step, live: 100 - step})
    since, errors0 = time.time(), router_errors(a, green)
    st.record("canary", colour=green, pct=step)
    d.save()  # `deploy status` shows the step while it runs
    watch.progress(f"  {step} %: waiting {interval:g} s ...")
    time.sleep(interval)
    result = judge(log, green, live, since, p, reference, router_errors(a, green) - errors0)
    st.last_analysis = {**result.to_dict(), "step": step}
    return CanaryStep(step, result)


def check_traffic(log: Path | str, steps: list[int], interval: float, p: DeployParams) -> None:
    """Refuse a gradual canary whose first step cannot get `deploy.min_requests` answers from
    the live traffic of the last TRAFFIC_WINDOW_S seconds: every step would be inconclusive."""
    first = next((s for s in steps if s < 100), None)
    if first is None:
        return
    rate = analysis.live_rate(log, TRAFFIC_WINDOW_S)
    expected = rate * interval * first / 100
    if expected >= p.min_requests:
        return
    need = f"{p.min_requests / (rate * first / 100):.0f} s" if rate > 0 else "traffic first"
    raise TooLittleTraffic(
        f"canary --steps {','.join(map(str, steps))} --interval {interval:g}: the live traffic "
        f"of the last {TRAFFIC_WINDOW_S:g} s is {rate:.1f} answers/s, so at {first} % the canary "
        f"would get about {expected:.0f} answers in {interval:g} s, below deploy.min_requests "
        f"({p.min_requests}): the analysis would be inconclusive. Raise --interval (at {first} "
        f"%: {need}), start with a larger step, or send more traffic; nothing was changed"
    )


# ---------------------------------------------------------------------- shadow and analyse
def shadow(root: Path, on: bool, watch: Watch = QUIET) -> ShadowResult:
    """Copy live traffic to the staged colour (its answers logged, not returned), or stop."""
    p = params(root)
    with deployment(root, "shadow", watch.waiting) as d:
        st = d.state
        a = require_up(root, st, watch.progress)
        cfg = router_config(root, st, p)
        if not on:
            shadow_off(a, st, cfg.map_path)
            st.record("shadow", on=False)
            return ShadowResult(False, None, None, st.url)
        c = ready_standby(st, "shadow on")
        # on one host the shadow's inference shares the CPU with the live one: in the idle
        # class it gets what the live colour leaves (copies it cannot take wait, then are
        # dropped and counted)
        if p.shadow_low_priority:
            set_low_priority(c.tag, True)
        # every replica of the staged colour, in turn (shadow.lua)
        a.shadow(",".join(f"http://{p.host}:{r.port}" for r in c.servers), cfg.map_path)
        st.shadow = True
        st.record("shadow", on=True, colour=st.standby, version=c.version)
    return ShadowResult(True, st.standby, c.version, st.url)


def analyse(root: Path, window_s: float) -> AnalyseResult:
    """The analysis gate on the staged colour over the last `window_s` seconds, now; reads
    the state without the lock and changes nothing."""
    p = params(root)
    st = load(root)
    require_up(root, st)
    c = ready_standby(st, "analyse")
    live, green = st.live, st.standby
    assert live and green
    log = prediction_log(root)
    since = time.time() - window_s
    reference = references(root, c, st.colours[live])
    return AnalyseResult(c.version, judge(log, green, live, since, p, reference, 0))


@dataclass(frozen=True)
class FleetReference:
    """A fleet colour's groups that changed against the live colour (with their training fault
    rates), and those that did not."""

    changed: dict[str, float | None]
    unchanged: list[str]


def references(root: Path, staged: Colour, live: Colour) -> float | None | FleetReference:
    """What the analysis compares the staged colour with: its model's training fault rate, or
    for a fleet bento each changed group's."""
    r = resolve(root, staged.version)
    if not r.models:
        return training_fault_rate(r.entry)
    diff, same = fleet.changed(live.models, r.models)
    return FleetReference({g: training_fault_rate(m.entry) for g, m in diff.items()}, same)


def judge(
    log: Path | str,
    green: str,
    live: str,
    since: float,
    p: DeployParams,
    reference: float | None | FleetReference,
    errors: int,
) -> analysis.Analysis | FleetAnalysis:
    """The analysis of the staged colour: one model's, or each changed group's of a fleet."""
    if isinstance(reference, FleetReference):
        return analyse_fleet(
            log, green, live, since, p, reference.changed, reference.unchanged, errors
        )
    return analysis.analyse(log, green, live, since, p, reference, router_errors=errors)
