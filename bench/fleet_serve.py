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

With `--ray PYTHON` (the interpreter of a venv with Ray Serve), the open-source peer joins the
same run as a further contender: Ray Serve's model multiplexing (bench/ray_fleet_app.py: one
replica, `@serve.multiplexed(max_num_models_per_replica=--max-loaded)`, the model id in the
`serve_multiplexed_model_id` header as Ray documents, torch on one thread) loading the same
saved models from the same BentoML store folders; its own local Ray cluster, Serve's HTTP proxy
on a free port. Measured alike: cold against warm first request on the same groups, both mixes
at 1 and 32 clients with the same bodies in the same interleaved rounds, and the RSS of every
process of the Ray session (the driver that started it and its descendants: GCS, raylet,
dashboard and runtime-env agents, autoscaler monitor, log monitor, Serve's controller, proxy and
replica), listed by process. Ray is no project dependency: install it in a venv of its own
(CPU torch from this machine's wheel, nothing in .venv or requirements.lock):

    python3 -m venv /work/ray-venv && .venv/bin/uv pip install --python /work/ray-venv/bin/python \
        --find-links /opt/wheels "torch==2.13.0+cpu" "ray[serve]" numpy safetensors pydantic \
        pyyaml psutil

    .venv/bin/python bench/fleet_serve.py [--groups 50] [--max-loaded 10] [--rounds 2]
        [--duration 5] [--ray /work/ray-venv/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import select
import signal
import statistics
import subprocess
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


def cold_and_warm(
    url: str, groups: list[str], signal: list[float], header: str | None = None
) -> dict[str, float]:
    """Median first-request (cold) and second-request (warm) latency over `groups`, which are
    not loaded, and the server's own median load time for them (`header`: the model id is sent
    in that header too, as Ray Serve's multiplexing takes it)."""
    import httpx

    cold, warm = [], []
    with httpx.Client(base_url=url, timeout=60) as c:
        for g in groups:
            body = {"signal": signal, "model": g}
            headers = {} if header is None else {header: g}
            t0 = time.perf_counter()
            assert c.post("/predict", json=body, headers=headers).status_code == 200
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert c.post("/predict", json=body, headers=headers).status_code == 200
            warm.append(time.perf_counter() - t0)
        loads = {m["model"]: m["load_s"] for m in c.get("/models").json()["models"]}
    return {
        "cold_ms": statistics.median(cold) * 1e3,
        "warm_ms": statistics.median(warm) * 1e3,
        "load_ms": statistics.median(loads[g] for g in groups) * 1e3,
    }


RAY_HEADER = "serve_multiplexed_model_id"  # Ray Serve's multiplexing: the model id's header
RAY_INSTALL = (
    "python3 -m venv /work/ray-venv && .venv/bin/uv pip install --python "
    '/work/ray-venv/bin/python --find-links /opt/wheels "torch==2.13.0+cpu" "ray[serve]" '
    "numpy safetensors pydantic pyyaml psutil"
)


def start_ray(
    python: str, models: dict[str, str], max_loaded: int, tmp: Path
) -> tuple[subprocess.Popen, int, float]:
    """bench/ray_fleet_app.py with the Ray venv's `python`: (process, proxy port, seconds from
    the start until the deployment answered)."""
    port = bench.free_port()
    (tmp / "ray_models.json").write_text(json.dumps(models))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAULTWATCH_", "RAY_"))}
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        OMP_NUM_THREADS="1",
        RAY_USAGE_STATS_ENABLED="0",
    )
    cmd = [python, str(ROOT / "bench" / "ray_fleet_app.py"), str(tmp / "ray_models.json"),
           str(port), "--max-loaded", str(max_loaded), "--temp-dir", str(tmp / "ray")]  # fmt: skip
    t0 = time.perf_counter()
    err = open(tmp / "ray.stderr", "wb")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
    err.close()
    deadline = t0 + 240
    line = b""
    while time.perf_counter() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(b"READY"):
                return proc, port, time.perf_counter() - t0
    stop_ray(proc)
    print((tmp / "ray.stderr").read_text()[-3000:], file=sys.stderr)
    raise RuntimeError(f"Ray Serve did not start ({line!r}); its stderr above")


def ray_processes(pid: int) -> list:
    import psutil

    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def ray_rss(pid: int) -> tuple[float, float, dict[str, float]]:
    """(largest process, all processes, MiB per process name) of the Ray session started by
    the driver `pid`: the driver and every descendant (GCS, raylet, agents, Serve's actors)."""
    import psutil

    named: dict[str, float] = {}
    for p in ray_processes(pid):
        try:
            rss = p.memory_info().rss / 2**20
            cmdline = p.cmdline()
        except psutil.NoSuchProcess:
            continue
        if p.pid == pid:
            name = "driver"
        elif p.name() == "ray" or (cmdline and cmdline[0].startswith("ray::")):
            # ray::ServeReplica:app:Class, ray::ServeController.listen_for_change (its task)
            title = cmdline[0].removeprefix("ray::") if cmdline else p.name()
            name = title.split(":")[0].split(".")[0].split()[0]
        else:
            script = next((Path(a).stem for a in cmdline[1:] if a.endswith(".py")), None)
            name = script or Path(cmdline[0] if cmdline else p.name()).name
        named[name] = named.get(name, 0.0) + rss
    return max(named.values()), sum(named.values()), named


def stop_ray(proc: subprocess.Popen) -> None:
    """SIGTERM to the driver (serve.shutdown(), ray.shutdown()); whatever of the processes it
    started is still there after 60 s is killed, by pid."""
    import psutil

    try:
        started = ray_processes(proc.pid)[1:]
    except psutil.NoSuchProcess:
        started = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(started, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    if alive:
        print(f"Ray: killed {len(alive)} processes left after its shutdown", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--max-loaded", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument(
        "--ray",
        metavar="PYTHON",
        help="a Ray venv's interpreter: Ray Serve's multiplexing joins the run (see above)",
    )
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
    ray = None
    try:
        if args.ray:
            # the store entries the fleet server loads: BENTOML_HOME/models/<name>/<version>
            folders = {
                g: str(home / "models" / t.split(":")[0] / t.split(":")[1]) for g, t in tags.items()
            }
            ray, ray_port, ray_start_s = start_ray(args.ray, folders, args.max_loaded, tmp)
            print(f"Ray Serve up in {ray_start_s:.1f} s (ray.init + serve.run)", flush=True)
        furl = f"http://127.0.0.1:{fleet_port}"
        first = cold_and_warm(furl, names[: min(10, len(names))], signals[0].round(6).tolist())
        print(
            f"cold first request {first['cold_ms']:.1f} ms (the server's load "
            f"{first['load_ms']:.1f} ms), warm {first['warm_ms']:.1f} ms "
            f"(median of {min(10, len(names))} groups)",
            flush=True,
        )
        if ray is not None:
            rurl = f"http://127.0.0.1:{ray_port}"
            ray_first = cold_and_warm(
                rurl, names[: min(10, len(names))], signals[0].round(6).tolist(), RAY_HEADER
            )
            print(
                f"Ray Serve: cold first request {ray_first['cold_ms']:.1f} ms (its load "
                f"{ray_first['load_ms']:.1f} ms), warm {ray_first['warm_ms']:.1f} ms",
                flush=True,
            )
        idle = {"single model": single.pid, "fleet": fleet.pid}
        if ray is not None:
            idle["Ray Serve"] = ray.pid
        cpu0 = {name: bench.cpu_seconds(pid) for name, pid in idle.items()}
        time.sleep(5)
        idle_cpu = {name: (bench.cpu_seconds(pid) - cpu0[name]) / 5 for name, pid in idle.items()}
        n_bodies = 4000
        uniform, skewed = mix(names, False, n_bodies), mix(names, True, n_bodies)
        cases = {
            "single model": (single, f"http://127.0.0.1:{single_port}/predict",
                             bodies(signals, None)),
            "fleet, uniform": (fleet, f"{furl}/predict", bodies(signals, uniform)),
            "fleet, 80/20": (fleet, f"{furl}/predict", bodies(signals, skewed)),
        }  # fmt: skip
        if ray is not None:
            for label, groups in (("Ray Serve, uniform", uniform), ("Ray Serve, 80/20", skewed)):
                with_ids = [
                    (b, {RAY_HEADER: g})
                    for b, g in zip(bodies(signals, groups), groups, strict=True)
                ]
                cases[label] = (ray, f"{rurl}/predict", with_ids)
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
        if ray is not None:
            ray_info = httpx.get(f"{rurl}/models", timeout=30).json()
            ray_mem = ray_rss(ray.pid)
    finally:
        bench.stop(fleet)
        bench.stop(single)
        if ray is not None:
            stop_ray(ray)
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
    print("idle CPU (5 s before the runs, all processes): "
          + ", ".join(f"{n} {v * 1e3:.0f} ms/s" for n, v in idle_cpu.items()))  # fmt: skip
    if ray is None:
        print(f"Ray Serve rows skipped: install Ray in a venv of its own ({RAY_INSTALL}) and "
              "pass --ray /work/ray-venv/bin/python")  # fmt: skip
        return 0
    print("\nfleet against Ray Serve (fleet / Ray: req/s above 1 and p50 below 1 favour the fleet)")
    for c in bench.CONCURRENCY:
        for m in ("uniform", "80/20"):
            f, r = (bench.median_of(runs[(f"{s}, {m}", c)]) for s in ("fleet", "Ray Serve"))
            print(f"  {m} c={c}: req/s {f['rps'] / r['rps']:.2f}x, p50 {f['p50_ms'] / r['p50_ms']:.2f}x, "
                  f"p99 {f['p99_ms'] / r['p99_ms']:.2f}x")  # fmt: skip
    print(f"  cold first request {first['cold_ms'] / ray_first['cold_ms']:.2f}x, "
          f"warm {first['warm_ms'] / ray_first['warm_ms']:.2f}x, the load alone "
          f"{first['load_ms'] / ray_first['load_ms']:.2f}x")  # fmt: skip
    print(f"Ray Serve cold first request: {ray_first['cold_ms']:.1f} ms against warm "
          f"{ray_first['warm_ms']:.1f} ms ({ray_first['cold_ms'] / ray_first['warm_ms']:.1f}x); "
          f"the load alone {ray_first['load_ms']:.1f} ms; up in {ray_start_s:.1f} s")  # fmt: skip
    print(f"Ray Serve loads during the runs: {sum(m['loads'] for m in ray_info['models'])}, "
          f"evictions {ray_info['evictions']}, loaded at the end {ray_info['loaded']}")  # fmt: skip
    largest, total, named = ray_mem
    serving = ("gcs_server", "raylet", "ServeController", "ProxyActor", "ServeReplica")
    print(f"RSS Ray Serve: {total:.0f} MiB (largest process {largest:.0f} MiB), every process of "
          f"its session: " + ", ".join(f"{n} {v:.0f}" for n, v in named.items()))  # fmt: skip
    print(f"RSS Ray Serve, GCS + raylet + Serve's controller, proxy and replica only: "
          f"{sum(v for n, v in named.items() if n in serving):.0f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
