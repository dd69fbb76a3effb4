"""`faultwatch deploy`: blue/green, canary and shadow behind a router on this host; one handler
per verb: the parser here, the handlers (printing, exit codes) in deploy_verbs, the operations
(typed results) in faultwatch.deploy."""

from __future__ import annotations

import argparse
from types import ModuleType

from faultwatch.cli.args import _percent, _steps


def _replicas(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of servers, 1 or more")
    return n


def _verbs() -> ModuleType:
    """faultwatch.cli.deploy_verbs, imported when a verb runs: the deployment's modules take a
    good part of a second to import, which every other command (and --help) would pay."""
    from faultwatch.cli import deploy_verbs

    return deploy_verbs


def cmd_up(args: argparse.Namespace) -> int:
    return _verbs().up(args)


def cmd_stage(args: argparse.Namespace) -> int:
    return _verbs().stage(args)


def cmd_switch(args: argparse.Namespace) -> int:
    return _verbs().switch(args)


def cmd_rollback(args: argparse.Namespace) -> int:
    return _verbs().rollback(args)


def cmd_canary(args: argparse.Namespace) -> int:
    return _verbs().canary(args)


def cmd_shadow(args: argparse.Namespace) -> int:
    return _verbs().shadow(args)


def cmd_analyse(args: argparse.Namespace) -> int:
    return _verbs().analyse(args)


def cmd_status(args: argparse.Namespace) -> int:
    return _verbs().status(args)


def cmd_down(args: argparse.Namespace) -> int:
    return _verbs().down(args)


def register(sub: argparse._SubParsersAction) -> None:
    dep = sub.add_parser(
        "deploy", help="blue/green, canary and shadow behind a router on this host"
    ).add_subparsers(dest="deploy_command", required=True)
    up = dep.add_parser("up", help="VERSION (default: production) as blue behind the router")
    up.add_argument("version", nargs="?")
    up.add_argument("--port", type=int, help="the router's port (default: params deploy.port)")
    up.add_argument(
        "--runtime",
        choices=["process", "container"],
        default="process",
        help="the colours as `faultwatch serve` processes (default) or as containers of "
        "faultwatch-<project folder>:VERSION (`faultwatch image build VERSION`); stage follows "
        "up's choice",
    )
    up.add_argument(
        "--replicas",
        type=_replicas,
        default=1,
        metavar="N",
        help="N server processes per colour behind the router (default 1); the colour's "
        "weight is shared by its replicas, a dead one is taken out by the health checks",
    )
    up.set_defaults(func=cmd_up)
    st = dep.add_parser("stage", help="VERSION as the standby colour, smoke-tested, no traffic")
    st.add_argument("version")
    st.set_defaults(func=cmd_stage)
    dep.add_parser("switch", help="all traffic to the staged colour").set_defaults(func=cmd_switch)
    dep.add_parser(
        "rollback", help="back to the previous colour (or the canary to 0 %%)"
    ).set_defaults(func=cmd_rollback)
    can = dep.add_parser("canary", help="PCT of the traffic to the staged colour, or --steps")
    can.add_argument(
        "pct",
        nargs="?",
        type=_percent,
        metavar="PCT",
        help="the staged colour's share of the traffic, a whole percentage (10: green takes 10 %%, "
        "blue 90 %%; 0 takes it out)",
    )
    can.add_argument(
        "--steps",
        nargs="?",
        const="",
        type=_steps,
        help="advance through these percentages while the analysis passes (default: params "
        "deploy.canary_steps); abort to 0 %% on a failing or inconclusive analysis",
    )
    can.add_argument("--interval", type=float, help="seconds per step (deploy.canary_interval_s)")
    can.set_defaults(func=cmd_canary)
    sh = dep.add_parser("shadow", help="copy live traffic to the staged colour (on|off)")
    sh.add_argument("mode", choices=["on", "off"])
    sh.set_defaults(func=cmd_shadow)
    an = dep.add_parser("analyse", help="the analysis gate of the staged colour, now")
    an.add_argument("--window", type=float, default=60.0, help="seconds of log (default 60)")
    an.set_defaults(func=cmd_analyse)
    stt = dep.add_parser("status", help="colours, versions, weights, analysis, shadow agreement")
    stt.add_argument("--json", action="store_true")
    stt.set_defaults(func=cmd_status)
    dep.add_parser("down", help="stop the router and both colours").set_defaults(func=cmd_down)
