"""`faultwatch simulate-traffic`: replay signals to a running service or router, optionally
drifted, and post their true labels to /feedback after a delay.

Why: the monitor, the delayed-label figures and the retraining loop need production-like
traffic to be tried on, and a drift that is known (how much, on which signals) to be checked
against. The signals come from a Parquet file in the prepared layout (`values`, and `y` or
`label` for the true class; default: the test split), are sent to `/predict_batch`, and
their answers' `prediction_id`s are labelled later, as a maintenance technician would.

Drift, applied to each signal in this order (every option is off by default):
- `time_shift` f: the signal is rolled circularly by round(f * length) samples (-1 < f < 1);
- `scale` k: every sample multiplied by k (a sensor's gain changed);
- `offset` d: d times the signal's own standard deviation (before any drift) added to every
  sample: units of each signal's std, so one figure means the same on signals of any
  amplitude, and the logged mean moves by d std;
- `noise` s: gaussian noise of standard deviation s times the signal's std;
- `fault_share` p: another class mix: the signals are resampled (with replacement, seeded) so
  that faults make up p of them.

Sending is open loop: request i is due at start + i / rate, `concurrency` keep-alive clients
take the requests in turn (a slow server makes requests late, never more than `concurrency`
at once). It stops after `count` requests or `duration` seconds, whichever comes first, then
waits for the labels still due (each `label_delay` s after its answer).
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from faultwatch.errors import FaultwatchError

HEALTHY_LABEL = "healthy"  # a served model's class_names[0] (faultwatch.model.io)
FEEDBACK_BATCH = 32  # labels per POST /feedback


class TrafficError(FaultwatchError):
    """Bad input for simulate-traffic (a file, a column, an option that cannot apply)."""


@dataclass(frozen=True)
class Drift:
    """What is done to each replayed signal (see the module docstring for the units)."""

    scale: float = 1.0
    offset: float = 0.0
    noise: float = 0.0
    time_shift: float = 0.0
    fault_share: float | None = None

    def describe(self) -> str:
        parts = []
        if self.time_shift:
            parts.append(f"time shift {self.time_shift:g} of the length")
        if self.scale != 1.0:
            parts.append(f"scale x{self.scale:g}")
        if self.offset:
            parts.append(f"offset {self.offset:+g} std")
        if self.noise:
            parts.append(f"noise {self.noise:g} std")
        if self.fault_share is not None:
            parts.append(f"fault share {self.fault_share:.0%}")
        return ", ".join(parts) or "none"


def drift_signal(values: np.ndarray, d: Drift, rng: np.random.Generator) -> np.ndarray:
    """One signal with the drift `d` applied (a new array; `values` is left alone)."""
    x = np.asarray(values, dtype="float64")
    std = float(x.std())
    if d.time_shift:
        x = np.roll(x, int(round(d.time_shift * len(x))))
    x = x * d.scale
    if d.offset:
        x = x + d.offset * std
    if d.noise:
        x = x + rng.normal(0.0, d.noise * std, size=len(x))
    return x


@dataclass
class Signals:
    """The signals to replay, their fault flags (None when the file has no labels) and the
    label /feedback takes for each."""

    values: list[np.ndarray]
    y: np.ndarray | None
    labels: list[str] | None


def read_signals_file(path: Path, fault_label: str | None = None) -> Signals:
    """A Parquet file with a `values` list column, and `y` (1 = fault) or `label` with
    `fault_label` for the true classes. The labels posted are the served model's class names:
    HEALTHY_LABEL, and the fault class (the `label` of y == 1 rows, or `fault_label`)."""
    import pandas as pd

    if not path.is_file():
        raise TrafficError(f"{path}: no such file (--signals; `dvc repro` writes the test split)")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise TrafficError(f"{path}: not readable as Parquet ({e})") from None
    if "values" not in df.columns:
        raise TrafficError(f"{path}: no 'values' column (a list of numbers per signal)")
    if df.empty:
        raise TrafficError(f"{path}: no signals")
    values = [np.asarray(v, dtype="float64") for v in df["values"]]
    y = None
    if "y" in df.columns:
        y = df["y"].astype(int).to_numpy()
    elif "label" in df.columns and fault_label is not None:
        y = (df["label"].astype(str) == str(fault_label)).astype(int).to_numpy()
    labels = None
    if y is not None:
        if fault_label is None:
            faults = df.loc[y == 1, "label"] if "label" in df.columns else pd.Series([], dtype=str)
            fault_label = str(faults.iloc[0]) if len(faults) else "fault"
        labels = [fault_label if f else HEALTHY_LABEL for f in y]
    return Signals(values, y, labels)


def resample_share(y: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Indices (as many as `y` has) drawn with replacement so that round(share * n) are
    faults; shuffled."""
    n = len(y)
    faults, healthy = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n_fault = int(round(share * n))
    if n_fault and not len(faults):
        raise TrafficError(f"--fault-share {share:g}: the signals hold no fault to draw from")
    if n - n_fault and not len(healthy):
        raise TrafficError(
            f"--fault-share {share:g}: the signals hold no healthy signal to draw from"
        )
    idx = np.concatenate(
        [
            rng.choice(faults, n_fault) if n_fault else np.array([], dtype=int),
            rng.choice(healthy, n - n_fault) if n - n_fault else np.array([], dtype=int),
        ]
    ).astype(int)
    rng.shuffle(idx)
    return idx


@dataclass(frozen=True)
class Plan:
    """Where, how fast and how much to send (the CLI's flags, checked there)."""

    url: str
    rate: float  # requests per second
    count: int | None = None  # requests; None: until duration_s, else one pass over the signals
    duration_s: float | None = None
    concurrency: int = 4
    batch_size: int = 1  # signals per /predict_batch request
    label_delay_s: float | None = None  # None: no labels posted
    timeout_s: float = 30.0
    seed: int = 0


@dataclass
class Summary:
    """What came back: requests sent and answered, failures by status, faults predicted,
    labels posted or refused; `lines()` is what the CLI prints."""

    sent: int = 0
    answered: int = 0
    signals_answered: int = 0
    failed: Counter = field(default_factory=Counter)  # status (0: no HTTP answer) -> requests
    faults_predicted: int = 0
    labels_posted: int = 0
    labels_failed: Counter = field(default_factory=Counter)
    label_errors: list[str] = field(default_factory=list)
    prediction_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "signals_answered": self.signals_answered,
            "failed": {str(k): v for k, v in sorted(self.failed.items())},
            "faults_predicted": self.faults_predicted,
            "labels_posted": self.labels_posted,
            "labels_failed": {str(k): v for k, v in sorted(self.labels_failed.items())},
            "label_errors": self.label_errors[:5],
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        failed = ", ".join(f"{'no answer' if k == 0 else k}: {v}" for k, v in self.failed.items())
        share = self.faults_predicted / self.signals_answered if self.signals_answered else 0.0
        out = [
            f"sent {self.sent} requests in {self.seconds:.1f} s, answered {self.answered} "
            f"({self.signals_answered} signals), failed {self.sent - self.answered}"
            + (f" ({failed})" if failed else ""),
            f"faults predicted {self.faults_predicted} ({share:.1%} of the answered signals)",
        ]
        lf = ", ".join(f"{k}: {v}" for k, v in self.labels_failed.items())
        out.append(f"labels posted {self.labels_posted}" + (f", refused ({lf})" if lf else ""))
        if self.label_errors:
            out.append(f"first refusal: {self.label_errors[0]}")
        return out


class _Connection:
    """One keep-alive HTTP/1.1 connection, reopened after an error or a `Connection: close`."""

    def __init__(self, url: str, timeout_s: float):
        parts = urlsplit(url)
        self.host, self.port, self.timeout_s = parts.hostname, parts.port, timeout_s
        self.base = parts.path.rstrip("/")
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        """(status, body); status 0 with the error's text when no HTTP answer came."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            self.conn.request(
                "POST",
                self.base + path,
                body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            r = self.conn.getresponse()
            data = r.read()
            if (r.getheader("Connection") or "").lower() == "close":
                self.close()
            return r.status, data
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return 0, f"{type(e).__name__}: {e}".encode()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _Labeller:
    """Posts (prediction_id, label) pairs to /feedback once they are due, in batches."""

    def __init__(self, plan: Plan, summary: Summary, lock: threading.Lock):
        self.plan, self.summary, self.lock = plan, summary, lock
        self.due: list[tuple[float, int, str, str]] = []
        self.seq = itertools.count()
        self.cv = threading.Condition()
        self.closing = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, when: float, items: list[tuple[str, str]]) -> None:
        with self.cv:
            for pid, label in items:
                heapq.heappush(self.due, (when, next(self.seq), pid, label))
            self.cv.notify()

    def close(self) -> None:
        with self.cv:
            self.closing = True
            self.cv.notify()

    def _run(self) -> None:
        conn = _Connection(self.plan.url, self.plan.timeout_s)
        while True:
            with self.cv:
                while True:
                    now = time.monotonic()
                    if self.due and self.due[0][0] <= now:
                        break
                    if not self.due and self.closing:
                        conn.close()
                        return
                    wait = self.due[0][0] - now if self.due else None
                    self.cv.wait(wait)
                batch = []
                while self.due and self.due[0][0] <= now and len(batch) < FEEDBACK_BATCH:
                    _, _, pid, label = heapq.heappop(self.due)
                    batch.append({"prediction_id": pid, "label": label})
            status, data = conn.post("/feedback", {"labels": batch})
            with self.lock:
                if status == 200:
                    try:
                        self.summary.labels_posted += int(json.loads(data)["accepted"])
                    except (ValueError, KeyError, TypeError):
                        self.summary.labels_posted += len(batch)
                else:
                    self.summary.labels_failed[status] += len(batch)
                    self.summary.label_errors.append(
                        f"{status}: {data[:300].decode(errors='replace')}"
                    )


def replay(
    plan: Plan,
    signals: Signals,
    drift: Drift,
    on_progress: Callable[[Summary, float], None] | None = None,
    every_s: float = 10.0,
) -> Summary:
    """Send the (drifted) signals as the plan says; returns what came back. `on_progress`
    (summary so far, seconds since the start) is called every `every_s` seconds meanwhile."""
    rng = np.random.default_rng(plan.seed)
    order = np.arange(len(signals.values))
    if drift.fault_share is not None:
        if signals.y is None:
            raise TrafficError("--fault-share needs the true classes: a `y` or `label` column")
        order = resample_share(signals.y, drift.fault_share, rng)
    if plan.label_delay_s is not None and signals.labels is None:
        raise TrafficError("--label-delay needs the true classes: a `y` or `label` column")
    # the drifted signals, computed once (the noise is seeded): request i sends a window of them
    sent_values = [drift_signal(signals.values[i], drift, rng).tolist() for i in order]
    sent_labels = [signals.labels[i] for i in order] if signals.labels else None
    # --count, else as many as --duration allows (cycling over the signals), else one pass
    if plan.count is not None:
        n_req: float = plan.count
    elif plan.duration_s is not None:
        n_req = math.inf
    else:
        n_req = math.ceil(len(order) / plan.batch_size)

    summary, lock = Summary(), threading.Lock()
    labeller = _Labeller(plan, summary, lock) if plan.label_delay_s is not None else None
    if labeller:
        labeller.thread.start()
    counter = itertools.count()
    t0 = time.monotonic()
    stop_at = t0 + plan.duration_s if plan.duration_s is not None else math.inf

    def client() -> None:
        conn = _Connection(plan.url, plan.timeout_s)
        while True:
            i = next(counter)
            due = t0 + i / plan.rate
            if i >= n_req or due >= stop_at:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            idx = [(i * plan.batch_size + k) % len(sent_values) for k in range(plan.batch_size)]
            status, data = conn.post("/predict_batch", {"signals": [sent_values[j] for j in idx]})
            preds: list[dict] = []
            if status == 200:
                try:
                    preds = json.loads(data)["predictions"]
                except (ValueError, KeyError, TypeError):
                    status = -1  # an answer that is not the service's
            with lock:
                summary.sent += 1
                if status != 200:
                    summary.failed[status] += 1
                    continue
                summary.answered += 1
                summary.signals_answered += len(preds)
                summary.faults_predicted += sum(bool(p.get("is_fault")) for p in preds)
                summary.prediction_ids += [
                    p["prediction_id"] for p in preds if p.get("prediction_id")
                ]
            if labeller and sent_labels:
                items = [
                    (p["prediction_id"], sent_labels[j])
                    for p, j in zip(preds, idx, strict=False)
                    if p.get("prediction_id")
                ]
                labeller.add(time.monotonic() + plan.label_delay_s, items)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(plan.concurrency)]
    for t in threads:
        t.start()
    shown = t0
    for t in threads:
        while t.is_alive():
            t.join(timeout=min(0.5, every_s))
            now = time.monotonic()
            if on_progress is not None and now - shown >= every_s:
                shown = now
                with lock:
                    on_progress(summary, now - t0)
    if labeller:
        labeller.close()
        labeller.thread.join()
    summary.seconds = time.monotonic() - t0
    return summary
