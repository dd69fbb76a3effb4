"""Serving cost: the BentoML service against a plain FastAPI endpoint and the raw model call.

One run, same model, same signals, same machine: p50 / p99 latency, requests per second and
server CPU time per request at concurrency 1 and 32 for
  - the raw model call in-process (the floor: batch 1, and batch 32 for what batching reaches),
  - a plain FastAPI + uvicorn endpoint (bench/serve_fastapi.py: one worker, a sync endpoint,
    the same pydantic schema and the same prediction-log write), what a user would pick instead,
  - the BentoML service, one worker, as shipped: `/predict` and `/predict_batch` sent one signal
    per request, both through its continuous micro-batcher,
  - the BentoML service with BentoML's own adaptive batching (FAULTWATCH_BATCHING=bentoml,
    `batchable=True`) on `/predict_batch`, one signal per request.
Every server runs torch with one thread (FAULTWATCH_TORCH_THREADS=1 -> torch.set_num_threads(1),
OMP_NUM_THREADS=1), so no contender gets more cores than another. All servers are up at once
and measured in interleaved rounds (order rotated each round), medians reported: on a shared
machine the neighbours' load moves wall-clock figures, so CPU ms per request is printed too.
The load generator is asyncio + aiohttp in this process (closed loop: each of the c clients
sends its next request when the last is answered); every non-2xx answer or error is counted.
Resident memory (RSS) of each server's processes is measured at the end.

    .venv/bin/python bench/serve.py [--rounds 3] [--duration 5] [--model-dir models/fault_cnn]

Without a trained model (models/fault_cnn) it serves a freshly initialised FaultCNN of the
default architecture (params: train); the cost does not depend on the weights. Signals: the
test split if data/prepared has one, else synthetic signals of the model's input length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))  # tests.helpers: the tests' free port and readiness wait

from tests.helpers.ports import free_port  # noqa: E402
from tests.helpers.ready import until_ready  # noqa: E402

CONCURRENCY = (1, 32)


# ---------------------------------------------------------------- helpers
def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def rss_mib(pid: int) -> tuple[float, float]:
    """(largest single process, whole tree) resident memory in MiB."""
    import psutil

    proc = psutil.Process(pid)
    rss = [p.memory_info().rss for p in [proc, *proc.children(recursive=True)]]
    return max(rss) / 2**20, sum(rss) / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server and its children: cost per request, robust to noise."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- load
async def load(
    url: str,
    bodies: list[bytes] | list[tuple[bytes, dict[str, str]]],
    concurrency: int,
    duration: float,
    server_pid: int,
) -> dict:
    """`concurrency` clients, each sending its next request when the last is answered.

    A body is JSON bytes, or (JSON bytes, headers sent with it besides the content type).
    Besides latency and throughput, the server's CPU time per answered request: on a shared
    2-core machine wall-clock figures move with the neighbours' load, CPU time much less."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    stop_at = 0.0

    async def client(session: aiohttp.ClientSession, k: int, record: bool) -> None:
        i = k
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            headers = {"content-type": "application/json"}
            if isinstance(body, tuple):
                body, extra = body
                headers.update(extra)
            i += concurrency
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    key = str(r.status)
            except aiohttp.ClientError as e:
                key = type(e).__name__
            if record:
                latencies.append(time.perf_counter() - t0)
                statuses[key] = statuses.get(key, 0) + 1

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        stop_at = time.perf_counter() + min(2.0, duration / 3)  # warm-up, not recorded
        await asyncio.gather(*(client(session, k, False) for k in range(concurrency)))
        stop_at = time.perf_counter() + duration
        t0, cpu0 = time.perf_counter(), cpu_seconds(server_pid)
        await asyncio.gather(*(client(session, k, True) for k in range(concurrency)))
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server_pid) - cpu0
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    return {
        "rps": ok / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "n": len(latencies),
        "cpu_ms": cpu * 1e3 / max(len(latencies), 1),
        "non_2xx": len(latencies) - ok,
        "statuses": statuses,
    }


def floor(model_dir: Path, signals: list[np.ndarray], duration: float) -> dict[int, dict]:
    """The raw model call in-process: batch 1 (c=1) and batch 32 (c=32), torch 1 thread."""
    import torch

    from faultwatch.model.io import load_model

    torch.set_num_threads(1)
    model = load_model(model_dir)
    out = {}
    for batch in CONCURRENCY:
        lat: list[float] = []
        i, cpu = 0, 0.0
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            chunk = [signals[(i + j) % len(signals)] for j in range(batch)]
            i += batch
            t0, c0 = time.perf_counter(), time.thread_time()
            model.predict_proba(chunk)
            lat.append(time.perf_counter() - t0)
            cpu += time.thread_time() - c0
        total = sum(lat)
        out[batch] = {
            "rps": batch * len(lat) / total,
            "p50_ms": percentile(lat, 50) * 1e3,
            "p99_ms": percentile(lat, 99) * 1e3,
            "n": len(lat) * batch,
            "non_2xx": 0,
            "cpu_ms": 1e3 * cpu / (batch * len(lat)),
        }
    return out


# ---------------------------------------------------------------- set-up
def model_and_signals(model_dir: Path | None, tmp: Path) -> tuple[Path, list[np.ndarray]]:
    from faultwatch.model.io import load_model

    if model_dir is None or not model_dir.exists():
        import torch

        from faultwatch.model.io import save_model
        from faultwatch.model.network import FaultCNN
        from faultwatch.model.params import TrainParams

        tp = TrainParams()  # the architecture the pipeline trains by default
        torch.manual_seed(0)
        model_dir = tmp / "fault_cnn"
        net = FaultCNN(tp.channels, tp.kernel_size, tp.dropout)
        save_model(model_dir, net, {"input_length": tp.length, "positive_label": "fault"})
    meta = load_model(model_dir).meta
    test = ROOT / "data" / "prepared" / "test.parquet"
    if test.exists():
        import pandas as pd

        signals = [np.asarray(v, dtype="float64") for v in pd.read_parquet(test)["values"]]
        source = f"{test.relative_to(ROOT)} ({len(signals)} signals)"
    else:
        rng = np.random.default_rng(0)
        n = int(meta["input_length"])
        signals = [np.sin(np.linspace(0, 20, n)) + 0.1 * rng.standard_normal(n) for _ in range(64)]
        source = f"synthetic ({len(signals)} signals of {n})"
    print(f"model: {model_dir}; signals: {source}", flush=True)
    return model_dir, signals


def start_server(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        until_ready(f"http://127.0.0.1:{port}", 90, proc, interval_s=0.3)
    except Exception:
        stop(proc)
        print(proc.stderr.read().decode()[-3000:] if proc.stderr else "", file=sys.stderr)
        raise
    return proc, port


def median_of(runs: list[dict]) -> dict:
    """Cell-wise median of repeated runs; counts are summed."""
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "cpu_ms": statistics.median(r.get("cpu_ms", float("nan")) for r in runs),
        "n": sum(r["n"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models" / "fault_cnn")
    args = ap.parse_args()

    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAULTWATCH_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
    }
    runs: dict[tuple[str, int], list[dict]] = {}
    memory: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="faultwatch-bench-") as tmpdir:
        tmp = Path(tmpdir)
        env["BENTOML_HOME"] = os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
        model_dir, signals = model_and_signals(args.model_dir, tmp)

        from faultwatch.serve.store import import_model

        tag = import_model(model_dir, 0.5, {"source": "bench"}, {})
        env["FAULTWATCH_MODEL_TAG"] = str(tag)
        one = [json.dumps({"signal": s.tolist()}).encode() for s in signals]
        one_in_batch = [json.dumps({"signals": [s.tolist()]}).encode() for s in signals]

        bentoml_cmd = [
            str(BIN / "bentoml"), "serve", "faultwatch.serve.service:FaultDetector",
            "--host", "127.0.0.1", "--port", "{port}",
        ]  # fmt: skip
        servers = {
            "FastAPI + uvicorn": start_server(
                [
                    str(BIN / "python"),
                    str(ROOT / "bench" / "serve_fastapi.py"),
                    str(model_dir),
                    "{port}",
                    str(tmp / "fastapi.sqlite"),
                ],
                env,
            ),  # fmt: skip
            "BentoML": start_server(
                bentoml_cmd, {**env, "FAULTWATCH_PREDICTION_LOG": str(tmp / "bentoml.sqlite")}
            ),
            "BentoML batchable=True": start_server(
                bentoml_cmd,
                {
                    **env,
                    "FAULTWATCH_BATCHING": "bentoml",
                    "FAULTWATCH_PREDICTION_LOG": str(tmp / "bentoml-batchable.sqlite"),
                },
            ),
        }
        targets = [
            ("FastAPI /predict", "FastAPI + uvicorn", "/predict", one),
            ("BentoML /predict", "BentoML", "/predict", one),
            ("BentoML /predict_batch, 1 signal/request", "BentoML", "/predict_batch", one_in_batch),
            (
                "BentoML batchable=True /predict_batch, 1 signal/request",
                "BentoML batchable=True",
                "/predict_batch",
                one_in_batch,
            ),
        ]
        try:
            for k in range(args.rounds):
                print(f"round {k + 1}/{args.rounds}", flush=True)
                order = targets[k % len(targets) :] + targets[: k % len(targets)]
                for c, r in floor(model_dir, signals, args.duration / 2).items():
                    runs.setdefault((f"raw model call in-process, batch {c}", c), []).append(r)
                for label, server, path, bodies in order:
                    url = f"http://127.0.0.1:{servers[server][1]}{path}"
                    for c in CONCURRENCY:
                        pid = servers[server][0].pid
                        r = asyncio.run(load(url, bodies, c, args.duration, pid))
                        runs.setdefault((label, c), []).append(r)
                        print(f"  {label} c={c}: {r['rps']:.0f} req/s {r['statuses']}", flush=True)
            for name, (proc, _) in servers.items():
                memory[name] = rss_mib(proc.pid)
        finally:
            for proc, _ in servers.values():
                stop(proc)

    report({key: median_of(rs) for key, rs in runs.items()}, memory, args)
    return 0


def report(
    results: dict[tuple[str, int], dict],
    memory: dict[str, tuple[float, float]],
    args: argparse.Namespace,
) -> None:
    print(
        f"\nmedians of {args.rounds} interleaved rounds of {args.duration:g} s; "
        "torch 1 thread in every server; non-2xx summed over the rounds\n"
    )
    print("| what | c | req/s | p50 ms | p99 ms | server CPU ms/req | requests | non-2xx |")
    print("|---|---|---|---|---|---|---|---|")
    for (label, c), r in results.items():
        print(
            f"| {label} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.1f} "
            f"| {r['cpu_ms']:.2f} | {r['n']} | {r['non_2xx']} |"
        )
    print()
    fast = {c: results[("FastAPI /predict", c)]["rps"] for c in CONCURRENCY}
    for label in [k for k, c in results if c == 1 and k.startswith("BentoML")]:
        ratios = ", ".join(
            f"c={c}: {results[(label, c)]['rps'] / fast[c]:.2f}" for c in CONCURRENCY
        )
        print(f"req/s ratio {label} / FastAPI: {ratios}")
    floor1 = results[("raw model call in-process, batch 1", 1)]
    for (label, c), r in results.items():
        if c == 1 and not label.startswith("raw"):
            print(f"p50 at c=1, {label} / raw call: {r['p50_ms'] / floor1['p50_ms']:.1f}x")
    for name, (largest, total) in memory.items():
        print(f"RSS {name}: largest process {largest:.0f} MiB, all its processes {total:.0f} MiB")
    best = max(
        (k for k in results if k[1] == 32 and k[0].startswith("BentoML /")),
        key=lambda k: results[k]["rps"],
    )
    print(
        f"\ntargets: BentoML c=32 >= FastAPI: {results[best]['rps'] / fast[32]:.2f}x ({best[0]}); "
        f"BentoML /predict p50 at c=1: {results[('BentoML /predict', 1)]['p50_ms']:.1f} ms "
        f"(< 10); largest BentoML process: {memory['BentoML'][0]:.0f} MiB (< 1024)"
    )


if __name__ == "__main__":
    sys.exit(main())
