"""The analysis gate: is the staged colour as healthy as the live one, on live traffic?

Over a window of the prediction log (both colours log to it, each row naming its colour and
role), for the staged colour's live answers:

- error rate: 5xx answers (the service's refusals in the `rejected` table, and what the router
  counted for that colour: 5xx and broken responses) over its requests;
- p99 latency against the live colour's p99 over the same window (ratio, with an absolute slack
  for the few-millisecond figures where a ratio is noise);
- fault rate against the training fault rate (the share of faults in the model's evaluation
  split, recorded at registration), over the answers the model scored: a signal of bad quality
  (a dead sensor: faultwatch.signal_quality), answered `unscored`, is no machine's fault nor
  health.

Fewer answered requests than `min_requests` make the result *inconclusive*: it never promotes
(Flagger and Argo Rollouts analyses that pass with no traffic are the complaint this answers).

The log is a SQLite file or a postgresql:// URL (FAULTWATCH_PREDICTION_LOG): the queries run
read-only through faultwatch.serve.predlog.read_only, in SQL both backends run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from faultwatch.params import Section
from faultwatch.serve.predlog import log_exists, read_only
from faultwatch.signal_quality import UNSCORED

Verdict = Literal["pass", "fail", "inconclusive"]


class DeployParams(Section):
    """params.yaml:deploy."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535, description="the router's port")
    smoke_tolerance: float = Field(1e-4, ge=0, allow_inf_nan=False)
    ready_timeout_s: float = Field(180, gt=0)
    canary_steps: list[int] = Field(default_factory=lambda: [10, 25, 50, 100], min_length=1)
    canary_interval_s: float = Field(60, gt=0)
    min_requests: int = Field(50, ge=1)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_ratio: float = Field(1.5, ge=1, allow_inf_nan=False)
    p99_slack_ms: float = Field(20, ge=0, allow_inf_nan=False)
    max_fault_rate_delta: float = Field(0.1, ge=0, le=1)
    shadow_max_inflight: int = Field(32, ge=1, le=10000)
    shadow_timeout_s: float = Field(10, gt=0)
    shadow_low_priority: bool = True
    router_buffer_kib: int = Field(256, ge=16, le=65536)

    @field_validator("canary_steps")
    @classmethod
    def _rising_percentages(cls, steps: list[int]) -> list[int]:
        if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"expected rising percentages in 1..100, got {steps}")
        return steps


@dataclass
class Check:
    name: str
    value: float | None
    threshold: float | None
    passed: bool
    detail: str = ""


@dataclass
class Analysis:
    verdict: Verdict
    colour: str
    against: str
    since: float
    until: float
    requests: int
    checks: list[Check] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"analysis of {self.colour}: {self.verdict.upper()} ({self.reason})"]
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            value = "n/a" if c.value is None else f"{c.value:.4g}"
            limit = "" if c.threshold is None else f" (limit {c.threshold:.4g})"
            lines.append(f"  {mark} {c.name}: {value}{limit} {c.detail}".rstrip())
        return "\n".join(lines)


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)]


def live_rate(log: Path | str, window_s: float, now: float | None = None) -> float:
    """Live answers per second over the last `window_s` seconds (from the first answer in it,
    when the traffic started later), every colour together: what a canary step gets its share
    of."""
    if not log_exists(log):
        return 0.0
    now = time.time() if now is None else now
    with read_only(log) as select:
        n, first = select(
            "SELECT count(*), min(time) FROM predictions"
            " WHERE role = 'live' AND time >= ? AND time <= ?",
            (now - window_s, now),
        )[0]
    return n / max(1.0, now - first) if n else 0.0


def window_rows(
    log: Path | str, colour: str, since: float, until: float, model: str | None = None
) -> dict[str, Any]:
    """The colour's live answers and 5xx refusals in [since, until] from the prediction log
    (a SQLite file, or a postgresql:// URL), of one model group if `model` is given (a fleet
    bento); no log file yet: none."""
    if not log_exists(log):
        return {
            "latencies": [],
            "faults": 0,
            "answered": 0,
            "scored": 0,
            "nonfinite": 0,
            "errors": 0,
        }
    of_model, args = ("", ()) if model is None else (" AND model = ?", (model,))
    with read_only(log) as select:
        rows = select(
            "SELECT latency_ms, is_fault, probability, label FROM predictions"
            " WHERE colour = ? AND role = 'live' AND time >= ? AND time <= ?" + of_model,
            (colour, since, until, *args),
        )
        errors = select(
            "SELECT count(*) FROM rejected WHERE colour = ? AND role = 'live' AND status >= 500"
            " AND time >= ? AND time <= ?" + of_model,
            (colour, since, until, *args),
        )[0][0]
    nonfinite = sum(1 for r in rows if r[2] is None or not math.isfinite(r[2]))
    return {
        "latencies": [r[0] for r in rows],
        "faults": sum(1 for r in rows if r[1]),
        "answered": len(rows),
        "scored": sum(1 for r in rows if r[3] != UNSCORED),
        "nonfinite": nonfinite,
        "errors": int(errors),
    }


def analyse(
    log: Path | str,
    colour: str,
    against: str,
    since: float,
    params: DeployParams,
    reference_fault_rate: float | None,
    router_errors: int = 0,
    until: float | None = None,
    model: str | None = None,
) -> Analysis:
    """The verdict on `colour` over [since, until] (see the module docstring); with `model`,
    that group's rows only, against the same group's on `against`."""
    until = time.time() if until is None else until
    mine, theirs = (window_rows(log, c, since, until, model) for c in (colour, against))
    errors = max(mine["errors"], router_errors) + mine["nonfinite"]
    requests = mine["answered"] + errors
    a = Analysis("inconclusive", colour, against, since, until, requests)
    if mine["answered"] < params.min_requests:
        a.reason = (
            f"{mine['answered']} answered requests on {colour} in {until - since:.0f} s, fewer "
            f"than deploy.min_requests={params.min_requests}: no evidence, no promotion"
        )
        return a

    rate = errors / requests if requests else 0.0
    a.checks.append(
        Check(
            "error_rate",
            rate,
            params.max_error_rate,
            rate <= params.max_error_rate,
            f"{errors} of {requests} (service 5xx {mine['errors']}, router {router_errors},"
            f" non-finite {mine['nonfinite']})",
        )
    )
    p99, base = _p99(mine["latencies"]), _p99(theirs["latencies"])
    if base is None:
        a.checks.append(
            Check("p99_latency_ms", p99, None, True, f"no answers from {against} to compare")
        )
    else:
        limit = max(base * params.max_p99_ratio, base + params.p99_slack_ms)
        a.checks.append(
            Check(
                "p99_latency_ms",
                p99,
                limit,
                p99 is not None and p99 <= limit,
                f"{against}: {base:.1f} ms",
            )
        )
    fault_rate = mine["faults"] / mine["scored"] if mine["scored"] else None
    unscored = mine["answered"] - mine["scored"]
    if fault_rate is None:
        a.checks.append(
            Check("fault_rate", None, None, False, f"all {unscored} answers unscored (quality)")
        )
    elif reference_fault_rate is None:
        a.checks.append(
            Check("fault_rate", fault_rate, None, False, "no training fault rate recorded")
        )
    else:
        delta = abs(fault_rate - reference_fault_rate)
        a.checks.append(
            Check(
                "fault_rate_delta",
                delta,
                params.max_fault_rate_delta,
                delta <= params.max_fault_rate_delta,
                f"{fault_rate:.3f} against {reference_fault_rate:.3f} in training"
                + (f" ({unscored} unscored answers left out)" if unscored else ""),
            )
        )
    failed = [c.name for c in a.checks if not c.passed]
    a.verdict = "fail" if failed else "pass"
    a.reason = (
        f"{', '.join(failed)} out of bounds" if failed else f"{mine['answered']} answers in bounds"
    )
    return a


def shadow_agreement(log: Path | str, live: str, shadow: str, since: float = 0.0) -> dict[str, Any]:
    """Shadow answers joined to their live twin by request id and signal position: the share
    with the same label and the mean absolute probability difference."""
    empty = {"shadow_answers": 0, "joined": 0, "same_label": None, "mean_abs_diff": None}
    if not log_exists(log):
        return empty
    with read_only(log) as select:
        n_shadow = select(
            "SELECT count(*) FROM predictions WHERE colour = ? AND role = 'shadow' AND time >= ?",
            (shadow, since),
        )[0][0]
        # the k-th answer of a request on each side: predict_batch gives several per request
        joined = select(
            """
            WITH s AS (SELECT request_id, label, probability,
                         row_number() OVER (PARTITION BY request_id ORDER BY id) AS k
                       FROM predictions WHERE colour = ? AND role = 'shadow' AND time >= ?),
                 l AS (SELECT request_id, label, probability,
                         row_number() OVER (PARTITION BY request_id ORDER BY id) AS k
                       FROM predictions WHERE colour = ? AND role = 'live' AND time >= ?)
            SELECT count(*), sum(CASE WHEN s.label = l.label THEN 1 ELSE 0 END),
                   avg(abs(s.probability - l.probability))
            FROM s JOIN l ON s.request_id = l.request_id AND s.k = l.k
            """,
            (shadow, since, live, since - 60),
        )[0]
    n, same, diff = joined
    return {
        "shadow_answers": int(n_shadow),
        "joined": int(n or 0),
        "same_label": (same / n) if n else None,
        "mean_abs_diff": diff,
    }
