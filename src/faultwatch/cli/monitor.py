"""`faultwatch monitor`: drift and performance of a window of the prediction log, through
notebooks/05_monitor.ipynb."""

from __future__ import annotations

import argparse
from pathlib import Path

from faultwatch import progress, settings
from faultwatch.cli.report import refresh_page
from faultwatch.paths import display_path, project_root

LOG_ENV = "FAULTWATCH_PREDICTION_LOG"


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


def _targets(root: Path, args: argparse.Namespace) -> list[tuple[str | None, Path]]:
    """(group, folder) to monitor: the project as a whole (None), or each group asked for in
    its own folder (`--group G`, `--groups`: every group of params.yaml and the project's own
    model when its stages ran)."""
    from faultwatch.groups import DEFAULT_ARTIFACT, group_root, promotable

    if args.all_groups:
        return list(promotable(root).items())
    if not args.group:
        return [(None, root)]
    return [(g, root if g == DEFAULT_ARTIFACT else group_root(root, g)) for g in args.group]


def cmd_monitor(args: argparse.Namespace) -> int:
    """notebooks/05_monitor.ipynb through the notebook runner, with the window (and log) given
    on the command line over params.yaml:monitor; prints the decision. With `--group`, once per
    model group, in the group's folder, on the rows its model answered."""
    # imported here: Evidently, pandas and papermill take seconds to import
    from faultwatch.monitor.source import check_log_exists
    from faultwatch.params import load_params, section
    from faultwatch.serve.predlog import resolve_target

    root = project_root()
    overrides = _window_overrides(args)
    if args.no_html:  # no pages at all: nor Evidently's (and its seconds of import)
        overrides["drift_pages"] = False
    raw = load_params(root / "params.yaml")
    # the options are checked as params are, so a bad one fails before any cell runs
    params = section(
        "monitor", {"monitor": {**(raw.get("monitor") or {}), **overrides}}, source="options"
    )
    targets = _targets(root, args)
    if targets != [(None, root)]:
        # a group's folder has params.yaml of its own: the log stays the project's
        overrides["log"] = str(resolve_target(params.log or settings.get(LOG_ENV), root))
        params = section(
            "monitor", {"monitor": {**(raw.get("monitor") or {}), **overrides}}, source="options"
        )
    # no log yet: an error here (the notebook alone, in JupyterLab, says so and runs through)
    check_log_exists(params)
    needed_any = False
    for group, folder in targets:
        needed_any |= _monitor_one(root, folder, group, overrides, args)
    if len(targets) > 1:
        print(f"retrain_needed for any group: {str(needed_any).lower()}")
    return 0


def _monitor_one(
    root: Path, folder: Path, group: str | None, overrides: dict, args: argparse.Namespace
) -> bool:
    """One run of the monitor notebook (for `group` in `folder`); returns retrain_needed."""
    from faultwatch.notebook import run_notebook
    from faultwatch.params import load_params, section

    if group is not None:
        overrides = {**overrides, "model": group}
        print(f"== {group} ({display_path(folder, root)})", flush=True)
    run = run_notebook(
        root / "notebooks/05_monitor.ipynb", folder, overrides=overrides, html=not args.no_html
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
    for n in scraps.get("notes") or []:  # not reasons: what did not apply (a classical model)
        print(f"  {n['model_version']}: {n['note']}")
    mon = section(
        "monitor",
        {"monitor": {**(load_params(folder / "params.yaml").get("monitor") or {}), **overrides}},
    )
    report = run.metrics if args.no_html else run.html
    pages = (
        f" (Evidently's reports in {display_path(folder / mon.out_dir, root)})"
        if mon.drift_pages
        else ""
    )
    retrain = "faultwatch retrain --from-log (the labelled production signals)"
    progress.done(
        f"monitoring report{f' of {group}' if group else ''}, retrain "
        f"{'needed' if needed else 'not needed'}",
        f"{display_path(report, root)}{pages}",
        retrain if needed else f"jupyter lab {display_path(run.notebook, root)}",
    )
    return needed


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
    mon.add_argument(
        "--no-html",
        action="store_true",
        help="no HTML: neither the notebook's copy nor Evidently's drift pages (the same scores)",
    )
    which = mon.add_mutually_exclusive_group()
    which.add_argument(
        "--group",
        action="append",
        metavar="NAME",
        help="a model group: only the rows its model answered, reported in groups/NAME/ "
        "(repeatable; fault_cnn: the project's own model)",
    )
    which.add_argument(
        "--groups",
        dest="all_groups",
        action="store_true",
        help="every model group, one report each",
    )
    mon.set_defaults(func=cmd_monitor)
