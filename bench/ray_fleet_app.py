"""Ray Serve's model multiplexing serving faultwatch models: bench/fleet_serve.py's peer.

Run by bench/fleet_serve.py with the interpreter of a separate Ray venv (Ray is not a project
dependency; bench/fleet_serve.py's docstring says how to install it), PYTHONPATH=src:

    PYTHONPATH=src /work/ray-venv/bin/python bench/ray_fleet_app.py MODELS.json PORT \
        [--max-loaded 10] [--temp-dir DIR]

MODELS.json maps a model id ("g00") to a saved model's folder (weights.safetensors +
model.json: the BentoML store entries bench/fleet_serve.py creates). It starts a local Ray
cluster of its own (ray.init(address="local"), no dashboard, usage stats off), Serve's HTTP
proxy on 127.0.0.1:PORT, and one deployment as Ray documents multiplexing
(https://docs.ray.io/en/latest/serve/model-multiplexing.html): one replica, models loaded by a
`@serve.multiplexed(max_num_models_per_replica=N)` method (LRU beyond N), the model id from the
`serve_multiplexed_model_id` request header (serve.get_multiplexed_model_id()). Torch runs on
one thread (torch.set_num_threads(1), OMP_NUM_THREADS=1), as in the BentoML servers.

  POST /predict  {"signal": [...]} + header serve_multiplexed_model_id: g07
                 -> {"model": "g07", "fault_probability": p}, p = load_model(dir).predict_proba
                 ([signal])[0] (weights' sha256 checked at load, as faultwatch does)
  GET  /models   -> {"models": [{"model", "load_s", "loads"}], "loaded", "evictions"}
                 (this replica's loads: the load time is the multiplexed method's own)

It prints "READY <seconds>" on stdout once the deployment answers, then waits; SIGTERM or
SIGINT: serve.shutdown() and ray.shutdown() (the cluster's processes this script started).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def build_app(models: dict[str, str], max_loaded: int):
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    class Loaded:
        """A loaded model; Ray calls __del__ when it unloads it (LRU)."""

        def __init__(self, model, owner: FaultModels):
            self.model, self.owner, self.gone = model, owner, False

        def __del__(self):
            if not self.gone:
                self.gone = True
                self.owner.evictions += 1

    @serve.deployment(num_replicas=1)
    class FaultModels:
        def __init__(self, models: dict[str, str]):
            import torch

            torch.set_num_threads(1)
            self.models = models
            self.load_s: dict[str, list[float]] = {}
            self.evictions = 0

        @serve.multiplexed(max_num_models_per_replica=max_loaded)
        async def get_model(self, model_id: str) -> Loaded:
            from faultwatch.model.io import load_model

            if model_id not in self.models:
                raise KeyError(model_id)
            t0 = time.perf_counter()
            model = await asyncio.to_thread(load_model, self.models[model_id])
            self.load_s.setdefault(model_id, []).append(time.perf_counter() - t0)
            return Loaded(model, self)

        async def __call__(self, request: Request):
            if request.method == "GET" and request.url.path.rstrip("/").endswith("/models"):
                loads = sum(len(v) for v in self.load_s.values())
                return {
                    "models": [
                        {"model": m, "load_s": v[0], "loads": len(v)}
                        for m, v in self.load_s.items()
                    ],
                    "loaded": loads - self.evictions,
                    "evictions": self.evictions,
                }
            model_id = serve.get_multiplexed_model_id()
            if model_id not in self.models:
                return JSONResponse({"detail": f"unknown model {model_id!r}"}, status_code=404)
            body = await request.json()
            loaded = await self.get_model(model_id)
            p = float(loaded.model.predict_proba([body["signal"]])[0])
            return {"model": model_id, "fault_probability": p}

    return FaultModels.bind(models)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", help="JSON file: model id -> saved model folder")
    ap.add_argument("port", type=int, help="Serve's HTTP proxy port on 127.0.0.1")
    ap.add_argument("--max-loaded", type=int, default=10)
    ap.add_argument("--temp-dir", default=None, help="Ray's session folder (default Ray's)")
    args = ap.parse_args()
    with open(args.models) as f:
        models = json.load(f)

    import ray
    from ray import serve

    t0 = time.perf_counter()
    ray.init(
        address="local",
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=args.temp_dir,
        configure_logging=False,
    )
    stopping = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(build_app(models, args.max_loaded), name="faultwatch", route_prefix="/")
        print(f"READY {time.perf_counter() - t0:.1f}", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
