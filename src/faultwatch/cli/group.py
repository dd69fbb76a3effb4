"""`faultwatch group`: the model groups of params.yaml (faultwatch.groups)."""

from __future__ import annotations

import argparse
import sys

from faultwatch.paths import display_path, project_root


def cmd_group_params(args: argparse.Namespace) -> int:
    from faultwatch.groups import write_group_params

    root = project_root()
    path = write_group_params(root, args.name)
    print(f"wrote {display_path(path, root)}")
    return 0


def cmd_group_list(args: argparse.Namespace) -> int:
    from faultwatch.groups import specs
    from faultwatch.params import load_params

    root = project_root()
    groups = specs(load_params(root / "params.yaml"))
    if args.names:  # one name a line: deploy/k8s/fleet/groups.txt
        print("\n".join(groups))
        return 0
    if not groups:
        print("no groups: params.yaml `groups` is empty (the project is one model, fault_cnn)")
        return 0
    print(f"{'group':<20} {'collection':<14} {'owner':<12} {'data':<34} description")
    for name, g in groups.items():
        data = g.data.get("source") or "(data.source)"
        if g.data.get("filter"):
            data += " where " + ", ".join(f"{k}={v}" for k, v in g.data["filter"].items())
        label = g.data.get("positive_label")
        if label is not None:
            data += f", fault {label}"
        print(
            f"{name:<20} {g.collection or '-':<14} {g.owner or '-':<12} {data:<34} "
            f"{g.description or ''}"
        )
    return 0


def cmd_group_train(args: argparse.Namespace) -> int:
    from faultwatch import progress
    from faultwatch.fleet import train

    root = project_root()
    done = train(root, args.names, args.jobs, progress=lambda m: print(m, file=sys.stderr))
    progress.done(
        f"{len(done)} groups trained, {args.jobs} at a time (DVC's experiment queue): "
        + ", ".join(t.group for t in done),
        "the workspace (dvc.lock and groups/NAME/, as `dvc repro` leaves them)",
        "git add -A && git commit, then faultwatch promote --all",
    )
    return 0


def cmd_group_collect(args: argparse.Namespace) -> int:
    from faultwatch import progress
    from faultwatch.fleet import collect_experiments

    root = project_root()
    done = collect_experiments(root, args.experiments)
    progress.done(
        f"{len(done)} groups' results: " + ", ".join(f"{t.group} ({t.experiment})" for t in done),
        "the workspace (dvc.lock and groups/NAME/)",
        "git add -A && git commit, then faultwatch promote --all",
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("group", help="model groups (params.yaml groups)").add_subparsers(
        dest="group_command", required=True
    )
    ls = g.add_parser("list", help="the groups, their data and metadata")
    ls.add_argument("--names", action="store_true", help="the names alone, one a line")
    ls.set_defaults(func=cmd_group_list)
    p = g.add_parser(
        "params",
        help="write groups/NAME/params.yaml (the project's sections with the group's "
        "overrides; dvc.yaml's group-params stage runs it)",
    )
    p.add_argument("name")
    p.set_defaults(func=cmd_group_params)
    t = g.add_parser(
        "train",
        help="run groups' stages in parallel: DVC's experiment queue with --jobs workers, "
        "then every group's results into the workspace",
    )
    t.add_argument("names", nargs="*", metavar="NAME", help="the groups (default: all)")
    t.add_argument("-j", "--jobs", type=int, default=2, help="workers (default 2)")
    t.set_defaults(func=cmd_group_train)
    c = g.add_parser(
        "collect",
        help="bring the results of group experiments (fleet-NAME-..., e.g. pushed by the "
        "Kubernetes Job of deploy/k8s/fleet and `dvc exp pull`ed) into the workspace",
    )
    c.add_argument("experiments", nargs="+", metavar="EXPERIMENT")
    c.set_defaults(func=cmd_group_collect)
