"""Benchmark of the container image: build time cold and warm, size, and start to /readyz of a
container against a `faultwatch serve` process of the same version, in the same session.

    .venv/bin/python bench/image.py [VERSION] [--starts 3]

VERSION: a registry version (default: the production version, else the newest registered one).
Cold: `faultwatch image build VERSION --no-cache` (the base image present: it is built once per
machine, `deploy/base-image.sh`, timed by `time` there); warm: `--force`, every layer cached but
the bento's. Then `--starts` times each: a container of faultwatch:VERSION on a free port, and
`faultwatch serve VERSION`, from the command to the first 200 of /readyz. Prints the ratio
container / process. Run as root (podman, rootful) in the project.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))  # tests.helpers: the tests' free port and readiness wait

from tests.helpers.ports import free_port  # noqa: E402
from tests.helpers.ready import NotReady, until_ready  # noqa: E402


def fw(*args: str) -> str:
    p = subprocess.run([str(BIN / "faultwatch"), *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"faultwatch {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def ready_after(url: str, t0: float, timeout_s: float = 180) -> float:
    """Seconds from `t0` (time.monotonic) to the first 200 of `url`/readyz."""
    try:
        return until_ready(url, timeout_s, interval_s=0.05, t0=t0)
    except NotReady as e:
        raise SystemExit(f"{url}/readyz: {e}") from None


def pick_version() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from faultwatch import registry

    prod = registry.production(ROOT)
    if prod:
        return prod.version
    vs = registry.versions(ROOT)
    if not vs:
        sys.exit("no registered version: run the pipeline and `faultwatch promote` first")
    return vs[-1].version


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("version", nargs="?")
    ap.add_argument("--starts", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("BENTOML_HOME", str(ROOT / ".bentoml"))
    version = args.version or pick_version()
    builds = {}
    for label, flags in (("cold (--no-cache)", ["--no-cache"]), ("warm (--force)", ["--force"])):
        t0 = time.monotonic()
        out = fw("image", "build", version, "--json", *flags)
        builds[label] = (time.monotonic() - t0, json.loads(out[out.index("{") :]))
    image = builds["warm (--force)"][1]["image"]
    print(f"image {image}: {builds['warm (--force)'][1]['size_mb']} MB")
    for label, (s, _) in builds.items():
        print(f"  build {label:18}: {s:6.1f} s")

    starts: dict[str, list[float]] = {"container": [], "process": []}
    for i in range(args.starts):
        port = free_port()
        name = f"fw-bench-{os.getpid()}-{i}"
        t0 = time.monotonic()
        subprocess.run(
            ["podman", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3000", image],
            check=True,
            capture_output=True,
        )
        try:
            starts["container"].append(ready_after(f"http://127.0.0.1:{port}", t0))
        finally:
            subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        port = free_port()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [str(BIN / "faultwatch"), "serve", version, "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            starts["process"].append(ready_after(f"http://127.0.0.1:{port}", t0))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    med = {k: statistics.median(v) for k, v in starts.items()}
    for k, v in starts.items():
        print(
            f"  start to /readyz, {k:9}: median {med[k]:.2f} s ({', '.join(f'{x:.2f}' for x in v)})"
        )
    print(f"  container / process: {med['container'] / med['process']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
