"""`faultwatch registry`: the model versions with their stages and approval."""

from __future__ import annotations

import argparse
import json
import sys

from faultwatch import progress, registry
from faultwatch.cli.report import refresh_page
from faultwatch.paths import home_root, project_root


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _fleet(root) -> tuple[dict[str, list[registry.Version]], dict[str, dict]]:
    """Every artifact's versions (one read of the tags) and each group's metadata."""
    from faultwatch.groups import specs
    from faultwatch.params import load_params

    groups = specs(load_params(root / "params.yaml"))
    meta = {name: g.model_dump() for name, g in groups.items()}
    found = registry.artifacts(home_root(root))
    for name in groups:
        found.setdefault(name, [])
    return found, meta


def cmd_fleet_list(root) -> int:
    """The groups: latest version, production, approval, headline metric, collection."""
    found, meta = _fleet(root)
    metric = "f1"
    print(
        f"{'group':<20} {'collection':<14} {'latest':<9} {'approval':<9} {'test ' + metric:>8}"
        f"  {'production':<10} {'prod ' + metric:>8}"
    )
    for name, vs in sorted(found.items()):
        latest = vs[-1] if vs else None
        prod = next((v for v in reversed(vs) if registry.PRODUCTION in v.stages), None)
        coll = (meta.get(name) or {}).get("collection") or "-"
        if name == registry.ARTIFACT:
            coll = "(project)"
        print(
            f"{name:<20} {coll:<14} {latest.version if latest else '-':<9} "
            f"{latest.approval if latest else '-':<9} "
            f"{_fmt((latest.record.get('test') or {}).get(metric)) if latest else '-':>8}  "
            f"{prod.version if prod else '-':<10} "
            f"{_fmt((prod.record.get('test') or {}).get(metric)) if prod else '-':>8}"
        )
    print(f"{len(found)} groups; one group's versions: faultwatch registry list GROUP")
    return 0


def cmd_registry_list(args: argparse.Namespace) -> int:
    root = project_root()
    if args.group is None:
        found, meta = _fleet(root)
        if meta or set(found) - {registry.ARTIFACT}:
            return cmd_fleet_list(root)
    return _versions_list(root, args.group)


def _versions_list(root, group: str | None) -> int:
    # imported here: the deployment's modules take a good part of a second to import
    from faultwatch.deploy.live import serving

    artifact = group or registry.where(root)[1]
    vs = registry.versions(home_root(root), artifact)
    if not vs and group is not None:
        found, _ = _fleet(root)
        if group not in found:
            known = ", ".join(sorted(found)) or "none"
            print(f"faultwatch: no group {group!r} (groups: {known})", file=sys.stderr)
            return 2
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
    if artifact != registry.ARTIFACT:
        return 0  # `faultwatch deploy` here serves the project's own model, not a group's
    here = serving(root)  # prod is what serves: the deployment here says the same, or not
    print(here.line())
    if here.problem:
        print(f"DISAGREE: {here.problem}")
    return 0


def cmd_registry_production(args: argparse.Namespace) -> int:
    root = project_root()
    artifact, version = (None, args.first) if args.version is None else (args.first, args.version)
    repo = home_root(root) if artifact else root
    v = registry.get(version, repo, artifact)  # a named error for an unknown version
    # refused unless approved (registry.NotApproved names who decided and why)
    changed = registry.set_production(v.version, args.reason, repo, artifact)
    refresh_page(home_root(root))
    progress.done(
        f"{v.version} is production ({args.reason})" if changed else f"{v.version} already was",
        "the registry's git tags",
        "faultwatch registry list",
    )
    return 0


def cmd_registry_show(args: argparse.Namespace) -> int:
    import bentoml  # seconds to import: only this command needs it
    from bentoml.exceptions import NotFound

    root = project_root()
    artifact, version = (None, args.first) if args.version is None else (args.first, args.version)
    v = registry.get(version, home_root(root) if artifact else root, artifact)
    try:
        info = bentoml.models.get(v.model_tag).info if v.model_tag else None
    except NotFound:
        info = None  # registered in another store: the registry's record is still shown
    # the gate's record names it; else the store entry's label; versions from before the
    # classical family existed are CNNs
    family = v.record.get("family") or (info.labels.get("family") if info else None) or "cnn"
    print(
        json.dumps(
            {
                "version": v.version,
                "family": family,
                "commit": v.commit,
                "created_at": v.created_at,
                "stages": list(v.stages),
                "approval": v.approval,
                "decision": v.decision,
                "record": v.record,
                "labels": dict(info.labels) if info else None,
                "provenance": dict(info.metadata) if info else None,
            },
            indent=2,
            default=str,
        )
    )
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    """`faultwatch approve | reject GROUP VERSION --by NAME [--reason ...]`."""
    root = project_root()
    home = home_root(root)
    decision = registry.APPROVED if args.decision == "approve" else registry.REJECTED
    v = registry.decide(args.version, decision, args.by, args.reason, home, args.group)
    refresh_page(home)
    d = v.decision
    print(f"{args.group} {v.version}: {v.approval} by {d.get('by')} at {d.get('at')}")
    nxt = (
        f"faultwatch deploy stage {v.version} (then canary or switch)"
        if v.approval == registry.APPROVED
        else f"faultwatch registry list {args.group}"
    )
    progress.done(
        f"{args.group} {v.version} {v.approval}" + (f" ({args.reason})" if args.reason else ""),
        f"the registry's git tags (faultwatch registry show {args.group} {v.version})",
        nxt,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    for verb, what in (("approve", "may go to production"), ("reject", "may never go")):
        d = sub.add_parser(
            verb,
            help=f"a person's decision: GROUP VERSION {what} (who and why kept in the registry)",
        )
        d.add_argument("group", help="the model group (params.yaml groups), or fault_cnn")
        d.add_argument("version")
        d.add_argument("--by", required=True, help="who decides (kept in the registry)")
        d.add_argument("--reason", help="why (kept in the registry)")
        d.set_defaults(func=cmd_decide, decision=verb)
    rg = sub.add_parser("registry", help="model versions, stages, approval").add_subparsers(
        dest="registry_command", required=True
    )
    ls = rg.add_parser(
        "list", help="every version (with model groups: every group; GROUP: its versions)"
    )
    ls.add_argument("group", nargs="?", help="a model group (params.yaml groups), or fault_cnn")
    ls.set_defaults(func=cmd_registry_list)
    show = rg.add_parser("show", help="one version with its provenance: [GROUP] VERSION")
    show.add_argument("first", metavar="[GROUP] VERSION")
    show.add_argument("version", nargs="?", help=argparse.SUPPRESS)
    show.set_defaults(func=cmd_registry_show)
    live = rg.add_parser(
        "production",
        help="record that VERSION now serves all the traffic where `faultwatch deploy` does not "
        "run it (Kubernetes, compose); deploy records it itself",
    )
    live.add_argument("first", metavar="[GROUP] VERSION")
    live.add_argument("version", nargs="?", help=argparse.SUPPRESS)
    live.add_argument("--reason", required=True, help="what put it live (kept in the tag)")
    live.set_defaults(func=cmd_registry_production)
