"""`faultwatch registry`: the model versions with their stages and approval."""

from __future__ import annotations

import argparse
import json

from faultwatch import progress, registry
from faultwatch.cli.report import refresh_page
from faultwatch.paths import project_root


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def cmd_registry_list(args: argparse.Namespace) -> int:
    # imported here: the deployment's modules take a good part of a second to import
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
    import bentoml  # seconds to import: only this command needs it
    from bentoml.exceptions import NotFound

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


def register(sub: argparse._SubParsersAction) -> None:
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
