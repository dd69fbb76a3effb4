"""How simulate-traffic sends: open loop at a rate, `concurrency` keep-alive clients taking the
requests in turn, the true labels posted to /feedback once due (see faultwatch.traffic)."""

from __future__ import annotations

import heapq
import http.client
import io
import itertools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from faultwatch.traffic.signals import Drift, Signals, TrafficError, drift_signal, resample_share

FEEDBACK_BATCH = 32  # labels per POST /feedback


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
    token: str | None = None  # the labeller's bearer token for /feedback
    timeout_s: float = 30.0
    seed: int = 0
    body: str = "json"  # or "npy": each request's signals as one .npy array (one length)


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


NPY_TYPE = "application/x-npy"


def npy_bytes(signals: list) -> bytes:
    """One /predict_batch request's signals as an `.npy` array (signals, [channels,] samples)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(signals, dtype="float64"), allow_pickle=False)
    return buf.getvalue()


class _Connection:
    """One keep-alive HTTP/1.1 connection, reopened after an error or a `Connection: close`."""

    def __init__(self, url: str, timeout_s: float):
        parts = urlsplit(url)
        self.host, self.port, self.timeout_s = parts.hostname, parts.port, timeout_s
        self.base = parts.path.rstrip("/")
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict | bytes, token: str | None = None) -> tuple[int, bytes]:
        """(status, body); status 0 with the error's text when no HTTP answer came. `body`: a
        JSON object, or the bytes of an `.npy` array. `token`: sent as `Authorization: Bearer`."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        npy = isinstance(body, bytes)
        headers = {"Content-Type": NPY_TYPE if npy else "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            data = body if npy else json.dumps(body).encode()
            self.conn.request("POST", self.base + path, body=data, headers=headers)
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
            status, data = conn.post("/feedback", {"labels": batch}, self.plan.token)
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


@dataclass(frozen=True)
class _Load:
    """What the clients send: the drifted signals in order (computed once, the noise seeded),
    their labels, and how many requests."""

    values: list[list[float]] | list[list[list[float]]]  # multichannel: channels first
    labels: list[str] | None
    n_req: float


def _load(plan: Plan, signals: Signals, drift: Drift) -> _Load:
    drift.check_channel(signals.channels)
    rng = np.random.default_rng(plan.seed)
    order = np.arange(len(signals.values))
    if drift.fault_share is not None:
        if signals.y is None:
            raise TrafficError("--fault-share needs the true classes: a `y` or `label` column")
        order = resample_share(signals.y, drift.fault_share, rng)
    if plan.label_delay_s is not None and signals.labels is None:
        raise TrafficError("--label-delay needs the true classes: a `y` or `label` column")
    if plan.body == "npy" and plan.batch_size > 1:
        lengths = {np.shape(v)[-1] for v in signals.values}
        if len(lengths) > 1:
            raise TrafficError(
                f"--body npy sends a request's signals as one array: they need one length "
                f"(these have {len(lengths)}); --batch-size 1 sends each alone"
            )
    # the drifted signals, computed once (the noise is seeded): request i sends a window of them
    sent_values = [
        drift_signal(signals.values[i], drift, rng, signals.channels).tolist() for i in order
    ]
    sent_labels = [signals.labels[i] for i in order] if signals.labels else None
    # --count, else as many as --duration allows (cycling over the signals), else one pass
    if plan.count is not None:
        n_req: float = plan.count
    elif plan.duration_s is not None:
        n_req = math.inf
    else:
        n_req = math.ceil(len(order) / plan.batch_size)
    return _Load(sent_values, sent_labels, n_req)


@dataclass
class _Sender:
    """The requests of one replay, shared by `concurrency` client threads: request i is due at
    t0 + i / rate; what comes back goes into the summary (and due labels to the labeller)."""

    plan: Plan
    load: _Load
    summary: Summary
    lock: threading.Lock
    labeller: _Labeller | None
    t0: float
    counter: Iterator[int] = field(default_factory=itertools.count)

    def client(self) -> None:
        plan, values = self.plan, self.load.values
        stop_at = self.t0 + plan.duration_s if plan.duration_s is not None else math.inf
        conn = _Connection(plan.url, plan.timeout_s)
        while True:
            i = next(self.counter)
            due = self.t0 + i / plan.rate
            if i >= self.load.n_req or due >= stop_at:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            idx = [(i * plan.batch_size + k) % len(values) for k in range(plan.batch_size)]
            chosen = [values[j] for j in idx]
            body = npy_bytes(chosen) if plan.body == "npy" else {"signals": chosen}
            status, data = conn.post("/predict_batch", body)
            self._record(status, data, idx)
        conn.close()

    def _record(self, status: int, data: bytes, idx: list[int]) -> None:
        preds: list[dict] = []
        if status == 200:
            try:
                preds = json.loads(data)["predictions"]
            except (ValueError, KeyError, TypeError):
                status = -1  # an answer that is not the service's
        summary = self.summary
        with self.lock:
            summary.sent += 1
            if status != 200:
                summary.failed[status] += 1
                return
            summary.answered += 1
            summary.signals_answered += len(preds)
            summary.faults_predicted += sum(bool(p.get("is_fault")) for p in preds)
            summary.prediction_ids += [p["prediction_id"] for p in preds if p.get("prediction_id")]
        labels = self.load.labels
        if self.labeller and labels:
            items = [
                (p["prediction_id"], labels[j])
                for p, j in zip(preds, idx, strict=False)
                if p.get("prediction_id")
            ]
            self.labeller.add(time.monotonic() + self.plan.label_delay_s, items)


def replay(
    plan: Plan,
    signals: Signals,
    drift: Drift,
    on_progress: Callable[[Summary, float], None] | None = None,
    every_s: float = 10.0,
) -> Summary:
    """Send the (drifted) signals as the plan says; returns what came back. `on_progress`
    (summary so far, seconds since the start) is called every `every_s` seconds meanwhile."""
    load = _load(plan, signals, drift)
    summary, lock = Summary(), threading.Lock()
    labeller = _Labeller(plan, summary, lock) if plan.label_delay_s is not None else None
    if labeller:
        labeller.thread.start()
    t0 = time.monotonic()
    sender = _Sender(plan, load, summary, lock, labeller, t0)
    threads = [threading.Thread(target=sender.client, daemon=True) for _ in range(plan.concurrency)]
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
