"""`faultwatch serve`: the packaged bento (or a version) served from the project's store."""

from __future__ import annotations

import argparse
import json

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
