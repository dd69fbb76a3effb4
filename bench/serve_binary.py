"""A large multichannel signal sent as JSON against the same signal as an `.npy` body.

One BentoML service of a three-channel FaultCNN of params.yaml's architecture (resampling to
its training length, 1024), one worker, torch on one thread, as bench/serve.py starts it.
`/predict` gets a 3 x 65 536 signal (a vibration capture: 20 kHz for about 3 s, three axes) as
`{"signal": [[...], [...], [...]]}` and as `np.save` bytes (`Content-Type: application/x-npy`,
float32 as a sensor gives it, and float64), at concurrency 1 (and 4), in interleaved rounds,
medians reported, beside the raw model call in-process on the same signals (the floor). The
figure: binary p50 / JSON p50.

    .venv/bin/python bench/serve_binary.py [--rounds 3] [--duration 6] [--samples 65536]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import serve as bench  # noqa: E402  (bench/serve.py: the load generator, the server start)
from serve_channels import make_model, signals  # noqa: E402

NPY = {"content-type": "application/x-npy"}
CONCURRENCY = (1, 4)


def npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=65536)
    args = ap.parse_args()
    env = {
        **os.environ,
        "PATH": f"{bench.BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAULTWATCH_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "FAULTWATCH_MAX_LENGTH": str(args.samples),
    }
    sig = signals(3, args.samples, n=8)
    forms = {
        "JSON": [json.dumps({"signal": s.tolist()}).encode() for s in sig],
        ".npy float32": [(npy(s.astype("float32")), NPY) for s in sig],
        ".npy float64": [(npy(s), NPY) for s in sig],
    }
    sizes = {
        k: np.mean([len(b if isinstance(b, bytes) else b[0]) for b in v]) for k, v in forms.items()
    }
    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="faultwatch-bench-") as tmpdir:
        tmp = Path(tmpdir)
        env["BENTOML_HOME"] = os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
        from faultwatch.serve.store import import_model

        model_dir = make_model(tmp, 3, 1024)
        tag = import_model(model_dir, 0.5, {"source": "bench"}, {})
        cmd = [
            str(bench.BIN / "bentoml"), "serve", "faultwatch.serve.service:FaultDetector",
            "--host", "127.0.0.1", "--port", "{port}",
        ]  # fmt: skip
        server_env = {
            **env,
            "FAULTWATCH_MODEL_TAG": str(tag),
            "FAULTWATCH_PREDICTION_LOG": str(tmp / "log.sqlite"),
        }
        proc, port = bench.start_server(cmd, server_env)
        url = f"http://127.0.0.1:{port}/predict"
        try:
            for k in range(args.rounds):
                print(f"round {k + 1}/{args.rounds}", flush=True)
                for batch, r in bench.floor(model_dir, sig, args.duration / 2).items():
                    runs.setdefault(("raw model call", batch), []).append(r)
                order = list(forms) if k % 2 == 0 else list(reversed(forms))
                for name in order:
                    for conc in CONCURRENCY:
                        r = asyncio.run(bench.load(url, forms[name], conc, args.duration, proc.pid))
                        runs.setdefault((name, conc), []).append(r)
                        print(
                            f"  {name} c={conc}: p50 {r['p50_ms']:.1f} ms, {r['rps']:.1f} req/s, "
                            f"server CPU {r['cpu_ms']:.1f} ms/request {r['statuses']}",
                            flush=True,
                        )
        finally:
            bench.stop(proc)
    results = {key: bench.median_of(rs) for key, rs in runs.items()}
    print(f"\n3 x {args.samples} signal; body sizes: "
          + ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in sizes.items()))  # fmt: skip
    print(f"{'':<24} {'c':>3} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'CPU ms':>8}")
    for (label, conc), r in results.items():
        cpu = r.get("cpu_ms", float("nan"))
        print(
            f"{label:<24} {conc:>3} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['rps']:>8.1f} {cpu:>8.1f}"
        )
    for conc in CONCURRENCY:
        js = results[("JSON", conc)]
        for name in (".npy float32", ".npy float64"):
            b = results[(name, conc)]
            print(
                f"c={conc}: {name} p50 / JSON p50 = {b['p50_ms'] / js['p50_ms']:.3f}; "
                f"req/s {name} / JSON = {b['rps'] / js['rps']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
