"""What the serving-time signal-quality check costs against the model call it precedes.

In one process, on the same model and signals as bench/serve.py, interleaved rounds time
`faultwatch.signal_quality.quality_of` (flat line, clipping, stuck run: the thresholds learnt
from the training split, or the defaults) and the raw model call at batch 1, per signal, for
the test split's signals and for long synthetic signals (a 3-axis capture's one axis, 65 536
samples). Printed: the median microseconds of each and the check's share of the model call.

    .venv/bin/python bench/signal_quality.py [--rounds 5] [--calls 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(ROOT))
from serve import model_and_signals  # noqa: E402  (bench/serve.py: the same model and signals)

from faultwatch.signal_quality import QualityThresholds, quality_of  # noqa: E402


def per_call_us(fn, items, calls: int) -> float:
    t0 = time.perf_counter()
    for i in range(calls):
        fn(items[i % len(items)])
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    import torch

    from faultwatch.model.io import load_model

    torch.set_num_threads(1)  # as the service runs it (bench/serve.py)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, signals = model_and_signals(REPO / "models" / "fault_cnn", Path(tmp))
        model = load_model(model_dir)
    thresholds = QualityThresholds()
    arrays = [np.asarray(s, dtype=np.float32) for s in signals]
    long = [np.random.default_rng(i).normal(size=65_536).astype(np.float32) for i in range(4)]
    rows = {"check (test split)": [], "model call (batch 1)": [], "check (65 536 samples)": []}
    for _ in range(args.rounds):  # interleaved: the machine's noise hits each alike
        rows["check (test split)"].append(
            per_call_us(lambda x: quality_of(x, thresholds), arrays, args.calls)
        )
        rows["model call (batch 1)"].append(
            per_call_us(lambda x: model.predict_proba([x]), arrays, args.calls)
        )
        rows["check (65 536 samples)"].append(
            per_call_us(lambda x: quality_of(x, thresholds), long, args.calls // 10)
        )
    med = {k: statistics.median(v) for k, v in rows.items()}
    base = med["model call (batch 1)"]
    length = int(np.median([len(a) for a in arrays]))
    print(f"signals: {len(arrays)} of median length {length}; {args.rounds} rounds")
    for name, us in med.items():
        print(f"  {name:<24} {us:9.1f} us   ratio to the model call {us / base:.3f}")


if __name__ == "__main__":
    main()
