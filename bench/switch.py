"""Benchmark of `faultwatch deploy`: traffic moves under keep-alive load, and the shadow's cost.

    .venv/bin/python bench/switch.py [VERSION] [--concurrency 16] [--port 8090]
        [--runtime process|container] [--replicas N] [--project DIR]

With `--runtime container` the colours are containers of faultwatch:VERSION (`faultwatch image
build VERSION` first). With `--replicas N` each colour is N server processes (`deploy up
--replicas N`); the answers per router server are printed. `--project` runs it in another
project (default: this one), e.g. a copy of the deploy tests' project.

Deploys VERSION (default: the production version, else the newest registered one) as blue,
stages the same version as green (the answers tell the colours apart by the router's
X-Faultwatch-Server header), then, under a steady load of keep-alive clients, runs `switch`,
`rollback`, `canary 30`, `rollback` (of the canary), `switch` a few
seconds apart, and prints per action: failed requests, the time
from the command to the first answer from the new colour and to 100 % on it. Then the live
p50/p99 with the shadow off and on, in the same session, closed loop and paced (--rate
requests/s, spread evenly, below the saturation of a 2-core machine): the ratio is the
shadow's cost. Runs
in this project (refuses when something is deployed already) and ends with `deploy down`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faultwatch.deploy.load import Load  # noqa: E402


def fw(root: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "faultwatch"
    return subprocess.run([str(exe), *args], cwd=root, check=True, capture_output=True, text=True)


def pick_version(root: Path) -> str:
    from faultwatch import registry

    prod = registry.production(root)
    if prod:
        return prod.version
    vs = registry.versions(root)
    if not vs:
        sys.exit("no registered version: run the pipeline and `faultwatch promote` first")
    return vs[-1].version


def bodies(root: Path, n: int = 64) -> list[bytes]:
    test = pd.read_parquet(root / "data/prepared/test.parquet").head(n)
    return [json.dumps({"signal": [float(x) for x in v]}).encode() for v in test["values"]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("version", nargs="?")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--gap", type=float, default=4.0, help="seconds between actions")
    ap.add_argument("--rate", type=float, default=15.0, help="paced load, requests/s")
    ap.add_argument("--runtime", choices=["process", "container"], default="process")
    ap.add_argument("--replicas", type=int, default=1, help="servers per colour")
    ap.add_argument("--project", type=Path, default=ROOT, help="the project to deploy")
    args = ap.parse_args()
    root = args.project.resolve()
    os.environ.setdefault("BENTOML_HOME", str(root / ".bentoml"))

    def fw_(*a: str) -> subprocess.CompletedProcess:
        return fw(root, *a)

    state = json.loads(fw_("deploy", "status", "--json").stdout)
    if state["live"]:
        sys.exit("something is deployed here already: `faultwatch deploy down` first")
    version = args.version or pick_version(root)
    url = f"http://127.0.0.1:{args.port}"
    t0 = time.monotonic()
    fw_(
        "deploy",
        "up",
        version,
        "--port",
        str(args.port),
        "--runtime",
        args.runtime,
        "--replicas",
        str(args.replicas),
    )
    t1 = time.monotonic()
    fw_("deploy", "stage", version)
    print(
        f"{args.runtime}es, {args.replicas} per colour: up {t1 - t0:.1f} s, stage "
        f"{time.monotonic() - t1:.1f} s ({version} on both colours)"
    )
    data = bodies(root)
    try:
        Load(url, data, concurrency=args.concurrency, total=400).start().join(120)  # warm-up
        load = Load(url, data, concurrency=args.concurrency, total=None).start()
        # (name, command, the colour it moves traffic to); `rollback` during a canary sets the
        # canary to 0 %, otherwise it switches back to the previous colour
        actions = [
            ("switch", ["switch"], "green"),
            ("rollback", ["rollback"], "blue"),
            ("canary 30", ["canary", "30"], "green"),
            ("rollback", ["rollback"], "blue"),
            ("switch", ["switch"], "green"),
        ]
        marks = []
        time.sleep(args.gap)
        for name, cmd, to in actions:
            start = time.time()
            fw_("deploy", *cmd)
            marks.append((name, start, time.time(), to))
            time.sleep(args.gap)
        load.stop()
        load.join(60)
        print(
            f"\n{len(load.answers)} requests at concurrency {args.concurrency}, "
            f"{len(load.failed())} failed in all"
        )
        servers = Counter(a.server for a in load.answers if a.server)
        print(
            "answers per router server:", ", ".join(f"{k} {v}" for k, v in sorted(servers.items()))
        )
        print(f"{'action':10} {'cmd ms':>7} {'failed':>6} {'first new ms':>12} {'100 % ms':>9}")
        for i, (name, start, done, to) in enumerate(marks):
            until = marks[i + 1][1] if i + 1 < len(marks) else float("inf")
            window = [a for a in load.answers if start <= a.sent < until]
            failed = sum(a.status != 200 for a in window)
            first = load.first_from(to, start, until)
            full = None if name.startswith("canary") else load.all_from(to, start, until)
            fmt = lambda s: "-" if s is None else f"{s * 1e3:.0f}"  # noqa: E731
            print(
                f"{name:10} {(done - start) * 1e3:7.0f} {failed:6d} {fmt(first):>12} {fmt(full):>9}"
            )

        # the shadow's cost, same session, shadow off then on then off: closed loop (every
        # client sends again as soon as answered: the CPU is saturated, and on 2 cores the
        # shadow's own inference competes with the live one), then paced at --rate requests/s
        # (open loop, below saturation: what a service that is not overloaded sees)
        for label, kw in (
            (f"closed loop, concurrency {args.concurrency}", {"total": 1500}),
            (f"paced, {args.rate:g} requests/s", {"total": int(args.rate * 20), "rate": args.rate}),
        ):
            figures = {}
            for mode in ("off", "on", "off again"):
                fw_("deploy", "shadow", "on" if mode == "on" else "off")
                run = Load(url, data, concurrency=args.concurrency, **kw).start().join(300)
                figures[mode] = run.latency() | {"failed": len(run.failed())}
            print(f"\nlive latency, {label}")
            for mode, f in figures.items():
                print(
                    f"  shadow {mode:9}: p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, "
                    f"failed {f['failed']}"
                )
            base = (figures["off"]["p50_ms"] + figures["off again"]["p50_ms"]) / 2
            print(f"  shadow on / off p50 ratio: {figures['on']['p50_ms'] / base:.2f}")
        status = json.loads(fw_("deploy", "status", "--json").stdout)
        print("  shadow copies:", status.get("shadow_copies"))
        print("  agreement:", status.get("shadow_agreement"))
    finally:
        fw_("deploy", "down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
