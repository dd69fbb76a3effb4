"""`faultwatch prepare`: the data stage."""

from __future__ import annotations

import argparse

from faultwatch import progress
from faultwatch.paths import display_path, project_root


def cmd_prepare(args: argparse.Namespace) -> int:
    # imported here, not at the top: pandas and the readers behind them take seconds, which
    # every other command (and --help) would pay
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="ingest, validate and split the data source")
    p.add_argument("--params", help="params file (default: params.yaml at the project root)")
    p.set_defaults(func=cmd_prepare)
