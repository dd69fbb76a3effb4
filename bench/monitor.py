"""The monitor's cost on 100 000 logged predictions, and the smallest shift it detects.

Reference: PLAID (bundled in the sktime wheel; fault class 9, 3.5 %), a seeded 65 % as the
training split, through the monitor's own reference code (features, input summary, and the
64-wide embedding of a FaultCNN with the pipeline's channels). Production: the other 35 %,
replayed with a small random gain and noise per copy (features computed by the service's
function), 100 000 rows in the schema of `read_predictions`.

Timed in one process, after Evidently's import (timed apart, paid once per run):
- reference: the training split's features and embeddings (the notebook builds them per run);
- monitor: `monitor_report` on the 100 000 rows (drift on all rows and on the predicted-healthy
  ones with both HTML reports, embedding drift, output drift, latency, CBPE);
- baseline: what a plain drift monitor does, in the same run: Evidently's test on all rows
  with its HTML report (no healthy subset, no embeddings, no output drift or performance);
- read: the log's read side on the same rows from SQLite, when faultwatch.serve.predlog has it.
Then a sweep: every feature's values shifted by d standard deviations (of the reference) in a
5 000-row window; the smallest d the decision rule calls input drift, per feature.

    .venv/bin/python bench/monitor.py [--rows 100000] [--stattest psi|wasserstein]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faultwatch.features import FEATURES, monitor_features  # noqa: E402
from faultwatch.monitor.params import MonitorParams  # noqa: E402
from faultwatch.monitor.reference import (  # noqa: E402
    DRIFT_COLUMNS,
    model_embeddings,
    reference_frame,
)
from faultwatch.monitor.report import Reference, input_drift, monitor_report  # noqa: E402
from faultwatch.serve.predlog import InputSummary  # noqa: E402

SHIFTS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5)


def plaid_split(seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, rest) of PLAID with y = class 9, stratified by y."""
    from faultwatch.data.readers import bundled_set

    df = bundled_set()
    df["y"] = (df["label"].astype(str) == "9").astype(int)
    rng = np.random.default_rng(seed)
    train_idx = np.concatenate(
        [rng.permutation(g.index)[: int(round(0.65 * len(g)))] for _, g in df.groupby("y")]
    )
    train = df.loc[np.sort(train_idx)].reset_index(drop=True)
    return train, df.drop(index=train_idx).reset_index(drop=True)


def production(pool: pd.DataFrame, rows: int, model, seed: int = 0):
    """`rows` logged predictions replaying `pool` with per-copy gain and noise; 5 000 distinct
    copies (features and embeddings computed), tiled to `rows`."""
    rng = np.random.default_rng(seed)
    distinct = min(rows, 5000)
    pick = rng.integers(0, len(pool), distinct)
    signals = []
    for i in pick:
        v = np.asarray(pool["values"].iloc[i], dtype="float64")
        signals.append(v * rng.normal(1.0, 0.02) + rng.normal(0, 0.01 * v.std(), len(v)))
    y = pool["y"].to_numpy()[pick]
    feats = monitor_features(signals)
    emb = model_embeddings(model, signals)
    summ = [InputSummary.of(v) for v in signals]
    tile = rng.integers(0, distinct, rows)
    p = np.where(y[tile] == 1, rng.beta(12, 1, rows), rng.beta(0.5, 300, rows))
    frame = pd.DataFrame(
        {
            "time": 1.7e9 + np.sort(rng.random(rows)) * 86400,
            "model_version": "v1",
            "endpoint": "predict_batch",
            "colour": "blue",
            "role": "live",
            "prediction_id": [uuid.uuid4().hex for _ in range(rows)],
            "n": [summ[i].n for i in tile],
            "mean": [summ[i].mean for i in tile],
            "std": [summ[i].std for i in tile],
            "min": [summ[i].min for i in tile],
            "max": [summ[i].max for i in tile],
            "n_nonfinite": 0,
            "probability": p,
            "label": np.where(p >= 0.5, "9", "healthy"),
            "is_fault": (p >= 0.5).astype(int),
            "threshold": 0.5,
            "latency_ms": rng.gamma(4.0, 2.0, rows),
        }
    )
    frame[list(FEATURES)] = feats[tile]
    labelled = rng.random(rows) < 0.3
    truth = np.where(rng.random(rows) < p, "9", "healthy")
    frame["true_label"] = pd.Series(truth, dtype="object").where(labelled, None)
    frame["label_time"] = np.where(labelled, frame["time"] + 3600, np.nan)
    return frame, emb[tile]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def write_sqlite_log(frame: pd.DataFrame, emb: np.ndarray, path: Path, labels: bool = False):
    """`production`'s rows written through faultwatch.serve.predlog, as the service writes
    them (features and embedding per row); with `labels`, the labelled rows' true labels."""
    from faultwatch.serve import predlog

    log = predlog.open_log(str(path))
    log.append(
        predlog.LoggedPrediction(
            endpoint="predict_batch",
            model_version="v1",
            summary=predlog.InputSummary(r.n, r.mean, r.std, r.min, r.max, 0),
            probability=r.probability,
            label=r.label,
            is_fault=bool(r.is_fault),
            threshold=0.5,
            latency_ms=r.latency_ms,
            batch_size=1,
            prediction_id=r.prediction_id,
            features=[getattr(r, f) for f in FEATURES],
            embedding=emb[i],
        )
        for i, r in enumerate(frame.itertuples())
    )
    if labels:
        done = frame[frame["true_label"].notna()]
        log.add_labels(list(zip(done["prediction_id"], done["true_label"], strict=True)), "bench")
    log.close()


def read_from_sqlite(frame: pd.DataFrame, emb: np.ndarray, folder: Path) -> float | None:
    """Seconds to read the window back from a SQLite log (None without the log's read side)."""
    from faultwatch.serve import predlog

    if not hasattr(predlog, "read_predictions"):
        return None
    write_sqlite_log(frame, emb, folder / "log.sqlite")
    _, seconds = timed(predlog.read_predictions, str(folder / "log.sqlite"))
    return seconds


def sweep(reference: Reference, window: pd.DataFrame, params: MonitorParams) -> dict[str, float]:
    """Per feature, the smallest shift (in reference standard deviations) called input drift."""
    found: dict[str, float] = {}
    spread = reference.frame[list(DRIFT_COLUMNS)].std()
    for d in SHIFTS:
        shifted = window.copy()
        for c in DRIFT_COLUMNS:
            shifted[c] = shifted[c] + d * spread[c]
        drifted = input_drift(shifted, reference.frame, params, None, "v1")["drifted"]
        for c in drifted:
            found.setdefault(c, d)
        if len(found) == len(DRIFT_COLUMNS):
            break
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--stattest", default=None, help="default: params.yaml's monitor.stattest")
    args = ap.parse_args()
    from faultwatch.model.io import LoadedModel
    from faultwatch.model.network import FaultCNN
    from faultwatch.params import load_params, section

    params = section("monitor", load_params(ROOT / "params.yaml"))
    if args.stattest:
        params = params.model_copy(update={"stattest": args.stattest})
    train, pool = plaid_split()
    net = FaultCNN(channels=[16, 32, 64, 64, 64], kernel_size=9).eval()
    model = LoadedModel(net, {"input_length": 1024, "architecture_args": net.config})
    frame, emb = production(pool, args.rows, model)
    by_id = dict(zip(frame["prediction_id"], range(len(frame)), strict=True))

    def read_embeddings(ids: list[str]) -> np.ndarray:
        return emb[[by_id[i] for i in ids]]

    t0 = time.perf_counter()
    from evidently.presets import DataDriftPreset  # noqa: F401

    from faultwatch.monitor.drift import column_drift

    t_import = time.perf_counter() - t0

    def build_reference() -> Reference:
        ref = Reference(
            reference_frame(train),
            embeddings=lambda v: (model_embeddings(model, train["values"]), "bench model"),
        )
        ref.embeddings_for("v1")
        return ref

    reference, t_ref = timed(build_reference)
    with tempfile.TemporaryDirectory() as tmp:
        window = (float(frame["time"].min()), float(frame["time"].max()))
        result, t_monitor = timed(
            monitor_report, frame, None, reference, params, window, read_embeddings, Path(tmp)
        )
        current = frame.sample(min(len(frame), params.max_rows), random_state=0)
        _, t_baseline = timed(
            column_drift,
            current,
            reference.frame,
            DRIFT_COLUMNS,
            params.stattest,
            params.drift_threshold,
            Path(tmp) / "baseline.html",
        )
        t_read = read_from_sqlite(frame, emb, Path(tmp))
    v1 = result["versions"]["v1"]
    print(f"reference: {len(train)} PLAID training signals ({reference.fault_rate:.1%} faults)")
    print(f"window: {len(frame)} logged predictions; stattest {params.stattest}")
    print(f"evidently import (once per process): {t_import:6.2f} s")
    print(f"reference features + embeddings:     {t_ref:6.2f} s")
    print(f"monitor on the window:               {t_monitor:6.2f} s")
    print(f"baseline, all-rows drift + its HTML:  {t_baseline:6.2f} s")
    print(f"ratio monitor / baseline:            {t_monitor / t_baseline:6.2f} x")
    total = t_import + t_ref + t_monitor
    print(f"stage total (import + reference + monitor): {total:.2f} s")
    if t_read is not None:
        print(
            f"read_predictions from SQLite:        {t_read:6.2f} s  (ratio monitor/read {t_monitor / t_read:.2f} x)"
        )
    else:
        print("read_predictions: not on this branch (faultwatch.serve.predlog has no read side)")
    print(f"undrifted replay: reasons {[(r['kind'], r['feature']) for r in result['reasons']]}")
    print(
        f"  embedding AUC {v1['embedding_drift'].get('all')}, fault rate {v1['output_drift']['fault_rate']:.4f}"
    )
    sample = frame.sample(5000, random_state=1)
    found, t_sweep = timed(sweep, reference, sample, params)
    print(
        f"smallest mean shift called input drift (5 000 rows, {params.stattest} >= {params.drift_threshold}), in {t_sweep:.0f} s:"
    )
    for c in DRIFT_COLUMNS:
        print(
            f"  {c:14s} {found.get(c, float('nan')):.2f} sd"
            if c in found
            else f"  {c:14s} > {SHIFTS[-1]} sd"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
