"""`faultwatch monitor`: drift and performance of a window of the prediction log, through
notebooks/05_monitor.ipynb."""

from __future__ import annotations

import argparse

from faultwatch import progress
from faultwatch.cli.report import refresh_page
from faultwatch.paths import display_path, project_root


def _window_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The options given, as overrides of params.yaml:monitor (--last and --since exclude each
    other's value)."""
    overrides: dict[str, object] = {}
    if args.last is not None:
        overrides.update(last=args.last, since=None)
    if args.since is not None:
        overrides.update(since=args.since, last=None)
    if args.until is not None:
        overrides["until"] = args.until
    if args.log is not None:
        overrides["log"] = args.log
    return overrides


def cmd_monitor(args: argparse.Namespace) -> int:
    """notebooks/05_monitor.ipynb through the notebook runner, with the window (and log) given
    on the command line over params.yaml:monitor; prints the decision."""
    # imported here: Evidently, pandas and papermill take seconds to import
    from faultwatch.monitor.source import check_log_exists
    from faultwatch.notebook import run_notebook
    from faultwatch.params import load_params, section

    root = project_root()
    overrides = _window_overrides(args)
    raw = load_params(root / "params.yaml")
    # the options are checked as params are, so a bad one fails before any cell runs
    params = section(
        "monitor", {"monitor": {**(raw.get("monitor") or {}), **overrides}}, source="options"
    )
    # no log yet: an error here (the notebook alone, in JupyterLab, says so and runs through)
    check_log_exists(params)
    run = run_notebook(
        "notebooks/05_monitor.ipynb", root, overrides=overrides, html=not args.no_html
    )
    for p in (run.notebook, None if args.no_html else run.html, run.metrics):
        if p is not None and p.exists():
            print(f"wrote {p.relative_to(root) if p.is_relative_to(root) else p}")
    refresh_page(root)
    scraps = run.scraps
    needed = bool(scraps.get("retrain_needed"))
    print(f"retrain_needed: {str(scraps.get('retrain_needed')).lower()}")
    for r in scraps.get("reasons") or []:
        print(
            f"  {r['model_version']}: {r['kind']} {r['feature']} "
            f"score {r['score']:.4g} (threshold {r['threshold']:.4g})"
        )
    report = run.metrics if args.no_html else run.html
    progress.done(
        f"monitoring report, retrain {'needed' if needed else 'not needed'}",
        f"{display_path(report, root)} (Evidently's reports in {params.out_dir})",
        "faultwatch retrain --from-log (the labelled production signals)"
        if needed
        else f"jupyter lab {display_path(run.notebook, root)}",
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    mon = sub.add_parser(
        "monitor",
        help="drift, output drift and performance of a window of the prediction log "
        "(notebooks/05_monitor.ipynb); default window: params.yaml:monitor",
    )
    span = mon.add_mutually_exclusive_group()
    span.add_argument(
        "--last", metavar="DURATION", help="the window: this long before --until (24h, 7d)"
    )
    span.add_argument(
        "--since", metavar="TIME", help="the window's start (ISO 8601 or unix seconds)"
    )
    mon.add_argument("--until", metavar="TIME", help="the window's end (default: now)")
    mon.add_argument(
        "--log", metavar="TARGET", help="the prediction log: a path or postgresql://..."
    )
    mon.add_argument("--no-html", action="store_true", help="skip the notebook's HTML copy")
    mon.set_defaults(func=cmd_monitor)
