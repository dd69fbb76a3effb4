"""A fleet bento's endpoint: models loaded on demand against one model per server.

One run, one machine, servers up at once and measured in interleaved rounds (bench/serve.py's
closed-loop load generator, one worker, torch on one thread):
  - cold against warm: the first request to a group that is not loaded (its weights read,
    sha256 checked, the network built and called once) against the next one; the server's own
    load time from GET /models;
  - p50, p99 and requests/s at 1 and 32 clients for `--groups` groups (default 50) with
    `max_loaded_models` = `--max-loaded` (default 10), under a uniform mix (every group alike)
    and a skewed one (80 % of the requests to 20 % of the groups), against a single-model
    server of the same network (today's bento) on the same signals;
  - resident memory (RSS) of each server after the runs.
Every group is the bundled network's default architecture (params: train), freshly initialised
with its own seed: the cost does not depend on the weights.

    .venv/bin/python bench/fleet_serve.py [--groups 50] [--max-loaded 10] [--rounds 2]
        [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import serve as bench  # noqa: E402  (bench/serve.py: the load generator, the server start)


def make_store(tmp: Path, n: int) -> tuple[Path, dict[str, str], int]:
    """A BentoML home with `n` models g00..; returns (home, group -> tag, input length)."""
    import torch
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from faultwatch.model.io import save_model
    from faultwatch.model.network import FaultCNN
    from faultwatch.model.params import TrainParams
    from faultwatch.serve.store import import_model

    tp = TrainParams()
    home = tmp / "bentoml"
    (home / "models").mkdir(parents=True)
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    tags = {}
    try:
        for i in range(n):
            torch.manual_seed(i)
            net = FaultCNN(tp.channels, tp.kernel_size, tp.dropout)
            d = tmp / f"g{i:02d}"
            save_model(d, net, {"input_length": tp.length, "positive_label": "fault"})
            meta = {"input_schema": {"min_length": 16, "max_length": 100_000}}
            tags[f"g{i:02d}"] = str(import_model(d, 0.5, metadata=meta, name=f"g{i:02d}"))
    finally:
        BentoMLContainer.model_store.reset()
    return home, tags, tp.length


def env_of(home: Path, tmp: Path, name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTWATCH_")}
    return {
        **env,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "FAULTWATCH_PREDICTION_LOG": str(tmp / f"{name}.sqlite"),
        "FAULTWATCH_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def mix(groups: list[str], skewed: bool, n: int, seed: int = 0) -> list[str]:
    """`n` group names: uniform, or 80 % of them from the first 20 % of the groups."""
    rng = random.Random(seed)
    hot = groups[: max(1, len(groups) // 5)]
    cold = groups[len(hot) :] or hot
    if not skewed:
        return [rng.choice(groups) for _ in range(n)]
    return [rng.choice(hot) if rng.random() < 0.8 else rng.choice(cold) for _ in range(n)]


def bodies(signals: list[np.ndarray], names: list[str] | None) -> list[bytes]:
    out = []
    for i, s in enumerate(signals if names is None else names):
        sig = signals[i % len(signals)].round(6).tolist()
        body = {"signal": sig} if names is None else {"signal": sig, "model": s}
        out.append(json.dumps(body).encode())
    return out


def cold_and_warm(url: str, groups: list[str], signal: list[float]) -> dict[str, float]:
    """Median first-request (cold) and second-request (warm) latency over `groups`, which are
    not loaded, and the server's own median load time for them."""
    import httpx

    cold, warm = [], []
    with httpx.Client(base_url=url, timeout=60) as c:
        for g in groups:
            body = {"signal": signal, "model": g}
            t0 = time.perf_counter()
            assert c.post("/predict", json=body).status_code == 200
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert c.post("/predict", json=body).status_code == 200
            warm.append(time.perf_counter() - t0)
        loads = {m["model"]: m["load_s"] for m in c.get("/models").json()["models"]}
    return {
        "cold_ms": statistics.median(cold) * 1e3,
        "warm_ms": statistics.median(warm) * 1e3,
        "load_ms": statistics.median(loads[g] for g in groups) * 1e3,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--max-loaded", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fleet_serve_"))
    t0 = time.perf_counter()
    home, tags, length = make_store(tmp, args.groups)
    names = list(tags)
    print(f"{args.groups} models imported in {time.perf_counter() - t0:.1f} s", flush=True)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 20, length)
    signals = [np.sin(t + rng.uniform(0, 6)) + 0.1 * rng.standard_normal(length) for _ in range(64)]
    cmd = [str(bench.BIN / "bentoml"), "serve", "faultwatch.serve.service:FaultDetector",
           "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    fleet_env = env_of(
        home,
        tmp,
        "fleet",
        FAULTWATCH_MODELS=json.dumps(tags),
        FAULTWATCH_MAX_LOADED_MODELS=str(args.max_loaded),
    )
    single_env = env_of(home, tmp, "single", FAULTWATCH_MODEL_TAG=tags[names[0]])
    fleet, fleet_port = bench.start_server(cmd, fleet_env)
    single, single_port = bench.start_server(cmd, single_env)
    try:
        furl = f"http://127.0.0.1:{fleet_port}"
        first = cold_and_warm(furl, names[: min(10, len(names))], signals[0].round(6).tolist())
        print(
            f"cold first request {first['cold_ms']:.1f} ms (the server's load "
            f"{first['load_ms']:.1f} ms), warm {first['warm_ms']:.1f} ms "
            f"(median of {min(10, len(names))} groups)",
            flush=True,
        )
        n_bodies = 4000
        cases = {
            "single model": (single, f"http://127.0.0.1:{single_port}/predict",
                             bodies(signals, None)),
            "fleet, uniform": (fleet, f"{furl}/predict",
                               bodies(signals, mix(names, False, n_bodies))),
            "fleet, 80/20": (fleet, f"{furl}/predict",
                             bodies(signals, mix(names, True, n_bodies))),
        }  # fmt: skip
        runs: dict[tuple[str, int], list[dict]] = {}
        order = list(cases)
        for r in range(args.rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                proc, url, bs = cases[name]
                for c in bench.CONCURRENCY:
                    res = asyncio.run(bench.load(url, bs, c, args.duration, proc.pid))
                    runs.setdefault((name, c), []).append(res)
                    print(f"  round {r + 1} {name} c={c}: {res['rps']:.0f} req/s, "
                          f"p50 {res['p50_ms']:.2f} ms, non-2xx {res['non_2xx']}", flush=True)  # fmt: skip
        import httpx

        info = httpx.get(f"{furl}/models", timeout=30).json()
        rss = {"single model": bench.rss_mib(single.pid), "fleet": bench.rss_mib(fleet.pid)}
    finally:
        bench.stop(fleet)
        bench.stop(single)
    print(f"\n{args.groups} groups, max_loaded_models {args.max_loaded}, "
          f"{args.rounds} rounds of {args.duration:g} s (medians)")  # fmt: skip
    print("| server | clients | req/s | p50 ms | p99 ms | non-2xx | vs single req/s |")
    print("|---|---|---|---|---|---|---|")
    for c in bench.CONCURRENCY:
        base = bench.median_of(runs[("single model", c)])["rps"]
        for name in cases:
            m = bench.median_of(runs[(name, c)])
            print(f"| {name} | {c} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                  f"{m['non_2xx']} | {m['rps'] / base:.2f} |")  # fmt: skip
    print(f"cold first request: {first['cold_ms']:.1f} ms against warm {first['warm_ms']:.1f} ms "
          f"({first['cold_ms'] / first['warm_ms']:.1f}x); the load alone {first['load_ms']:.1f} ms")  # fmt: skip
    print(f"loads during the runs: {sum(m['loads'] for m in info['models'])}, evictions "
          f"{info['evictions']}, loaded at the end {info['loaded']}")  # fmt: skip
    for name, (largest, total) in rss.items():
        print(f"RSS {name}: {total:.0f} MiB (largest process {largest:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
