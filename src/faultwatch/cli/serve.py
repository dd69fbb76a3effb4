"""`faultwatch serve`: the packaged bento (or a version) served from the project's store; and
`faultwatch labellers`: who may give labels to its /feedback (faultwatch.serve.credentials)."""

from __future__ import annotations

import argparse
import json
import sys

from faultwatch.paths import project_root


def cmd_serve(args: argparse.Namespace) -> int:
    # imported here: the serving code pulls in numpy and the prediction log's backends
    from faultwatch.serve.launch import exec_server, plan

    root = project_root()
    p = plan(root, args.version)
    if args.show_config:
        print(json.dumps(p.describe(args.host, args.port), indent=2))
        return 0
    exec_server(root, p, args.host, args.port)
    return 0  # not reached: the process is now the server


def cmd_labellers(args: argparse.Namespace) -> int:
    from faultwatch import progress
    from faultwatch.serve import credentials
    from faultwatch.serve.launch import labeller_tokens

    path = labeller_tokens(project_root())
    if args.action == "add":
        token = credentials.add(path, args.name)
        print(token)  # stdout: the token alone, once (TOKEN=$(faultwatch labellers add NAME))
        # the rest on stderr: it is sent as `Authorization: Bearer TOKEN` to /feedback, and
        # running servers read the file again (no restart)
        what = f"labeller {args.name} added, its token printed above (once: keep it secret)"
        print(progress.done_line(what, str(path)), file=sys.stderr, flush=True)
    elif args.action == "remove":
        credentials.remove(path, args.name)
        progress.done(f"labeller {args.name} removed: its token is refused now", str(path))
    else:
        names = list(credentials.read(path)) if path.exists() else []
        print("\n".join(names) if names else f"no labeller yet in {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
    lab = sub.add_parser(
        "labellers",
        help="who may give labels to /feedback: bearer tokens by name (.faultwatch/labellers)",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    add = lab.add_parser("add", help="a new token for NAME, printed once")
    add.add_argument("name", help="who labels (1-64 of A-Z a-z 0-9 . _ @ -), kept on each label")
    rm = lab.add_parser("remove", help="NAME's token refused from now on")
    rm.add_argument("name")
    lab.add_parser("list", help="the labellers' names (never their tokens)")
    for p in (add, rm, *lab.choices.values()):
        p.set_defaults(func=cmd_labellers)
