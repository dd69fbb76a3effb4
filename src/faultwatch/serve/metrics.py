"""The service's own Prometheus metrics, beside BentoML's at `/metrics`.

    faultwatch_predictions_total{model_version,label,model}  counter: answered (and logged)
                                                       signals; `model`: the group (a fleet
                                                       bento's model; bounded by its groups)
    faultwatch_faults_total{model_version,model}       counter: those with is_fault; the fault
                                                       rate is faults / predictions in PromQL
    faultwatch_rejected_total{reason}                  counter: refused requests by rule (the
                                                       `rejected` table's reason)
    faultwatch_signal_quality_total{rule}              counter: answered signals by quality,
                                                       ok or the sensor rule (flat_line ...)
    faultwatch_realised_f1{model_version}              gauge: F1 of the fault class over every
                                                       labelled prediction in the log
    faultwatch_labels_total{model_version}             gauge: labelled predictions in the log

The counters count what this process answered; the two gauges are read from the prediction
log, which blue and green share, so both colours export the same values for them (aggregate
with `max`, not `sum`). They are computed from the `labels` table joined to `predictions`
(one indexed lookup per label), refreshed when this process accepts feedback and when
`/metrics` is scraped, at most every FAULTWATCH_REALISED_F1_REFRESH seconds.

BentoML runs prometheus_client in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set for the
workers it starts) and its `/metrics` reads only what the workers' metric objects wrote there;
prometheus_client must therefore be imported, and the metrics created, in the worker, after
that variable is set: `service_metrics()` does it on first use, never at import.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from faultwatch.serve.predlog import log_exists, read_only
from faultwatch.signal_quality import UNSCORED

logger = logging.getLogger(__name__)

# the series the service exports (and the dashboard may name), by metric name in PromQL
EXPORTED = (
    "faultwatch_predictions_total",
    "faultwatch_faults_total",
    "faultwatch_rejected_total",
    "faultwatch_signal_quality_total",
    "faultwatch_realised_f1",
    "faultwatch_labels_total",
)


@dataclass(frozen=True)
class ServiceMetrics:
    """The prometheus_client objects behind EXPORTED (created by `service_metrics`)."""

    predictions: Any
    faults: Any
    rejected: Any
    signal_quality: Any
    realised_f1: Any
    labels: Any

    def answered(
        self,
        model_version: str,
        label: str,
        is_fault: bool,
        quality: str | None = None,
        model: str = "",
    ) -> None:
        """Count one answered (and logged) signal."""
        self.predictions.labels(model_version=model_version, label=label, model=model).inc()
        if is_fault:
            self.faults.labels(model_version=model_version, model=model).inc()
        if quality is not None:
            self.signal_quality.labels(rule=quality).inc()


@functools.cache
def service_metrics() -> ServiceMetrics:
    """The metric objects of this process, created on first use (see the module docstring)."""
    import prometheus_client as pc

    return ServiceMetrics(
        predictions=pc.Counter(
            "faultwatch_predictions", "answered signals", ["model_version", "label", "model"]
        ),
        faults=pc.Counter(
            "faultwatch_faults", "answered signals predicted faulty", ["model_version", "model"]
        ),
        rejected=pc.Counter("faultwatch_rejected", "refused requests by rule", ["reason"]),
        signal_quality=pc.Counter(
            "faultwatch_signal_quality", "answered signals by quality: ok or the rule", ["rule"]
        ),
        realised_f1=pc.Gauge(
            "faultwatch_realised_f1",
            "F1 of the fault class on the labelled predictions in the log",
            ["model_version"],
            multiprocess_mode="mostrecent",
        ),
        labels=pc.Gauge(
            "faultwatch_labels_total",
            "labelled predictions in the log (shared by the colours: aggregate with max)",
            ["model_version"],
            multiprocess_mode="mostrecent",
        ),
    )


@dataclass(frozen=True)
class LabelCounts:
    """The confusion counts of the fault class over a model version's labelled predictions."""

    n: int
    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float | None:
        """None while it is undefined (no fault predicted and none labelled)."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else None


# a signal answered "unscored" (a sensor fault) has no verdict to score against its label
COUNTS_SQL = f"""
SELECT p.model_version, count(*),
       sum(CASE WHEN p.is_fault = 1 AND l.label = ? THEN 1 ELSE 0 END),
       sum(CASE WHEN p.is_fault = 1 AND l.label <> ? THEN 1 ELSE 0 END),
       sum(CASE WHEN p.is_fault = 0 AND l.label = ? THEN 1 ELSE 0 END)
FROM labels l JOIN predictions p ON p.prediction_id = l.prediction_id
WHERE p.role = 'live' AND p.label <> '{UNSCORED}'
GROUP BY p.model_version
"""


def label_counts(
    target: Path | str, fault_label: str, timeout_s: float = 5.0
) -> dict[str, LabelCounts]:
    """LabelCounts per model version of the log at `target` (a SQLite path or a postgresql://
    URL, as FAULTWATCH_PREDICTION_LOG); {} while there is no log file yet. The service creates
    the labels table when it opens its log, before any scrape."""
    if not log_exists(target):
        return {}
    with read_only(target, timeout_s) as select:
        rows = select(COUNTS_SQL, (fault_label,) * 3)
    return {str(v): LabelCounts(int(n), int(tp), int(fp), int(fn)) for v, n, tp, fp, fn in rows}


class RealisedF1:
    """Keeps faultwatch_realised_f1 and faultwatch_labels_total in step with the log's labels,
    reading it at most every `min_interval_s` unless forced (after accepted feedback)."""

    def __init__(
        self,
        target: Path | str,
        fault_label: str,
        min_interval_s: float,
        fault_labels: dict[str, str] | None = None,
    ):
        """`fault_labels`: a fleet's fault class per model version, where the groups' classes
        differ (a version not in it is counted with `fault_label`)."""
        self.target, self.fault_label = target, fault_label
        self.fault_labels = fault_labels or {}
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._last = float("-inf")
        self.counts: dict[str, LabelCounts] = {}

    def refresh(self, force: bool = False) -> dict[str, LabelCounts]:
        """Read the counts and set the gauges (if due, or forced); returns the latest counts."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self.min_interval_s:
                return self.counts
            self._last = now
            counts = label_counts(self.target, self.fault_label)
            for label in set(self.fault_labels.values()) - {self.fault_label}:
                theirs = label_counts(self.target, label)
                counts.update(
                    {v: c for v, c in theirs.items() if self.fault_labels.get(v) == label}
                )
            self.counts = counts
            metrics = service_metrics()
            for version, c in self.counts.items():
                metrics.labels.labels(model_version=version).set(c.n)
                if c.f1 is not None:
                    metrics.realised_f1.labels(model_version=version).set(c.f1)
            return self.counts

    def refresh_quietly(self, force: bool = False) -> None:
        """`refresh`, logging instead of raising: a metric must not fail a request."""
        try:
            self.refresh(force)
        except Exception:
            logger.exception("could not refresh the realised F1 from %s", self.target)


Scope = MutableMapping[str, Any]


class RefreshOnScrape:
    """ASGI middleware: a GET /metrics first brings the log-derived gauges up to date."""

    def __init__(self, app: Callable, refresh: Callable[[], None], path: str = "/metrics"):
        self.app, self.refresh, self.path = app, refresh, path

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await anyio.to_thread.run_sync(self.refresh)
        await self.app(scope, receive, send)
