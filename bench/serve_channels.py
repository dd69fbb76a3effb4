"""Serving a three-channel signal against a one-channel signal of the same length.

Two BentoML services, one worker each, torch on one thread, as bench/serve.py starts them: one
serves a FaultCNN of params.yaml's architecture with one input channel, the other the same
architecture with three (freshly initialised: the cost does not depend on the weights). Each
gets `/predict` requests of its own kind (`{"signal": [...]}` of LENGTH points against
`{"signal": [[...], [...], [...]]}`, channels first), at concurrency 1 and 32, measured in
interleaved rounds (the order alternates), medians reported, plus the raw model call in-process
for each (the floor). The ratio 3 / 1 of the p50 is the figure: what the two extra channels
cost a client, JSON parsing and validation of three times the samples included.

    .venv/bin/python bench/serve_channels.py [--rounds 3] [--duration 4] [--length 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import serve as bench  # noqa: E402  (bench/serve.py: the load generator, the server start)


def make_model(tmp: Path, n_channels: int, length: int) -> Path:
    import torch

    from faultwatch.model.io import save_model
    from faultwatch.model.network import FaultCNN
    from faultwatch.model.params import TrainParams

    tp = TrainParams()
    torch.manual_seed(0)
    net = FaultCNN(tp.channels, tp.kernel_size, tp.dropout, n_channels)
    meta = {"input_length": length, "positive_label": "fault"}
    if n_channels > 1:
        meta["channels"] = ["x", "y", "z"][:n_channels]
    save_model(tmp / f"c{n_channels}", net, meta)
    return tmp / f"c{n_channels}"


def signals(n_channels: int, length: int, n: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 20, length)
    out = [
        np.sin(t + rng.uniform(0, 6, (n_channels, 1)))
        + 0.1 * rng.standard_normal((n_channels, length))
        for _ in range(n)
    ]
    return [s[0] if n_channels == 1 else s for s in out]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--length", type=int, default=1024)
    args = ap.parse_args()
    env = {
        **os.environ,
        "PATH": f"{bench.BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAULTWATCH_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
    }
    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="faultwatch-bench-") as tmpdir:
        tmp = Path(tmpdir)
        env["BENTOML_HOME"] = os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
        from faultwatch.serve.store import import_model

        kinds = {}
        for c in (1, 3):
            model_dir = make_model(tmp, c, args.length)
            tag = import_model(model_dir, 0.5, {"source": "bench"}, {})
            sig = signals(c, args.length)
            bodies = [json.dumps({"signal": s.tolist()}).encode() for s in sig]
            cmd = [
                str(bench.BIN / "bentoml"), "serve", "faultwatch.serve.service:FaultDetector",
                "--host", "127.0.0.1", "--port", "{port}",
            ]  # fmt: skip
            server_env = {
                **env,
                "FAULTWATCH_MODEL_TAG": str(tag),
                "FAULTWATCH_PREDICTION_LOG": str(tmp / f"c{c}.sqlite"),
            }
            kinds[c] = (model_dir, sig, bodies, bench.start_server(cmd, server_env))
        try:
            for k in range(args.rounds):
                print(f"round {k + 1}/{args.rounds}", flush=True)
                for c in (1, 3) if k % 2 == 0 else (3, 1):
                    model_dir, sig, bodies, (proc, port) = kinds[c]
                    for batch, r in bench.floor(model_dir, sig, args.duration / 2).items():
                        runs.setdefault(
                            (f"{c}x{args.length} raw model call, batch {batch}", batch), []
                        ).append(r)
                    url = f"http://127.0.0.1:{port}/predict"
                    for conc in bench.CONCURRENCY:
                        r = asyncio.run(bench.load(url, bodies, conc, args.duration, proc.pid))
                        runs.setdefault((f"{c}x{args.length} BentoML /predict", conc), []).append(r)
                        print(
                            f"  {c} channel(s) c={conc}: p50 {r['p50_ms']:.2f} ms, {r['rps']:.0f} req/s {r['statuses']}",
                            flush=True,
                        )
        finally:
            for *_, (proc, _) in kinds.values():
                bench.stop(proc)
    results = {key: bench.median_of(rs) for key, rs in runs.items()}
    print(f"\n{'':<44} {'c':>3} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'non-2xx':>8}")
    for (label, conc), r in results.items():
        print(
            f"{label:<44} {conc:>3} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['rps']:>8.0f} {r['non_2xx']:>8}"
        )
    for conc in bench.CONCURRENCY:
        one = results[(f"1x{args.length} BentoML /predict", conc)]
        three = results[(f"3x{args.length} BentoML /predict", conc)]
        print(
            f"c={conc}: /predict p50 3x{args.length} / 1x{args.length} = "
            f"{three['p50_ms'] / one['p50_ms']:.2f}; req/s 3 / 1 = {three['rps'] / one['rps']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
