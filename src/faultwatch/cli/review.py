"""`faultwatch review`: the predictions of a window that still wait for a label, the ones the
model called faults first (faultwatch.monitor.review; notebooks/06_review.ipynb shows them
with their signals and nearest training examples, and sends a person's labels)."""

from __future__ import annotations

import argparse
import json

from faultwatch.cli.args import _number
from faultwatch.paths import project_root

HEADER = ("prediction_id", "time (UTC)", "group", "version", "p", "answer", "request_id")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """The options given, over params.yaml:review (--last and --since exclude each other)."""
    out: dict[str, object] = {}
    if args.last is not None:
        out.update(last=args.last, since=None)
    if args.since is not None:
        out.update(since=args.since, last=None)
    if args.until is not None:
        out["until"] = args.until
    if args.log is not None:
        out["log"] = args.log
    if args.group is not None:
        out["model"] = args.group
    return out


def cmd_review(args: argparse.Namespace) -> int:
    # imported here: pandas and the prediction log's readers take a while to import
    from faultwatch.monitor.review import check_log_exists, read_waiting, table
    from faultwatch.params import load_params, section

    root = project_root()
    raw = load_params(root / "params.yaml")
    # checked as params are: a bad option names its key before the log is opened
    merged = {**(raw.get("review") or {}), **_overrides(args)}
    params = section("review", {"review": merged}, source="options")
    check_log_exists(params)
    waiting = read_waiting(params)
    rows = waiting.rows if args.limit == 0 else waiting.rows.head(args.limit)
    shown = table(rows).assign(request_id=rows["request_id"].fillna("-").to_numpy())
    if args.json:
        out = {
            "log": waiting.target,
            "start": waiting.start,
            "end": waiting.end,
            "n_predictions": waiting.n_predictions,
            "n_labelled": waiting.n_labelled,
            "n_waiting": len(waiting.rows),
            "n_waiting_faults": waiting.n_faults,
            "waiting": json.loads(shown.drop(columns="why").to_json(orient="records")),
        }
        print(json.dumps(out, indent=1))
        return 0
    print(waiting.summary())
    if len(rows):
        cells = [HEADER] + [
            (
                r.prediction_id,
                r.time,
                r.group,
                r.version,
                f"{r.probability:.4f}",
                r.answer,
                r.request_id,
            )
            for r in shown.itertuples()
        ]
        widths = [max(len(str(c[i])) for c in cells) for i in range(len(HEADER))]
        for c in cells:
            print("  ".join(str(v).ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    if len(waiting.rows) > len(rows):
        print(f"... and {len(waiting.rows) - len(rows)} more (--limit 0 lists them all)")
    if len(waiting.rows):
        print(
            "label them: notebooks/06_review.ipynb in JupyterLab (your labeller's token), or "
            'POST /feedback {"prediction_id", "label"} with Authorization: Bearer TOKEN'
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    rev = sub.add_parser(
        "review",
        help="the predictions of a window still waiting for a label, faults first "
        "(notebooks/06_review.ipynb labels them); default window: params.yaml:review",
    )
    span = rev.add_mutually_exclusive_group()
    span.add_argument(
        "--last", metavar="DURATION", help="the window: this long before --until (24h, 7d)"
    )
    span.add_argument(
        "--since", metavar="TIME", help="the window's start (ISO 8601 or unix seconds)"
    )
    rev.add_argument("--until", metavar="TIME", help="the window's end (default: now)")
    rev.add_argument(
        "--log", metavar="TARGET", help="the prediction log: a path or postgresql://..."
    )
    rev.add_argument(
        "--group",
        metavar="NAME",
        help="a model group: only the rows its model answered (fault_cnn: the project's own)",
    )
    rev.add_argument(
        "--limit",
        type=_number("a whole number >= 0", lambda v: v >= 0, int),
        default=50,
        metavar="N",
        help="list at most N predictions (default 50; 0: all)",
    )
    rev.add_argument("--json", action="store_true", help="print JSON: the counts and the list")
    rev.set_defaults(func=cmd_review)
