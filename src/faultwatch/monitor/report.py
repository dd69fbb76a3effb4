"""One window of the prediction log against the training reference, per model version, and the
decision to retrain (reports/metrics/monitor.json).

The decision rule, and why:

- **Input drift** on a feature is called only when the drift test flags it on all the window's
  rows *and* on the predicted-healthy rows (is_fault == 0) against the healthy reference rows
  (y == 0). Faults look different from healthy signals, so more faults alone move the
  all-rows distribution: that is a change in the output (the class mix), which the fault rate
  reports, not a change in what healthy machines send. When the class mix explains the
  all-rows drift the feature is listed under `class_mix`, not as a reason. When the window
  has too few predicted-healthy rows to test (`min_rows`), the all-rows test decides alone
  (`unconfirmed`): a model that calls almost everything a fault is when input drift matters
  most, and the output drift is reported beside it anyway. A drift seen in the healthy subset
  only is shown but not called. The predicted-healthy subset holds the model's missed faults
  too; at a few percent of faults and a working model they are too few to move a test.
- **Embedding drift**: the same rule on the domain classifier's ROC-AUC (the penultimate
  layer, in the embedding space of that version's own model). A classical model has no
  embedding: its verdict is `not_applicable`, and `notes` says so for its version (its drift
  is judged on the input features, the output and the performance, as any model's).
- **Output drift**: the window's fault rate differs from the training fault rate by at least
  `max_fault_rate_delta` and by at least `fault_rate_z` binomial standard errors (a handful of
  rows never calls it).
- **Performance**: realised F1 over at least `min_labels` labelled rows below `min_f1`; the
  CBPE estimate for unlabelled rows below `min_f1`, only when it is calibrated on at least
  `min_labels` labelled rows (raw scores are not probabilities).

Each of these is a reason {kind, feature, score, threshold, model_version}; any reason sets
`retrain_needed`. `notes` ({kind, model_version, note}) says what was not applicable to a
version and why; a note is never a reason. A multichannel model's input drift is tested per
channel and feature (`rms[z]`: reference.drift_columns), and its input drift reasons also carry
the `channel`.
Malformed requests, latency and signal quality (the share of each sensor rule,
`signal_quality`) are reported but are never a reason: retraining does not fix a client that
sends bad data, a slow host or a dead sensor. Signals answered "unscored" (a sensor fault,
no verdict) are left out of the drift and performance figures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faultwatch.monitor.channels import feature_channel
from faultwatch.monitor.drift import column_drift, embedding_drift
from faultwatch.monitor.params import MonitorParams
from faultwatch.monitor.performance import performance_figures
from faultwatch.monitor.reference import EmbeddingNotApplicable, Reference, drift_columns
from faultwatch.signal_quality import UNSCORED, rule_counts

# prediction ids -> (n, d) embeddings in that order (NaN rows where none was logged)
ReadEmbeddings = Callable[[list[str]], np.ndarray]


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN and inf to None, floats to 6 decimals."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return round(v, 6) if math.isfinite(v) else None
    return value


def _file_safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", version) or "unknown"


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most `n` rows, drawn reproducibly: the drift tests' power is bounded by the reference
    (hundreds of training signals), so more window rows than this only cost time."""
    return df if len(df) <= n else df.sample(n=n, random_state=seed)


def verdict(all_drifted: bool | None, healthy_drifted: bool | None) -> str:
    """The decision rule on one feature (see the module docstring). None: not tested."""
    if all_drifted is None:
        return "untested"
    if all_drifted and healthy_drifted:
        return "drift"
    if all_drifted and healthy_drifted is None:
        return "unconfirmed"
    if all_drifted:
        return "class_mix"
    return "healthy_only" if healthy_drifted else "none"


CALLED = ("drift", "unconfirmed")  # verdicts that are input drift
NOT_APPLICABLE = "not_applicable"  # embedding drift of a model without an embedding


def input_drift(
    rows: pd.DataFrame,
    reference: pd.DataFrame,
    params: MonitorParams,
    html_dir: Path | None,
    version: str,
    columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per column: the score on all rows and on the predicted-healthy subset, and the verdict.
    `columns`: those tested (default: the reference frame's, reference.drift_columns); one the
    window's rows lack (another model's rows) is untested there."""
    tag = _file_safe(version)
    if columns is None:
        columns = drift_columns(reference.attrs.get("channels"))
    columns = list(columns)
    absent = [c for c in columns if c not in rows.columns]
    if absent:
        rows = rows.assign(**dict.fromkeys(absent, np.nan))
    subsets = {
        "all": (rows, reference),
        "healthy": (rows[rows["is_fault"] == 0], reference[reference["y"] == 0]),
    }
    tables: dict[str, pd.DataFrame | None] = {}
    n_rows: dict[str, int] = {}
    for name, (cur, ref) in subsets.items():
        cur = cur.dropna(subset=columns, how="all")
        n_rows[name] = len(cur)
        if len(cur) < params.min_rows:
            tables[name] = None
            continue
        html = (
            html_dir / f"drift_{tag}{'' if name == 'all' else '_healthy'}.html"
            if html_dir
            else None
        )
        tables[name] = column_drift(
            _sample(cur, params.max_rows, params.seed),
            ref,
            columns,
            params.stattest,
            params.drift_threshold,
            html,
        )
    verdicts = {}
    for c in columns:
        entry: dict[str, Any] = {}
        flags: dict[str, bool | None] = {}
        for name, table in tables.items():
            score = None if table is None else table.loc[c, "score"]
            entry[name] = score
            tested = table is not None and np.isfinite(table.loc[c, "score"])
            flags[name] = bool(table.loc[c, "drifted"]) if tested else None
            if table is not None and table.loc[c, "note"]:
                entry["note"] = table.loc[c, "note"]
        entry["verdict"] = verdict(flags["all"], flags["healthy"])
        verdicts[c] = entry
    return {
        "n_rows": n_rows,
        "columns": verdicts,
        "drifted": [c for c, e in verdicts.items() if e["verdict"] in CALLED],
        "class_mix": [c for c, e in verdicts.items() if e["verdict"] == "class_mix"],
        "html": [
            f"drift_{tag}{'' if n == 'all' else '_healthy'}.html"
            for n, t in tables.items()
            if t is not None and html_dir is not None
        ],
    }


def embedding_drift_figures(
    rows: pd.DataFrame,
    reference: Reference,
    params: MonitorParams,
    version: str,
    read_embeddings: ReadEmbeddings | None,
) -> dict[str, Any]:
    """The domain classifier's ROC-AUC on all rows and the healthy subset, and the verdict;
    `not_applicable`, with the note why, for a model without an embedding (classical)."""
    try:
        ref_emb, source = reference.embeddings_for(version)
    except EmbeddingNotApplicable as e:
        return {"verdict": NOT_APPLICABLE, "family": e.family, "note": str(e)}
    if ref_emb is None or read_embeddings is None:
        return {"verdict": "untested", "note": source if ref_emb is None else "no log reader"}
    healthy_ref = ref_emb[reference.frame["y"].to_numpy() == 0]
    picks = {
        "all": _sample(rows, params.embedding_sample, params.seed),
        "healthy": _sample(rows[rows["is_fault"] == 0], params.embedding_sample, params.seed),
    }
    ids = list(dict.fromkeys([*picks["all"]["prediction_id"], *picks["healthy"]["prediction_id"]]))
    emb = dict(zip(ids, np.asarray(read_embeddings(ids), dtype="float64"), strict=True))
    out: dict[str, Any] = {"reference": source}
    flags: dict[str, bool | None] = {}
    for name, ref in (("all", ref_emb), ("healthy", healthy_ref)):
        cur = np.array([emb[i] for i in picks[name]["prediction_id"]])
        if cur.ndim != 2 or (cur.size and cur.shape[1] != ref.shape[1]):
            out[name], flags[name] = None, None
            out["note"] = f"logged embeddings of width {cur.shape[-1]}, reference {ref.shape[1]}"
            continue
        r = embedding_drift(cur, ref, params.embedding_sample, params.seed)
        too_few = r["auc"] is None or r["n"] < min(params.min_rows, params.embedding_sample)
        out[name] = r["auc"]
        out[f"n_{name}"] = r["n"]
        flags[name] = None if too_few else r["auc"] >= params.embedding_auc
    out["verdict"] = verdict(flags["all"], flags["healthy"])
    return out


def output_drift(rows: pd.DataFrame, reference: Reference, params: MonitorParams) -> dict[str, Any]:
    """The window's fault rate against training (and the test split), with the z-score."""
    n = len(rows)
    rate = float(rows["is_fault"].mean()) if n else None
    p0 = reference.fault_rate
    se = math.sqrt(max(p0 * (1 - p0), 1e-12) / n) if n else None
    z = (rate - p0) / se if n else None
    drifted = bool(
        n and abs(rate - p0) >= params.max_fault_rate_delta and abs(z) >= params.fault_rate_z
    )
    return {
        "fault_rate": rate,
        "train_fault_rate": p0,
        "test_fault_rate": reference.test_fault_rate,
        "delta": None if rate is None else rate - p0,
        "z": z,
        "drifted": drifted,
    }


def reasons_for(version: str, fig: dict[str, Any], params: MonitorParams) -> list[dict[str, Any]]:
    """The reasons to retrain that one version's figures give (see the module docstring)."""
    out = []

    def add(kind: str, feature: str, score: float, threshold: float) -> None:
        reason = {
            "kind": kind,
            "feature": feature,
            "score": score,
            "threshold": threshold,
            "model_version": version,
        }
        channel = feature_channel(feature) if kind == "input_drift" else None
        out.append(reason if channel is None else {**reason, "channel": channel})

    for c in fig["input_drift"]["drifted"]:
        e = fig["input_drift"]["columns"][c]
        scores = [s for s in (e.get("all"), e.get("healthy")) if s is not None and np.isfinite(s)]
        add("input_drift", c, min(scores), params.drift_threshold)
    emb = fig["embedding_drift"]
    if emb["verdict"] in CALLED:
        scores = [s for s in (emb.get("all"), emb.get("healthy")) if s is not None]
        add("embedding_drift", "embedding", min(scores), params.embedding_auc)
    out_d = fig["output_drift"]
    if out_d["drifted"]:
        add("output_drift", "fault_rate", abs(out_d["delta"]), params.max_fault_rate_delta)
    real = fig["performance"]["realised"]
    if real["n"] >= params.min_labels and real["f1"] is not None and real["f1"] < params.min_f1:
        add("performance", "f1", real["f1"], params.min_f1)
    est = fig["performance"]["estimated"]
    if (
        est["calibrated"]
        and est["n"] >= params.min_rows
        and est["f1"] is not None
        and est["f1"] < params.min_f1
    ):
        add("performance_estimated", "f1", est["f1"], params.min_f1)
    return out


def malformed(rejected: pd.DataFrame) -> dict[str, Any]:
    """Refused requests in the window, by rule (the error's reason) and by status."""
    if rejected is None or rejected.empty:
        return {"n": 0, "by_reason": {}, "by_status": {}}
    return {
        "n": len(rejected),
        "by_reason": rejected["reason"].value_counts().sort_index().to_dict(),
        "by_status": {str(k): v for k, v in rejected["status"].value_counts().sort_index().items()},
    }


def monitor_report(
    predictions: pd.DataFrame,
    rejected: pd.DataFrame | None,
    reference: Reference,
    params: MonitorParams,
    window: tuple[float | None, float],
    read_embeddings: ReadEmbeddings | None = None,
    html_dir: Path | None = None,
) -> dict[str, Any]:
    """The monitor's whole result for one window: per model version, the input drift (all and
    predicted-healthy rows), embedding drift, output drift, latency and performance; the
    malformed requests; `retrain_needed` and its reasons; the notes on what did not apply.
    JSON-safe (monitor.json).

    `predictions`: read_predictions' frame of the window; `rejected`: read_rejected's;
    `window`: (start, end) unix seconds, `end` also dates the labels' maturity.
    """
    start, end = window
    versions: dict[str, Any] = {}
    reasons: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []  # what did not apply to a version, and why
    answered = predictions[predictions["label"] != UNSCORED]
    for version, rows in sorted(answered.groupby("model_version", sort=True)):
        version = str(version)
        fig: dict[str, Any] = {"n": len(rows)}
        fig["input_drift"] = input_drift(
            rows, reference.frame, params, html_dir, version, reference.columns
        )
        fig["embedding_drift"] = embedding_drift_figures(
            rows, reference, params, version, read_embeddings
        )
        if fig["embedding_drift"]["verdict"] == NOT_APPLICABLE:
            note = fig["embedding_drift"]["note"]
            notes.append({"kind": "embedding_drift", "model_version": version, "note": note})
        fig["output_drift"] = output_drift(rows, reference, params)
        lat = rows["latency_ms"].to_numpy(dtype="float64")
        fig["latency_ms"] = {
            "p50": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99": float(np.percentile(lat, 99)) if len(lat) else None,
        }
        fig["performance"] = performance_figures(rows, params, end)
        reasons += reasons_for(version, fig, params)
        versions[version] = fig

    def iso(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    return _clean(
        {
            "retrain_needed": bool(reasons),
            "reasons": reasons,
            "notes": notes,
            "window": {
                "start": iso(start),
                "end": iso(end),
                "n_predictions": len(predictions),
                "roles": list(params.roles),
            },
            "reference": {
                "n": len(reference.frame),
                "fault_rate": reference.fault_rate,
                "test_fault_rate": reference.test_fault_rate,
                **({} if reference.channels is None else {"channels": list(reference.channels)}),
            },
            "malformed": malformed(rejected),
            "signal_quality": {
                **rule_counts(predictions.get("quality", pd.Series(dtype=object))),
                "n_unscored": int((predictions["label"] == UNSCORED).sum()),
            },
            "versions": versions,
            "config": {
                "stattest": params.stattest,
                "drift_threshold": params.drift_threshold,
                "embedding_auc": params.embedding_auc,
                "max_fault_rate_delta": params.max_fault_rate_delta,
                "fault_rate_z": params.fault_rate_z,
                "min_f1": params.min_f1,
            },
        }
    )
