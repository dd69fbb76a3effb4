"""Load held: a soak of a deployment behind its router, and slow clients against it.

    .venv/bin/python bench/soak.py [--seconds 600] [--fraction 0.8] [--slow-clients 200]
        [--slow-seconds 30] [--interval 5] [--warmup 60] [--out soak.json]

In a temporary project (the deploy tests' crafted detector network, registered as v0.0.1 and
promoted: tests/helpers/gate_project.py), `faultwatch deploy up v0.0.1` on a free port, then
faultwatch.deploy.soak: the capacity (answers/s of 16 keep-alive clients in closed loop, 10 s),
`--fraction` of it paced for `--seconds` with the resident memory of the live colour's
processes (the `faultwatch serve` supervisor and BentoML's workers, by their deploy tag) and
the router's sampled every `--interval` s, p50 / p99 per interval and per minute; then
`--slow-seconds` of the same paced load alone and as long beside `--slow-clients` slowloris
connections (half send their headers a byte a second and never finish them, half announce a
body and send it a byte a second): the normal clients' p99 and failures with them against
without, in the same run. Last, every request answered 200 is checked against the prediction
log (its row by request id; as many live rows as answers). Prints the figures, writes them as
JSON to `--out`; `deploy down` at the end, also on failure or Ctrl-C, and whatever it could not
stop (the processes of this deployment's tags, its router) is killed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.helpers: the deploy tests' project and CLI runner

from faultwatch.deploy import soak  # noqa: E402
from faultwatch.deploy.processes import free_port  # noqa: E402
from tests.helpers.cli import fw, git_commit, project_env, run  # noqa: E402
from tests.helpers.gate_project import (  # noqa: E402
    bodies,
    kill_leftover_deployment,
    make_project,
    put_model,
)


def make_deployable(root: Path) -> None:
    """The deploy tests' project (bentofile, deploy/) with one registered, promoted version."""
    make_project(root, bento=True)
    shutil.copytree(ROOT / "deploy", root / "deploy")
    put_model(root, "detector")
    run(["faultwatch", "register"], root, **project_env(root))
    run(["git", "add", "-A"], root)
    git_commit(root, "detector")
    run(["faultwatch", "promote"], root, **project_env(root))


def finite(x: object) -> object:
    """`x` with every NaN as None (JSON has no NaN)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="the held load's duration")
    ap.add_argument("--fraction", type=float, default=0.8, help="of the measured capacity")
    ap.add_argument("--capacity-seconds", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="left out of the memory slope")
    ap.add_argument("--slow-clients", type=int, default=200)
    ap.add_argument("--slow-seconds", type=float, default=30.0, help="without, then with them")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    params = soak.SoakParams(
        seconds=args.seconds,
        fraction=args.fraction,
        capacity_s=args.capacity_seconds,
        interval_s=args.interval,
        warmup_s=min(args.warmup, args.seconds / 2),
        slow_clients=args.slow_clients,
        slow_s=args.slow_seconds,
    )
    # a plain `kill` ends the run like Ctrl-C: through the `finally` that takes it down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    before = machine()
    with tempfile.TemporaryDirectory(prefix="faultwatch-soak-") as tmp:
        root = Path(tmp) / "proj"
        t0 = time.monotonic()
        make_deployable(root)
        t1 = time.monotonic()
        try:
            fw(root, "deploy", "up", "v0.0.1", "--port", str(free_port()))
            print(
                f"project {t1 - t0:.0f} s, deploy up {time.monotonic() - t1:.0f} s; "
                f"{before['cpus']} CPUs, load average {before['load_average']}",
                flush=True,
            )
            result = soak.run(root, bodies(), params, say=lambda s: print(s, flush=True))
        finally:
            fw(root, "deploy", "down", check=False)
            kill_leftover_deployment(root)
    result["machine"] = {"before": before, "after": machine()}
    print()
    print("\n".join(soak.report_lines(result)))
    print(f"load average before {before['load_average']}, after {machine()['load_average']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(finite(result), indent=1) + "\n")
        print(f"figures: {args.out}")
    lg = result["log"]
    return 0 if lg["equal"] and not lg["answered_without_row"] else 1


if __name__ == "__main__":
    sys.exit(main())
