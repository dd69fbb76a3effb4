"""What the monitoring log costs per request: the service's answer path with and without it.

In one process, on one model and one set of signals, the service's own answer path
(`FaultDetector._answer`: model call, prediction-log commit, metrics) runs in interleaved
rounds under three configurations:
  - baseline:   the input summary only, as before issue 12 (`predict_proba`);
  - monitored:  + the monitor's features (once per call) and the embedding (same forward pass);
  - sampled:    + the raw signal of a share --log-signals of the signals (default 1: all).
Each is measured for one signal per call (/predict at low load) and for calls of --batch
signals (/predict_batch, or a busy server's micro-batch). Printed: median ms per call and per
signal, and the ratio to the baseline measured in the same round. HTTP, JSON and validation
are left out: they are the same with or without the extra logging (bench/serve.py measures
them), so the ratio here is the upper bound of what the logging adds to a served request.

    .venv/bin/python bench/logging_cost.py [--rounds 5] [--calls 200] [--batch 32]
        [--log-signals 1.0] [--model-dir models/fault_cnn]

Without a trained model it uses a freshly initialised FaultCNN of the default architecture
(the cost does not depend on the weights). Signals: the test split if data/prepared has one,
else synthetic. The log is a SQLite file in a temporary folder (synchronous=NORMAL, the
default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from serve import model_and_signals  # noqa: E402  (bench/serve.py: the same model and signals)

CONFIGS = ("baseline", "monitored", "sampled")


def configure(detector, config: str, log_signals: float) -> None:
    detector.monitoring = config != "baseline"
    detector.log_signals = log_signals if config == "sampled" else 0.0


def time_calls(detector, batches: list[list[np.ndarray]]) -> float:
    """Median ms of `_answer` over `batches` (each one call)."""
    from faultwatch.serve.identity import RequestIdentity, new_id
    from faultwatch.serve.service import Item

    times = []
    for k, batch in enumerate(batches):
        ident = RequestIdentity(new_id())
        items = [
            Item(s, time.perf_counter(), "predict_batch", k, i, ident) for i, s in enumerate(batch)
        ]
        t0 = time.perf_counter()
        answers = detector._answer(items)
        times.append((time.perf_counter() - t0) * 1e3)
        assert not any(isinstance(a, Exception) for a in answers), answers
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians reported")
    ap.add_argument(
        "--calls", type=int, default=200, help="model calls per configuration and round"
    )
    ap.add_argument("--batch", type=int, default=32, help="signals per call for the batched case")
    ap.add_argument("--log-signals", type=float, default=1.0, help="share logged raw in `sampled`")
    ap.add_argument("--model-dir", type=Path, default=ROOT.parent / "models" / "fault_cnn")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="faultwatch-logcost-") as tmpdir:
        tmp = Path(tmpdir)
        os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
        model_dir, signals = model_and_signals(args.model_dir, tmp)
        from faultwatch.serve.store import import_model

        os.environ["FAULTWATCH_MODEL_TAG"] = str(
            import_model(model_dir, 0.5, {"source": "bench"}, {})
        )
        os.environ["FAULTWATCH_PREDICTION_LOG"] = str(tmp / "predictions.sqlite")
        os.environ["FAULTWATCH_TORCH_THREADS"] = "1"
        from faultwatch.serve.service import FaultDetector

        detector = FaultDetector.inner()  # the service class itself, in this process
        rng = np.random.default_rng(0)
        shapes = {"1 signal": 1, f"{args.batch} signals": args.batch}
        results: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for shape, size in shapes.items():
                calls = args.calls if size == 1 else max(args.calls // size * 2, 10)
                batches = [
                    [signals[j] for j in rng.integers(0, len(signals), size)] for _ in range(calls)
                ]
                order = CONFIGS[r % 3 :] + CONFIGS[: r % 3]  # rotate: no config always first
                for config in order:
                    configure(detector, config, args.log_signals)
                    time_calls(detector, batches[:5])  # warm the path
                    results.setdefault((shape, config), []).append(time_calls(detector, batches))
        n_logged = detector.log.count()

    print(f"\nper call, median of {args.rounds} rounds ({n_logged} rows logged in all); "
          f"sampled = features + embedding + {args.log_signals:g} of signals raw")  # fmt: skip
    print(f"{'call':<12} {'config':<10} {'ms/call':>9} {'ms/signal':>10} {'x baseline':>11}")
    for shape, size in shapes.items():
        base = statistics.median(results[(shape, "baseline")])
        for config in CONFIGS:
            ms = statistics.median(results[(shape, config)])
            print(f"{shape:<12} {config:<10} {ms:9.3f} {ms / size:10.3f} {ms / base:11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
