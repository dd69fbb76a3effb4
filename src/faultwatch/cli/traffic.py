"""`faultwatch simulate-traffic`: signals replayed to a service or router, optionally drifted,
their true labels posted later."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from faultwatch import progress
from faultwatch.cli.args import _number
from faultwatch.errors import FaultwatchError
from faultwatch.paths import project_root


def _bound(count: int | None, duration_s: float | None) -> str:
    """When the replay stops, as the first line says it."""
    return (
        " and ".join(
            b
            for b in (
                f"{count} requests" if count is not None else "",
                f"{duration_s:g} s" if duration_s is not None else "",
            )
            if b
        )
        or "one pass over the signals"
    )


def labeller_token(root: Path, name: str) -> str:
    """`name`'s token in the labellers' file the project's servers read; FaultwatchError
    saying how to make one when there is none."""
    from faultwatch.serve.credentials import read
    from faultwatch.serve.launch import labeller_tokens

    path = labeller_tokens(root)
    tokens = read(path) if path.exists() else {}
    if name not in tokens:
        raise FaultwatchError(
            f"--labeller {name}: no token for {name!r} in {path}; "
            f"`faultwatch labellers add {name}` writes one (labels need a labeller's token)"
        )
    return tokens[name]


def cmd_simulate_traffic(args: argparse.Namespace) -> int:
    # imported here: numpy, and pandas to read the signals, take a while to import
    from faultwatch import traffic

    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        raise FaultwatchError(
            f"url {args.url!r}: expected http://HOST:PORT (the service or router)"
        )
    root = project_root()
    path = Path(args.signals) if args.signals else root / "data/prepared/test.parquet"
    signals = traffic.read_signals_file(path, args.fault_label)
    drift = traffic.Drift(
        args.scale, args.offset, args.noise, args.time_shift, args.fault_share, args.drift_channel
    )
    drift.check_channel(signals.channels)
    plan = traffic.Plan(
        url=args.url.rstrip("/"),
        rate=args.rate,
        count=args.count,
        duration_s=args.duration,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        label_delay_s=args.label_delay,
        token=None if args.label_delay is None else labeller_token(root, args.labeller),
        seed=args.seed,
        body=args.body,
    )
    print(
        f"simulate-traffic: {len(signals.values)} signals"
        + (f" (channels {', '.join(signals.channels)})" if signals.channels else "")
        + f" from {path} to {plan.url} at "
        f"{plan.rate:g} req/s ({plan.batch_size} signal(s) each), concurrency "
        f"{plan.concurrency}, at most {_bound(plan.count, plan.duration_s)}; drift: "
        f"{drift.describe()}"
        + (
            f"; labels to /feedback after {plan.label_delay_s:g} s as {args.labeller}"
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


def _drift_options(tr: argparse.ArgumentParser, positive: str, at_least_0: str) -> None:
    """--scale, --offset, --noise, --time-shift and --fault-share (see faultwatch.traffic)."""
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
        "--drift-channel",
        metavar="NAME",
        help="multichannel signals: apply --scale, --offset, --noise and --time-shift to this "
        "channel only (e.g. z), the others sent unchanged (default: every channel, each by "
        "its own std)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "simulate-traffic",
        help="replay signals to a service or router, optionally drifted, and label them later",
    )
    tr.add_argument("url", help="the service or the router, e.g. http://127.0.0.1:8080")
    tr.add_argument(
        "--signals",
        metavar="PARQUET",
        help="signals to replay: `values` (a prepared split's, multichannel too: sent channels "
        "first), and `y` or `label` for the true classes (default: data/prepared/test.parquet)",
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
        "--body",
        choices=("json", "npy"),
        default="json",
        help="each request as JSON (default) or as one .npy array (Content-Type "
        "application/x-npy; a request's signals of one length)",
    )
    _drift_options(tr, positive, at_least_0)
    tr.add_argument(
        "--label-delay",
        type=_number(at_least_0, lambda v: v >= 0),
        metavar="SECONDS",
        help="post each signal's true label to /feedback this long after its answer",
    )
    tr.add_argument(
        "--labeller",
        default="simulate-traffic",
        metavar="NAME",
        help="with --label-delay: the labeller whose token /feedback gets, from the project's "
        ".faultwatch/labellers or FAULTWATCH_LABELLER_TOKENS (default simulate-traffic; "
        "`faultwatch labellers add NAME` writes one)",
    )
    tr.add_argument("--seed", type=int, default=0, help="noise and resampling seed (default 0)")
    tr.add_argument("--json", action="store_true", help="print the summary as JSON")
    tr.set_defaults(func=cmd_simulate_traffic)
