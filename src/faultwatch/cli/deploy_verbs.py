"""`faultwatch deploy VERB`: one handler per verb. Each takes the sub-parser's Namespace, runs
the operation (faultwatch.deploy.ops, .canary, .status), prints what it did and returns the exit
status: 0 done, 3 a gate said no (a smoke test, an analysis), 1 an error (main prints it).

What a command did or decided goes to stdout and ends with `done: ...` when it changed the
deployment (faultwatch.progress); the steps on the way go to stderr as they happen. A verb
whose result carries registry records prints each and refreshes the report page, which shows
what serves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faultwatch import progress
from faultwatch.deploy import canary as canary_op
from faultwatch.deploy import ops
from faultwatch.deploy import status as status_op
from faultwatch.deploy.config import params
from faultwatch.deploy.results import CanaryResult, CanaryStep, RegistryRecord, StatusResult, Watch
from faultwatch.errors import FaultwatchError
from faultwatch.paths import display_path, project_root
from faultwatch.report_page import refresh

EXIT_REFUSED = 3  # a gate said no: smoke test, analysis, inconclusive analysis


def say(msg: str) -> None:
    """What a command did or decided (stdout)."""
    print(msg, flush=True)


def _analysed(step: CanaryStep) -> None:
    say("  " + step.analysis.summary().replace("\n", "\n  "))


WATCH = Watch(
    progress=progress.step,
    waiting=lambda holder: say(f"waiting for {holder} to finish ..."),
    analysed=_analysed,
)


def _at(url: str | None) -> str:
    return f"the router at {url}"


def _registry(root: Path, made: tuple[RegistryRecord, ...]) -> None:
    """Say what the registry recorded, and refresh the report page, which shows it."""
    for record in made:
        say(record.line())
        say(f"  {refresh(root)}")


# ---------------------------------------------------------------------- the verbs
def up(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    r = ops.up(root, args.version, args.port, args.runtime, WATCH, args.replicas)
    if r.router_restarted:
        say(f"the router was down: started again at {r.url} with the state's weights")
    if r.already:
        say(f"already up: {r.colour} serves {r.version} at {r.url}")
        _registry(root, r.registry)
        return 0
    assert r.smoke is not None
    say(f"  {r.smoke.message or 'smoke test passed'}")
    _registry(root, r.registry)
    each = f", {args.replicas} replicas per colour" if args.replicas > 1 else ""
    progress.done(
        f"{r.version} live on blue (router log {display_path(r.router_log, root)}{each})",
        _at(r.url),
        "faultwatch deploy stage VERSION (a new version as green)",
    )
    return 0


def stage(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    r = ops.stage(root, args.version, WATCH)
    if r.already:
        say(f"already staged: {r.version} on {r.colour}, smoke test passed")
        return 0
    if r.approval != "approved":
        say(
            f"  note: {r.version} is '{r.approval}' (`faultwatch registry show {r.version}`): "
            "staged for its smoke test and shadow traffic only; canary, switch and rollback "
            "refuse a version that is not approved"
        )
    if r.shadow_stopped:
        say("  shadow off (its target is being replaced)")
    if not r.passed:
        say(f"refused: {r.colour} ({r.version}) failed its smoke test: {r.smoke.message}")
        say(f"{r.live} keeps all the traffic; nothing was switched")
        return EXIT_REFUSED
    progress.done(
        f"{r.version} staged on {r.colour} (port {r.port}), "
        f"{r.smoke.message or 'smoke test passed'}; no traffic yet",
        _at(r.url),
        "faultwatch deploy canary --steps (or: deploy shadow on, deploy switch)",
    )
    return 0


def switch(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    r = ops.switch(root, WATCH)
    _registry(root, r.registry)
    progress.done(
        f"all traffic to {r.to} ({r.version}), switched in {r.ms:.0f} ms; {r.frm} stays up",
        _at(r.url),
        f"faultwatch deploy status (faultwatch deploy rollback returns to {r.frm})",
    )
    return 0


def rollback(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    r = ops.rollback(root, WATCH)
    _registry(root, r.registry)
    if r.canary_pct:
        progress.done(
            f"rolled back: the canary on {r.other} is at 0 %, {r.live} has all the traffic",
            _at(r.url),
            "faultwatch deploy stage VERSION (another version), or deploy down",
        )
    else:
        progress.done(
            f"rolled back: all traffic to {r.live} ({r.version}); {r.other} stays up",
            _at(r.url),
            "faultwatch deploy status",
        )
    return 0


def canary(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    if args.steps is None and args.pct is None:
        raise FaultwatchError("canary: give a percentage (canary 10) or --steps")
    if args.steps is not None and args.pct is not None:
        raise FaultwatchError("canary: a percentage or --steps, not both")
    steps = args.steps
    if steps == "":
        steps = params(root).canary_steps
    r = canary_op.canary(root, args.pct, steps, args.interval, WATCH)
    _registry(root, r.registry)
    return _canary_said(r)


def _canary_said(r: CanaryResult) -> int:
    """The end of a canary, as `canary` says it."""
    green, live, v = r.colour, r.live, r.version
    back = f"faultwatch deploy status (faultwatch deploy rollback returns to {live})"
    if r.outcome == "set":
        progress.done(
            f"canary: {green} ({v}) takes {r.pct} %, {live} {100 - r.pct} %",
            _at(r.url),
            "faultwatch deploy analyse (then: deploy switch, or deploy rollback)",
        )
    elif r.outcome == "live" and not r.plan:  # `canary 100`
        progress.done(f"canary 100 %: {green} ({v}) is live; {live} stays up", _at(r.url), back)
    elif r.outcome == "live":
        say(f"  100 %: {green} ({v}) is live; {live} stays up for rollback.")
        progress.done(f"{v} live on {green} after the canary", _at(r.url), back)
    elif r.outcome == "aborted":
        last = r.steps[-1]
        say(
            f"aborted at {last.pct} %: {last.analysis.verdict} ({last.analysis.reason}); "
            f"{green} is back to 0 %, {live} has all the traffic."
        )
        return EXIT_REFUSED
    else:
        progress.done(
            f"canary done at {r.plan[-1]} % on {green} ({v}), every analysis passed",
            _at(r.url),
            "faultwatch deploy switch (all traffic to it)",
        )
    return 0


def shadow(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    r = canary_op.shadow(root, args.mode == "on", WATCH)
    if not r.on:
        progress.done("shadow off", _at(r.url), "faultwatch deploy status")
        return 0
    progress.done(
        f"shadow on: live traffic copied to {r.colour} ({r.version}), its answers logged, "
        "not returned",
        _at(r.url),
        "faultwatch deploy status (the agreement with the live answers)",
    )
    return 0


def analyse(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    r = canary_op.analyse(root, args.window)
    say(r.analysis.summary())
    return 0 if r.passed else EXIT_REFUSED


def status(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    s = status_op.status(root)
    if args.json:
        print(json.dumps(s.to_dict(), indent=2, default=str))
        return 0
    _status_said(s)
    return 0


def _status_said(s: StatusResult) -> None:
    """`deploy status` for a person."""
    reg = s.registry
    if s.live is None:
        say("nothing deployed (`faultwatch deploy up`)")
        say(f"registry production: {reg['production'] or 'none'}")
        if reg["problem"]:
            say(f"DISAGREE: {reg['problem']}")
        return
    say(
        f"router {s.router_url} ({'up' if s.router_up else 'DOWN'}, pid {s.router_pid}); live: "
        f"{s.live} (colours as {'processes' if s.runtime == 'process' else 'containers'})"
    )
    if not s.router_up:
        say(
            "the router is DOWN: nothing answers at its address; `faultwatch deploy up` starts "
            "it again with the state's weights (the colours keep running)"
        )
    else:
        live = s.colours.get(s.live)
        if live is not None and s.live not in s.answering:
            others = " and ".join(s.answering)
            say(
                f"{s.live} (live) is down; "
                + (f"{others} answers" if others else "nothing answers")
                + " (`faultwatch deploy rollback` gives the traffic to the other colour)"
            )
    if s.router_differences:
        say(
            "the router and the state DISAGREE: "
            + "; ".join(s.router_differences)
            + " (the next deploy command sets the router to the state)"
        )
    say(f"prediction log: {s.prediction_log}")
    for name, c in s.colours.items():
        smoke = "passed" if (c.smoke or {}).get("passed") else "FAILED" if c.smoke else "-"
        counts = c.router_counts or {}
        say(
            f"  {name:5} {c.version:>8} {c.model_tag:30} port {c.port:<5} "
            f"weight {c.weight:>3} % {'running' if c.running else 'stopped'}, smoke {smoke},"
            f" answers 2xx {counts.get('2xx', '-')} 5xx {counts.get('5xx', '-')}"
        )
        if len(c.replicas) > 1:
            for r in c.replicas:
                say(
                    f"    {r.server:8} port {r.port:<5} pid {r.pid:<7} "
                    f"{'up' if r.up else 'DOWN'} (process "
                    f"{'running' if r.running else 'stopped'}, router {r.router or '-'})"
                )
    copies = s.shadow_copies or {}
    say(
        f"shadow: {'on' if s.shadow else 'off'}"
        + (
            f" (copies sent {copies.get('sent')}, answered {copies.get('answered')}, failed "
            f"{copies.get('failed')}, dropped busy {copies.get('dropped_busy')}, dropped body "
            f"{copies.get('dropped_body')})"
            if copies
            else ""
        )
    )
    agr = s.shadow_agreement
    if agr and agr.get("error"):
        say(f"shadow agreement: not read ({agr['error']})")
    elif agr and agr["shadow_answers"]:
        same = "n/a" if agr["same_label"] is None else f"{agr['same_label']:.1%}"
        diff = "n/a" if agr["mean_abs_diff"] is None else f"{agr['mean_abs_diff']:.4f}"
        say(
            f"shadow agreement: {agr['joined']} of {agr['shadow_answers']} shadow answers found "
            f"their live twin; same label {same}, mean |probability difference| {diff}"
        )
    la = s.last_analysis
    if la:
        say(f"last analysis (step {la.get('step')} %): {la['verdict']} - {la['reason']}")
    say(f"registry production: {reg['production'] or 'none'}")
    if reg["problem"]:
        say(f"DISAGREE: {reg['problem']}")


def down(args: argparse.Namespace, root: Path | None = None) -> int:
    root = root or project_root()
    r = ops.down(root, WATCH)
    if r.outcome == "orphans":
        progress.done(
            f"stopped what no deployment state listed: {', '.join(r.orphans)}",
            "this project",
            "faultwatch deploy up",
        )
        return 0
    if r.outcome == "nothing":
        say("nothing deployed; nothing to stop.")
        return 0
    if r.orphans:
        say(f"  also stopped what the state did not list: {', '.join(r.orphans)}")
    say(f"  {refresh(root)}")  # it shows what serves
    progress.done(
        "the router and both colours stopped; the prediction log stays",
        r.prediction_log,
        "faultwatch deploy up (the production version as blue)",
    )
    return 0
