"""The retrain loop's rollout: with a deployment running, the approved version staged (its smoke
test), canaried (the analysis of each step on live traffic) and switched, through the deploy
operations' results (faultwatch.deploy.ops, .canary)."""

from __future__ import annotations

import time

from faultwatch import progress
from faultwatch.deploy import canary as canary_op
from faultwatch.deploy import ops
from faultwatch.deploy.config import params as deploy_params
from faultwatch.deploy.live import running
from faultwatch.deploy.results import CanaryResult
from faultwatch.deploy.state import load
from faultwatch.retrain.loop import EXIT_REFUSED, Outcome, Run


def step_deployment(run: Run) -> Outcome:
    """6. Without a running deployment, or with the version live already, the loop ends."""
    loop, version = run.loop, run.deployable  # a group's: the fleet bento that holds it
    run.t0 = time.monotonic()
    if not running(run.root):
        loop.report(
            "deploy",
            "skipped",
            run.t0,
            "no deployment running (`faultwatch deploy up`): stopped after promotion; "
            f"{run.name} is approved, production once it serves",
        )
        up = f"faultwatch deploy up {run.version}" if run.group is None else "faultwatch deploy up"
        what = "it" if run.group is None else "the fleet bento"
        loop.out(
            progress.done_line(
                f"{run.name} trained on {run.rel}, approved and packaged",
                "the registry and the BentoML store",
                f"{up} (serves {what} behind the router: production)",
            )
        )
        return 0
    st = load(run.root)
    assert st.live is not None
    run.live = (st.live, st.colours[st.live].version)
    if run.live[1] != version:
        run.steps = run.steps or list(deploy_params(run.root).canary_steps)
        return None
    loop.report("deploy", "skipped", run.t0, f"{version} is already live on {st.live}")
    where = f"the router at {st.url}"
    loop.out(progress.done_line(f"{version} live on {st.live}", where, "faultwatch deploy status"))
    return 0


def step_stage(run: Run) -> Outcome:
    """6a. The version on the standby colour; its smoke test gates it."""
    r = ops.stage(run.root, run.deployable, run.loop.watch())
    colour, version = run.live
    if not r.passed:
        run.loop.note(f"refused: {r.colour} ({r.version}) failed its smoke test: {r.smoke.message}")
        detail = f"{run.deployable}: {r.live} keeps all the traffic; nothing was switched"
        run.loop.report("stage", "REFUSED", run.t0, detail)
        run.loop.out(f"stopped at the smoke test: {colour} ({version}) keeps all the traffic")
        return EXIT_REFUSED
    run.loop.report("stage", "ok", run.t0, f"{run.deployable} on {r.colour}, smoke test passed")
    run.t0 = time.monotonic()
    return None


def step_canary(run: Run) -> Outcome:
    """6b. The canary's steps, each gated by the analysis on live traffic."""
    loop, (colour, version) = run.loop, run.live
    r: CanaryResult = canary_op.canary(run.root, None, run.steps, run.interval, loop.watch())
    loop.registry(r.registry)
    if not r.passed:
        last = r.steps[-1]
        loop.report(
            "canary",
            "ABORTED",
            run.t0,
            f"aborted at {last.pct} %: {last.analysis.verdict} ({last.analysis.reason}); "
            f"{r.colour} is back to 0 %, {r.live} has all the traffic.",
        )
        loop.out(f"stopped at the canary analysis: {colour} ({version}) keeps all the traffic")
        return EXIT_REFUSED
    detail = f"steps {run.steps} % ({r.analyses_passed} analyses passed)"
    loop.report("canary", "passed", run.t0, detail)
    run.t0 = time.monotonic()
    run.switched = r.outcome == "live"  # the canary's last step was 100 %
    return None


def step_switch(run: Run) -> Outcome:
    """6c. All the traffic on the new version (where the canary did not end at 100 %); the
    loop's last line."""
    if not run.switched:
        switched = ops.switch(run.root, run.loop.watch())
        run.loop.registry(switched.registry)
    st = load(run.root)
    run.loop.report("switch", "ok", run.t0, f"{st.live} ({run.deployable}) is live at {st.url}")
    run.loop.out(
        progress.done_line(
            f"{run.name} live on {st.live} (trained on {run.rel})",
            f"the router at {st.url}",
            f"faultwatch deploy status (faultwatch deploy rollback returns to {run.live[1]})",
        )
    )
    return 0


# a deploy step that cannot do its part (no standby, a lock held, too little traffic) ends the
# loop with a `deploy FAILED` line and exit status 1
DEPLOY_STEPS = (step_stage, step_canary, step_switch)
