"""`faultwatch` console script: the stage commands dvc.yaml calls, and a few helpers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from faultwatch.errors import FaultwatchError
from faultwatch.paths import project_root


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
    summary = prepare(section("data", raw), section("split", raw), root)
    for name, s in summary.items():
        print(f"{name}: {s['n_signals']} signals, {s['n_fault']} fault ({s['fault_ratio']:.1%})")
    return 0


def cmd_nb_run(args: argparse.Namespace) -> int:
    from faultwatch.notebook import run_notebook

    root = project_root()
    run = run_notebook(
        Path(args.notebook).resolve(),
        root,
        params_file=Path(args.params).resolve() if args.params else None,
        overrides=dict(args.param or []),
        html=not args.no_html,
        kernel=args.kernel,
    )
    for p in (run.notebook, run.html, run.metrics):
        if p.exists():
            print(f"wrote {p.relative_to(root)}")
    return 0


def cmd_reports(args: argparse.Namespace) -> int:
    root = project_root()
    reports = root / "reports"
    files = sorted(p for p in reports.rglob("*") if p.is_file() and not p.name.startswith("."))
    print(f"reports under {reports}:")
    for p in files:
        print(f"  {p.relative_to(root)}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="faultwatch", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

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
    r.set_defaults(func=cmd_nb_run)

    rep = sub.add_parser("reports", help="list the reports the pipeline wrote")
    rep.set_defaults(func=cmd_reports)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except FaultwatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
