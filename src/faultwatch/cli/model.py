"""The model after the pipeline: `faultwatch register`, `package`, `image` and `promote`.

The handlers import the modules behind them when they run: those pull in pydantic, numpy and
the serving code, which every other command (and --help) would otherwise pay for at start."""

from __future__ import annotations

import argparse
import json
import sys

from faultwatch import progress
from faultwatch.cli.report import refresh_page
from faultwatch.paths import bentoml_home, display_path, home_root, project_root


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


def cmd_image_name(args: argparse.Namespace) -> int:
    from faultwatch import image

    root = project_root()
    print(image.image_name(root))
    return 0


def cmd_image_check(args: argparse.Namespace) -> int:
    from faultwatch import image

    root = project_root()
    base = image.base_image(root) or "localhost/faultwatch-base:bookworm"
    eng = image.engine()
    print(image.ensure_base(root, eng, base))
    print(image.check_runtime(base))
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from faultwatch import image

    root = project_root()
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


def _promote_one(root):
    from faultwatch.params import load_params, section
    from faultwatch.promote import promote_if_better

    params = section("promote", load_params(root / "params.yaml"))
    return promote_if_better(root, params), params


def cmd_promote(args: argparse.Namespace) -> int:
    from faultwatch.groups import group_root, promotable
    from faultwatch.promote import PROMOTION_FILE

    home = home_root(project_root())
    if args.all:
        return _promote_all(home, promotable(home), args.strict)
    root = group_root(home, args.group) if args.group else project_root()
    (d, version), _ = _promote_one(root)
    name = f"{args.group} " if args.group else ""
    approval = _approval(root, version)
    status = approval.upper()
    if approval == "pending":
        status = "PENDING (the gate passed it; a person approves or rejects it)"
    print(f"{name}{version}: {status}")
    for r in d.reasons:
        print(f"  - {r}")
    refresh_page(home)
    shown = display_path(root / PROMOTION_FILE, home)
    where = f"the registry's git tags (faultwatch registry show {name}{version}) and {shown}"
    if approval == "pending":
        progress.done(
            f"{name}{version} passed the gate and waits for a person (promote.require_approval)",
            where,
            f"faultwatch approve {args.group or 'fault_cnn'} {version} --by NAME [--reason ...] "
            "(or reject)",
        )
    elif approval == "approved":
        progress.done(
            f"{name}{version} approved: production once the deployment puts the traffic on it",
            where,
            f"dvc repro -f -s package (its bento), then faultwatch deploy stage {version} "
            f"(or deploy up {version})",
        )
    else:
        progress.done(
            f"{name}{version} rejected: the current model stays"
            + ("" if not d.approved else " (a person's decision)"),
            where,
            "dvc exp show (look for a better candidate: dvc exp run -S train.KEY=VALUE)",
        )
    return 0 if approval != "rejected" or not args.strict else 3


def _approval(root, version: str) -> str:
    """The version's approval in the registry after the gate: the gate's, or a person's."""
    from faultwatch import registry

    return registry.get(version, root).approval


def _promote_all(home, groups: dict, strict: bool) -> int:
    """Every group's gate, one after another; a table of the decisions. A group that cannot
    be gated (never run, a missing file) is a row with its error, not the end of the run."""
    from faultwatch.errors import FaultwatchError

    rows = []
    for name, root in groups.items():
        try:
            (d, version), _ = _promote_one(root)
        except FaultwatchError as e:
            rows.append((name, "-", "ERROR", [str(e)]))
            continue
        rows.append((name, version, _approval(root, version), d.reasons))
    print(f"{'group':<20} {'version':<9} {'decision':<9} reasons")
    for name, version, status, reasons in rows:
        print(f"{name:<20} {version:<9} {status:<9} {reasons[0] if reasons else ''}")
        for r in reasons[1:]:
            print(f"{'':<40} {r}")
    refresh_page(home)
    refused = [r[0] for r in rows if r[2] in ("rejected", "ERROR")]
    pending = [r[0] for r in rows if r[2] == "pending"]
    progress.done(
        f"{len(rows)} groups gated: {len(rows) - len(refused) - len(pending)} approved, "
        f"{len(pending)} pending, {len(refused)} refused"
        + (f" ({', '.join(refused)})" if refused else ""),
        "the registry's git tags (faultwatch registry list)",
        "faultwatch approve GROUP VERSION --by NAME" if pending else "faultwatch registry list",
    )
    return 3 if strict and refused else (1 if any(r[2] == "ERROR" for r in rows) else 0)


def _register_image(sub: argparse._SubParsersAction) -> None:
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
    ib.set_defaults(func=cmd_image_build)
    imgs.add_parser(
        "check", help="build the base image if missing and check that containers run here"
    ).set_defaults(func=cmd_image_check)
    imgs.add_parser(
        "name", help="the name of this project's images (faultwatch-<project folder>), alone"
    ).set_defaults(func=cmd_image_name)


def register(sub: argparse._SubParsersAction) -> None:
    reg = sub.add_parser("register", help="import the evaluated model into the BentoML store")
    reg.set_defaults(func=cmd_register)

    pkg = sub.add_parser("package", help="bentoml build of the production (or latest) model")
    pkg.add_argument(
        "--version",
        help="package this registry version's model instead (reports/package.json stays the "
        "package stage's)",
    )
    pkg.set_defaults(func=cmd_package)

    _register_image(sub)

    pro = sub.add_parser("promote", help="gate the registered candidate against production")
    pro.add_argument(
        "group", nargs="?", help="a model group (params.yaml groups); default: the project's model"
    )
    pro.add_argument("--all", action="store_true", help="every group (and the project's model)")
    pro.add_argument("--strict", action="store_true", help="exit 3 when a candidate is rejected")
    pro.set_defaults(func=cmd_promote)
