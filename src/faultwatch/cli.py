"""`faultwatch` console script: the stage commands dvc.yaml calls, and a few helpers."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import yaml

from faultwatch import progress
from faultwatch.errors import FaultwatchError
from faultwatch.paths import ADHOC_DIR, bentoml_home, display_path, project_root


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, yaml.safe_load(value)


def cmd_prepare(args: argparse.Namespace) -> int:
    from faultwatch.data.prepare import prepare
    from faultwatch.params import load_params, section

    root = project_root()
    raw = load_params(args.params or root / "params.yaml")
    split = section("split", raw)
    summary = prepare(section("data", raw), split, root)
    for name in ("train", "val", "test"):
        s = summary[name]
        print(f"{name}: {s['n_signals']} signals, {s['n_fault']} fault ({s['fault_ratio']:.1%})")
    added = summary["production"]
    if added["files"]:
        print(
            f"train holds {added['n_signals']} production signals ({added['n_fault']} fault) "
            f"from {added['files']} file(s) in data.production_dir"
        )
    gaps = summary["missing"]
    if any(gaps.values()):
        print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in gaps.items()))
    n = sum(summary[name]["n_signals"] for name in ("train", "val", "test"))
    progress.done(
        f"train, val and test splits ({n} signals)",
        display_path(root / split.out_dir, root),
        "dvc repro (the stages after prepare)",
    )
    return 0


def cmd_nb_run(args: argparse.Namespace) -> int:
    from faultwatch.notebook import run_notebook

    root = project_root()
    notebook = Path(args.notebook).resolve()
    output = Path(args.output).resolve() if args.output else None
    if output is None and (args.param or args.params):
        # a run with other params than params.yaml's is not the pipeline's: its outputs (the
        # executed notebook, metrics, and what the cells write) go beside, not over, the stage's
        output = root / ADHOC_DIR / notebook.stem
    run = run_notebook(
        notebook,
        root,
        params_file=Path(args.params).resolve() if args.params else None,
        overrides=dict(args.param or []),
        html=not args.no_html,
        kernel=args.kernel,
        output_root=output,
    )
    for p in (run.notebook, run.html, run.metrics):
        if p.exists():
            print(f"wrote {display_path(p, root)}")
    what = f"{notebook.name} executed ({run.cells} cells, {run.seconds:.0f} s)"
    stages = pipeline_stages(root)
    if output is None and run.stage in stages:  # the stage's outputs (in or outside dvc repro)
        nxt = "dvc repro (records these outputs in dvc.lock and runs the stages after it)"
    elif output is not None and args.param and run.stage in stages:
        sets = " ".join(
            "-S " + shlex.quote(f"{run.stage}.{k}={json.dumps(v)}") for k, v in args.param
        )
        nxt = f"dvc exp run {sets} (the same change as an experiment of the pipeline)"
    else:
        nxt = f"jupyter lab {display_path(run.notebook, root)}"
    progress.done(what, display_path(output or run.notebook.parent, root), nxt)
    return 0


def pipeline_stages(root: Path) -> set[str]:
    """The stages of the root dvc.yaml (those `dvc repro` and `dvc exp run` run)."""
    path = root / "dvc.yaml"
    spec = yaml.safe_load(path.read_text()) if path.is_file() else None
    return set((spec or {}).get("stages") or {})


def cmd_monitor(args: argparse.Namespace) -> int:
    """notebooks/05_monitor.ipynb through the notebook runner, with the window (and log) given
    on the command line over params.yaml:monitor; prints the decision."""
    from faultwatch.monitor.source import check_log_exists
    from faultwatch.notebook import run_notebook
    from faultwatch.params import load_params, section

    root = project_root()
    overrides: dict[str, object] = {}
    if args.last is not None:
        overrides.update(last=args.last, since=None)
    if args.since is not None:
        overrides.update(since=args.since, last=None)
    if args.until is not None:
        overrides["until"] = args.until
    if args.log is not None:
        overrides["log"] = args.log
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


NEXT_AFTER_PIPELINE = "`git add -A && git commit -m candidate`, then `faultwatch promote`"

# `faultwatch --help`: what a person runs, in order (the commands one by one: their own --help)
ORDER_OF_THINGS = """\
faultwatch: a fault detector for 1-D signals, from the data to a served and watched model.

The order of things, from the project root (faultwatch and dvc are in .venv/bin):
  1. make run (or .venv/bin/dvc repro)  the pipeline: data, EDA, training, evaluation, the
                                        model in the store, its bento, reports/index.html
  2. faultwatch promote                 after a commit: the candidate against production
  3. faultwatch deploy up               production behind the router; then deploy stage
                                        VERSION, canary, switch (or rollback)
  4. faultwatch monitor                 drift and performance of what was served
  5. faultwatch retrain --from-log      the labelled production signals: a new model, gated
                                        and rolled out by canary

faultwatch report writes reports/index.html (all of it on one page); report --list lists the
files under reports/.
"""


def list_reports(args: argparse.Namespace) -> int:
    """The files under reports/, one line per folder, then the page that shows them all
    (`faultwatch report --list`; `faultwatch reports`, its old name, still works)."""
    import textwrap

    from faultwatch.report_page import PAGE

    root = project_root()
    reports = root / "reports"
    files = sorted(
        p.relative_to(reports)
        for p in reports.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p != root / PAGE
    )
    folders: dict[str, list[str]] = {}
    for rel in files:
        folder = f"{rel.parts[0]}/" if len(rel.parts) > 1 else "./"
        folders.setdefault(folder, []).append(rel.as_posix().removeprefix(folder))
    print(f"reports under {reports}:")
    width = max((len(f) for f in folders), default=0) + 2
    for folder, names in sorted(folders.items(), key=lambda kv: (kv[0] == "./", kv[0])):
        text = textwrap.fill(
            ", ".join(names),
            width=100,
            initial_indent=f"  {folder:<{width}}",
            subsequent_indent=" " * (width + 2),
        )
        print(text)
    page, nxt = PAGE.as_posix(), progress.pasteable(NEXT_AFTER_PIPELINE)
    if (root / PAGE).is_file():
        print(f"all of it on one page: {page} (open it in a browser); next: {nxt}")
    else:
        write = progress.pasteable("faultwatch report")
        print(f"{page} is not written yet: `{write}` writes it; next: {nxt}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from faultwatch.report_page import write_page

    if args.list:
        return list_reports(args)
    root = project_root()
    path = write_page(root)
    size = path.stat().st_size / 1024
    print(
        f"wrote {path.relative_to(root)} ({size:.0f} KB, one offline page: open it in a browser); "
        f"next: {progress.pasteable(NEXT_AFTER_PIPELINE)}"
    )
    return 0


def refresh_page(root: Path) -> None:
    """Rewrite reports/index.html after a command whose results DVC does not watch; a failure
    is a warning on stderr."""
    from faultwatch.report_page import refresh

    line = refresh(root)
    print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)


def cmd_register(args: argparse.Namespace) -> int:
    from faultwatch.register import register

    root = project_root()
    record, created = register(root)
    sha = record["weights_sha256"][:16]
    if created:
        print(f"registered {record['model_tag']} (weights sha256 {sha}...)")
    else:
        print(
            f"already in the store as {record['model_tag']} (same weights sha256 {sha}..., "
            "threshold and test metrics): nothing new registered"
        )
    progress.done(
        f"{record['model_tag']} with its provenance (reports/register.json)",
        f"the BentoML store {display_path(bentoml_home(root), root)}",
        "faultwatch promote (the gate against production)",
    )
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from faultwatch.package import package

    root = project_root()
    record = package(root, version=args.version)
    for warning in record["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"why this model: {record['reason']}")
    what = f" {args.version}" if args.version else ""
    progress.done(
        f"bento {record['bento_tag']} with {record['model_tag']} ({record['stage']})",
        f"the BentoML store {display_path(bentoml_home(root), root)}",
        f"faultwatch image build{what} (its container image), or faultwatch serve{what}",
    )
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from faultwatch import image

    root = project_root()
    if args.image_command == "name":
        print(image.image_name(root))
        return 0
    if args.image_command == "check":
        base = image.base_image(root) or "localhost/faultwatch-base:bookworm"
        eng = image.engine()
        print(image.ensure_base(root, eng, base))
        print(image.check_runtime(base))
        return 0
    out = image.build(root, args.what, force=args.force, cache=not args.no_cache)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    how = f"built in {out['seconds']:.0f} s" if out["built"] else "already up to date"
    run = "docker" if out["engine"] == "docker" else "podman"
    nxt = f"{run} run --rm -p 127.0.0.1:3000:3000 {out['image']}"
    version = out["labels"].get(image.LABEL_PREFIX + "registry_version", "none")
    if version != "none":
        nxt = f"faultwatch deploy up {version} --runtime container, or {nxt}"
    progress.done(
        f"image {', '.join(out['tags'])} ({out['size_mb']} MB, user {out['user']}, {how}) "
        f"of bento {out['bento_tag']}",
        f"{out['engine']}'s local images",
        nxt,
    )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from faultwatch.params import load_params, section
    from faultwatch.promote import PROMOTION_FILE, promote_if_better

    root = project_root()
    params = section("promote", load_params(root / "params.yaml"))
    d, version = promote_if_better(root, params)
    print(f"{version}: {'APPROVED' if d.approved else 'REJECTED'}")
    for r in d.reasons:
        print(f"  - {r}")
    refresh_page(root)
    where = f"the registry's git tags (faultwatch registry show {version}) and {PROMOTION_FILE}"
    if d.approved:
        progress.done(
            f"{version} approved: production once the deployment puts the traffic on it",
            where,
            f"dvc repro -f -s package (its bento), then faultwatch deploy stage {version} "
            f"(or deploy up {version})",
        )
    else:
        progress.done(
            f"{version} rejected: the current model stays",
            where,
            "dvc exp show (look for a better candidate: dvc exp run -S train.KEY=VALUE)",
        )
    return 0 if d.approved or not args.strict else 3


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def cmd_registry_list(args: argparse.Namespace) -> int:
    from faultwatch import registry
    from faultwatch.deploy.live import serving

    root = project_root()
    vs = registry.versions(root)
    if not vs:
        print("no versions registered yet: run `faultwatch promote`")
        return 0
    print(
        f"{'version':<10} {'stage':<18} {'approval':<10} {'test f1':>8} {'recall':>7} {'pr_auc':>7}  model"
    )
    for v in vs:
        t = v.record.get("test", {})
        stage = (
            ",".join(s for s in v.stages if s not in (registry.APPROVED, registry.REJECTED)) or "-"
        )
        print(
            f"{v.version:<10} {stage:<18} {v.approval:<10} {_fmt(t.get('f1')):>8} "
            f"{_fmt(t.get('recall')):>7} {_fmt(t.get('pr_auc')):>7}  {v.model_tag}"
        )
    here = serving(root)  # prod is what serves: the deployment here says the same, or not
    print(here.line())
    if here.problem:
        print(f"DISAGREE: {here.problem}")
    return 0


def cmd_registry_production(args: argparse.Namespace) -> int:
    from faultwatch import registry

    root = project_root()
    v = registry.get(args.version, root)  # a named error for an unknown version
    changed = registry.set_production(v.version, args.reason, root)
    if v.approval != registry.APPROVED:
        print(f"note: the promotion gate's decision on {v.version} is '{v.approval}'")
    refresh_page(root)
    progress.done(
        f"{v.version} is production ({args.reason})" if changed else f"{v.version} already was",
        "the registry's git tags",
        "faultwatch registry list",
    )
    return 0


def cmd_registry_show(args: argparse.Namespace) -> int:
    import bentoml
    from bentoml.exceptions import NotFound

    from faultwatch import registry

    v = registry.get(args.version, project_root())
    try:
        info = bentoml.models.get(v.model_tag).info if v.model_tag else None
    except NotFound:
        info = None  # registered in another store: the registry's record is still shown
    print(
        json.dumps(
            {
                "version": v.version,
                "commit": v.commit,
                "created_at": v.created_at,
                "stages": list(v.stages),
                "approval": v.approval,
                "record": v.record,
                "labels": dict(info.labels) if info else None,
                "provenance": dict(info.metadata) if info else None,
            },
            indent=2,
            default=str,
        )
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from faultwatch.serve.launch import exec_server, plan

    root = project_root()
    p = plan(root, args.version)
    if args.show_config:
        print(json.dumps(p.describe(args.host, args.port), indent=2))
        return 0
    exec_server(root, p, args.host, args.port)
    return 0  # not reached: the process is now the server


def _percent(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole percentage, 0 to 100") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value}: a percentage is 0 to 100")
    return value


def _steps(text: str) -> list[int] | str:
    if text == "":
        return text  # --steps alone: params deploy.canary_steps
    steps = [_percent(s.strip()) for s in text.split(",")]
    if any(s == 0 for s in steps) or steps != sorted(set(steps)):
        raise argparse.ArgumentTypeError(f"{text!r}: rising percentages, e.g. 10,25,50,100")
    return steps


def _number(rule: str, ok, kind=float):
    """An argparse type: a finite number of `kind` for which `ok(value)` holds; the message
    gives the rule (argparse names the flag)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {rule}") from None
        if kind is float and not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {rule}")
        return value

    return parse


def cmd_simulate_traffic(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from faultwatch import traffic

    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        raise FaultwatchError(
            f"url {args.url!r}: expected http://HOST:PORT (the service or router)"
        )
    root = project_root()
    path = Path(args.signals) if args.signals else root / "data/prepared/test.parquet"
    signals = traffic.read_signals_file(path, args.fault_label)
    drift = traffic.Drift(args.scale, args.offset, args.noise, args.time_shift, args.fault_share)
    plan = traffic.Plan(
        url=args.url.rstrip("/"),
        rate=args.rate,
        count=args.count,
        duration_s=args.duration,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        label_delay_s=args.label_delay,
        seed=args.seed,
    )
    bound = (
        " and ".join(
            b
            for b in (
                f"{plan.count} requests" if plan.count is not None else "",
                f"{plan.duration_s:g} s" if plan.duration_s is not None else "",
            )
            if b
        )
        or "one pass over the signals"
    )
    print(
        f"simulate-traffic: {len(signals.values)} signals from {path} to {plan.url} at "
        f"{plan.rate:g} req/s ({plan.batch_size} signal(s) each), concurrency "
        f"{plan.concurrency}, at most {bound}; drift: {drift.describe()}"
        + (
            f"; labels to /feedback after {plan.label_delay_s:g} s"
            if args.label_delay is not None
            else ""
        ),
        flush=True,
    )
    started = time.time()

    def tick(s: traffic.Summary, seconds: float) -> None:
        progress.step(
            f"  {seconds:.0f} s: sent {s.sent}, answered {s.answered}, failed "
            f"{s.sent - s.answered}, labels posted {s.labels_posted}"
        )

    summary = traffic.replay(plan, signals, drift, on_progress=tick)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        for line in summary.lines():
            print(line)
    if summary.answered == 0:
        print(f"error: no request was answered by {plan.url}", file=sys.stderr)
        return 1
    if not args.json:  # stdout stays one JSON document
        progress.done(
            f"{summary.answered} of {summary.sent} requests answered "
            f"({summary.signals_answered} signals, {summary.labels_posted} labels posted)",
            f"the prediction log of the service behind {plan.url}",
            f"faultwatch monitor --since {int(started)} (drift and performance of this window)",
        )
    return 0


def _when(text: str) -> float:
    from faultwatch.retrain import parse_time

    try:
        return parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_retrain(args: argparse.Namespace) -> int:
    from faultwatch.retrain import default_log_target, retrain

    root = project_root()
    if (args.file is None) == (args.from_log is None):
        raise FaultwatchError("retrain: give a FILE of labelled signals or --from-log, one of them")
    if args.file is not None and (args.since is not None or args.until is not None):
        raise FaultwatchError("retrain: --since and --until select a window of --from-log")
    steps = args.steps
    if steps == "":
        steps = None  # params deploy.canary_steps
    target = None
    if args.from_log is not None:
        target = args.from_log or default_log_target(root)
    return retrain(
        root,
        Path(args.file).resolve() if args.file else None,
        from_log=target,
        start=args.since,
        end=args.until,
        steps=steps,
        interval=args.interval,
        dry_run=args.dry_run,
    )


def cmd_deploy(args: argparse.Namespace) -> int:
    from faultwatch.deploy import commands as d

    root = project_root()
    what = args.deploy_command
    if what == "up":
        return d.cmd_up(root, args.version, args.port, args.runtime)
    if what == "stage":
        return d.cmd_stage(root, args.version)
    if what == "switch":
        return d.cmd_switch(root)
    if what == "rollback":
        return d.cmd_rollback(root)
    if what == "canary":
        if args.steps is None and args.pct is None:
            raise FaultwatchError("canary: give a percentage (canary 10) or --steps")
        if args.steps is not None and args.pct is not None:
            raise FaultwatchError("canary: a percentage or --steps, not both")
        steps = args.steps
        if steps == "":
            steps = d.params(root).canary_steps
        return d.cmd_canary(root, args.pct, steps, args.interval)
    if what == "shadow":
        return d.cmd_shadow(root, args.mode == "on")
    if what == "analyse":
        return d.cmd_analyse(root, args.window)
    if what == "status":
        return d.cmd_status(root, args.json)
    if what == "down":
        return d.cmd_down(root)
    raise AssertionError(what)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="faultwatch",
        description=ORDER_OF_THINGS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {importlib.metadata.version('faultwatch')}",
    )
    # COMMAND: the usage line lists no hidden alias (a parser added without help)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="ingest, validate and split the data source")
    p.add_argument("--params", help="params file (default: params.yaml at the project root)")
    p.set_defaults(func=cmd_prepare)

    nb = sub.add_parser("nb", help="notebook stages").add_subparsers(
        dest="nb_command", required=True
    )
    r = nb.add_parser("run", help="execute a notebook as a pipeline stage")
    r.add_argument("notebook")
    r.add_argument("--params", help="params file (default: params.yaml at the project root)")
    r.add_argument("-p", "--param", type=_override, action="append", help="override: key=value")
    r.add_argument("--no-html", action="store_true", help="skip the HTML copy")
    r.add_argument("--kernel", action="store_true", help="run in a Jupyter kernel, not in-process")
    r.add_argument(
        "--output",
        metavar="DIR",
        help="write every output under DIR, mirroring the project's layout (default: in place, "
        "as the pipeline stage does; with -p or --params: reports/adhoc/<notebook>/)",
    )
    r.set_defaults(func=cmd_nb_run)

    reg = sub.add_parser("register", help="import the evaluated model into the BentoML store")
    reg.set_defaults(func=cmd_register)

    pkg = sub.add_parser("package", help="bentoml build of the production (or latest) model")
    pkg.add_argument(
        "--version",
        help="package this registry version's model instead (reports/package.json stays the "
        "package stage's)",
    )
    pkg.set_defaults(func=cmd_package)

    img = sub.add_parser("image", help="the bento as an OCI image (buildah/podman or Docker)")
    imgs = img.add_subparsers(dest="image_command", required=True)
    ib = imgs.add_parser(
        "build", help="build the image of a bento, tagged faultwatch-<project folder>:VERSION"
    )
    ib.add_argument(
        "what",
        nargs="?",
        help="registry version (v0.0.1; its bento is built when none exists) or bento tag; "
        "default: the bento of reports/package.json",
    )
    ib.add_argument("--force", action="store_true", help="build even when the image is current")
    ib.add_argument(
        "--no-cache", action="store_true", help="reuse no layer of an earlier build (cold)"
    )
    ib.add_argument("--json", action="store_true", help="print the result as JSON")
    imgs.add_parser(
        "check", help="build the base image if missing and check that containers run here"
    )
    imgs.add_parser(
        "name", help="the name of this project's images (faultwatch-<project folder>), alone"
    )
    img.set_defaults(func=cmd_image)

    pro = sub.add_parser("promote", help="gate the registered candidate against production")
    pro.add_argument("--strict", action="store_true", help="exit 3 when the candidate is rejected")
    pro.set_defaults(func=cmd_promote)

    rg = sub.add_parser("registry", help="model versions, stages, approval").add_subparsers(
        dest="registry_command", required=True
    )
    rg.add_parser("list", help="every version").set_defaults(func=cmd_registry_list)
    show = rg.add_parser("show", help="one version with its provenance")
    show.add_argument("version")
    show.set_defaults(func=cmd_registry_show)
    live = rg.add_parser(
        "production",
        help="record that VERSION now serves all the traffic where `faultwatch deploy` does not "
        "run it (Kubernetes, compose); deploy records it itself",
    )
    live.add_argument("version")
    live.add_argument("--reason", required=True, help="what put it live (kept in the tag)")
    live.set_defaults(func=cmd_registry_production)

    srv = sub.add_parser(
        "serve", help="serve the packaged bento (or VERSION) from the project store"
    )
    srv.add_argument(
        "version",
        nargs="?",
        help="registry version (v0.0.1), bento tag (faultwatch:TAG) or store entry "
        "(fault_cnn:TAG); default: the bento of reports/package.json",
    )
    srv.add_argument("--port", type=int, default=3000)
    srv.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    srv.add_argument("--show-config", action="store_true", help="print what would be served, exit")
    srv.set_defaults(func=cmd_serve)

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
    st = dep.add_parser("stage", help="VERSION as the standby colour, smoke-tested, no traffic")
    st.add_argument("version")
    dep.add_parser("switch", help="all traffic to the staged colour")
    dep.add_parser("rollback", help="back to the previous colour (or the canary to 0 %%)")
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
    sh = dep.add_parser("shadow", help="copy live traffic to the staged colour (on|off)")
    sh.add_argument("mode", choices=["on", "off"])
    an = dep.add_parser("analyse", help="the analysis gate of the staged colour, now")
    an.add_argument("--window", type=float, default=60.0, help="seconds of log (default 60)")
    stt = dep.add_parser("status", help="colours, versions, weights, analysis, shadow agreement")
    stt.add_argument("--json", action="store_true")
    dep.add_parser("down", help="stop the router and both colours")
    for sp in dep.choices.values():
        sp.set_defaults(func=cmd_deploy)

    tr = sub.add_parser(
        "simulate-traffic",
        help="replay signals to a service or router, optionally drifted, and label them later",
    )
    tr.add_argument("url", help="the service or the router, e.g. http://127.0.0.1:8080")
    tr.add_argument(
        "--signals",
        metavar="PARQUET",
        help="signals to replay: `values`, and `y` or `label` for the true classes "
        "(default: data/prepared/test.parquet)",
    )
    tr.add_argument(
        "--fault-label", help="with a `label` column and no `y`: the fault class's label"
    )
    positive, at_least_0 = "a number > 0", "a number >= 0"
    tr.add_argument(
        "--rate",
        type=_number(positive, lambda v: v > 0),
        default=10.0,
        help="requests per second (default 10)",
    )
    tr.add_argument(
        "--count",
        type=_number("a whole number >= 1", lambda v: v >= 1, int),
        help="stop after this many requests (default: one pass over the signals, unless "
        "--duration is given)",
    )
    tr.add_argument(
        "--duration", type=_number(positive, lambda v: v > 0), help="stop after this many seconds"
    )
    tr.add_argument(
        "--concurrency",
        type=_number("a whole number from 1 to 256", lambda v: 1 <= v <= 256, int),
        default=4,
        help="requests in flight at most (default 4)",
    )
    tr.add_argument(
        "--batch-size",
        type=_number("a whole number from 1 to 64", lambda v: 1 <= v <= 64, int),
        default=1,
        help="signals per /predict_batch request (default 1)",
    )
    tr.add_argument(
        "--scale",
        type=_number(positive, lambda v: v > 0),
        default=1.0,
        help="drift: multiply every sample by this (default 1)",
    )
    tr.add_argument(
        "--offset",
        type=_number("a finite number", lambda v: True),
        default=0.0,
        help="drift: add this many standard deviations of each signal (default 0)",
    )
    tr.add_argument(
        "--noise",
        type=_number(at_least_0, lambda v: v >= 0),
        default=0.0,
        help="drift: gaussian noise, std = this x each signal's std (default 0)",
    )
    tr.add_argument(
        "--time-shift",
        type=_number("a fraction between -1 and 1", lambda v: -1 < v < 1),
        default=0.0,
        help="drift: roll each signal by this fraction of its length (default 0)",
    )
    tr.add_argument(
        "--fault-share",
        type=_number("a share from 0 to 1", lambda v: 0 <= v <= 1),
        help="another class mix: resample (seeded) so that faults are this share",
    )
    tr.add_argument(
        "--label-delay",
        type=_number(at_least_0, lambda v: v >= 0),
        metavar="SECONDS",
        help="post each signal's true label to /feedback this long after its answer",
    )
    tr.add_argument("--seed", type=int, default=0, help="noise and resampling seed (default 0)")
    tr.add_argument("--json", action="store_true", help="print the summary as JSON")
    tr.set_defaults(func=cmd_simulate_traffic)

    rt_ = sub.add_parser(
        "retrain",
        help="labelled signals -> validate -> data version -> dvc repro -> promotion gate -> "
        "stage -> canary -> switch",
    )
    rt_.add_argument(
        "file",
        nargs="?",
        help="labelled signals in any format `prepare` reads (.tsv .csv .ts .parquet)",
    )
    rt_.add_argument(
        "--from-log",
        nargs="?",
        const="",
        metavar="TARGET",
        help="the labelled production signals of the prediction log instead (default target: "
        "FAULTWATCH_PREDICTION_LOG, else reports/serving/predictions.sqlite)",
    )
    rt_.add_argument("--since", type=_when, help="--from-log window start (unix s or ISO 8601)")
    rt_.add_argument("--until", type=_when, help="--from-log window end (unix s or ISO 8601)")
    rt_.add_argument(
        "--steps",
        nargs="?",
        const="",
        type=_steps,
        help="canary percentages (default: params deploy.canary_steps)",
    )
    rt_.add_argument(
        "--interval",
        type=_number("a number > 0", lambda v: v > 0),
        help="seconds per canary step (default: params deploy.canary_interval_s)",
    )
    rt_.add_argument("--dry-run", action="store_true", help="validate the batch, change nothing")
    rt_.set_defaults(func=cmd_retrain)

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

    page = sub.add_parser(
        "report",
        help="write reports/index.html: notebooks, metrics, plots, provenance, registry, "
        "monitoring (--list: the files under reports/)",
    )
    page.add_argument(
        "--list", action="store_true", help="list the files under reports/ instead, by folder"
    )
    page.set_defaults(func=cmd_report)
    # the old name of `report --list`, hidden (no help: not listed)
    sub.add_parser("reports").set_defaults(func=list_reports)
    return ap


def _project_environment() -> None:
    """The project's BentoML store (absolute) and offline W&B for every command and the
    processes it starts, whether or not it was started through `make`."""
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        os.environ["BENTOML_HOME"] = str(bentoml_home(project_root()))
    except FileNotFoundError:
        pass  # outside a project: BentoML's own default


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _project_environment()
    try:
        return args.func(args)
    except FaultwatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
