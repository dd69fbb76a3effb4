"""Benchmark of the prediction log's storage: reading 100 000 logged predictions, and what the
new data (features, embedding, a sampled raw signal) costs per append.

    .venv/bin/python bench/predlog.py [--rows 100000] [--appends 2000] [--target URL_OR_PATH]

Read: `read_predictions` (a DataFrame with the labels joined) against a baseline measured in the
same run, the same SELECT fetched with no DataFrame. Append: one-entry transactions (as /predict
writes them) with the summary only (today's row) against the summary + 8 features + a 32-float
embedding, and + a sampled 1 000-point signal. Prints ratios. Default target: a SQLite file in
a temporary directory; `--target postgresql://...` measures a PostgreSQL server instead (it
writes to that database).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np

from faultwatch.serve.predlog import InputSummary, LoggedPrediction, open_log, read_predictions
from faultwatch.serve.predlog.read import PREDICTION_FIELDS


def entry(rng: np.random.Generator, **extra) -> LoggedPrediction:
    p = float(rng.random())
    base = LoggedPrediction(
        "predict_batch",
        "v1",
        InputSummary.of(rng.standard_normal(16)),
        p,
        "x",
        p > 0.5,
        0.5,
        2.0,
        32,
    )
    return replace(base, prediction_id=uuid.uuid4().hex, **extra)


def fill(target: str, rows: int, rng: np.random.Generator) -> None:
    """`rows` predictions with features and embeddings in batches of 1 000, 10 % labelled."""
    log = open_log(target)
    for start in range(0, rows, 1000):
        batch = [
            entry(rng, features=rng.random(8).tolist(), embedding=rng.random(32))
            for _ in range(min(1000, rows - start))
        ]
        log.append(batch)
        log.add_labels([(e.prediction_id, "fault") for e in batch[::10]], source="bench")
    log.close()


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def raw_fetch(target: str) -> None:
    fields = ", ".join(f"p.{f}" for f in PREDICTION_FIELDS)
    sql = (
        f"SELECT {fields}, l.label, l.time FROM predictions p"
        " LEFT JOIN labels l ON l.prediction_id = p.prediction_id WHERE p.role IN ('live')"
        " ORDER BY p.time, p.id"
    )
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            conn.execute(sql).fetchall()
    else:
        with sqlite3.connect(target) as conn:
            conn.execute(sql).fetchall()


def append_cost(target: str, n: int, rng: np.random.Generator, **extra) -> float:
    """Median milliseconds of a one-entry append."""
    log = open_log(target)
    times = []
    for _ in range(n):
        e = entry(rng, **extra)
        t = time.perf_counter()
        log.append([e])
        times.append(time.perf_counter() - t)
    log.close()
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--target", help="a SQLite path or a postgresql:// URL (default: temporary)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        target = args.target or str(Path(tmp) / "bench.sqlite")
        t = time.perf_counter()
        fill(target, args.rows, rng)
        print(
            f"filled {args.rows} rows in {time.perf_counter() - t:.1f} s ({target.split('@')[-1]})"
        )
        df = read_predictions(target)
        assert len(df) >= args.rows, len(df)
        read_s = best_of(lambda: read_predictions(target))
        raw_s = best_of(lambda: raw_fetch(target))
        print(
            f"read_predictions, {len(df)} rows: {read_s:.2f} s; the same SELECT fetched: "
            f"{raw_s:.2f} s (ratio {read_s / raw_s:.2f})"
        )
        features, emb = rng.random(8).tolist(), rng.random(32)
        summary_ms = append_cost(target, args.appends, rng)
        full_ms = append_cost(target, args.appends, rng, features=features, embedding=emb)
        signal_ms = append_cost(
            target, args.appends, rng, features=features, embedding=emb, signal=rng.random(1000)
        )
        print(
            f"one-entry append, median: summary {summary_ms:.3f} ms; + features + embedding "
            f"{full_ms:.3f} ms (ratio {full_ms / summary_ms:.2f}); + a 1000-point signal "
            f"{signal_ms:.3f} ms (ratio {signal_ms / summary_ms:.2f})"
        )


if __name__ == "__main__":
    main()
