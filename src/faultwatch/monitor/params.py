"""params.yaml:monitor: the window, the reference, the drift tests and their thresholds.

The window is `last` (a duration such as `24h`) before `until` (default: now), or `since` ..
`until`. Times are ISO 8601 (`2026-11-23T10:00:00`, UTC unless it names a zone) or unix
seconds; durations are a number and a unit (s, m, h, d, w) or plain seconds.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator

from faultwatch.errors import ParamsError
from faultwatch.monitor.stattests import STATTESTS
from faultwatch.params import Section

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The drift tests the monitor accepts. Not KS: at thousands of rows per window its p-value
# flags differences far too small to matter (6 false alarms in 20 undrifted windows, MEASURED.md)


def parse_duration(value: str | float | int) -> float:
    """`90`, `90s`, `15m`, `24h`, `7d`, `1w` -> seconds (> 0); anything else is a ValueError."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration: expected e.g. 90s, 15m, 24h, 7d, 1w")
        seconds = float(m.group(1)) * UNITS[m.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be positive")
    return seconds


def parse_time(value: str | float | int) -> float:
    """ISO 8601 (UTC unless a zone is given) or unix seconds -> unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        t = float(value)
    else:
        text = str(value).strip()
        try:
            t = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a time: expected ISO 8601 (2026-11-23T10:00:00) "
                    "or unix seconds"
                ) from None
            t = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"{value!r}: a time must be finite and not before 1970")
    return t


class MonitorParams(Section):
    """The `monitor` section (notebooks/05_monitor.ipynb; `faultwatch monitor`)."""

    # the prediction log: a SQLite path or postgresql://...; null: $FAULTWATCH_PREDICTION_LOG,
    # else reports/serving/predictions.sqlite
    log: str | None = None
    # a fleet's model group (the log's `model`): only its rows (`faultwatch monitor --group`);
    # null: every row. The project's own model, fault_cnn, also takes rows from before fleets.
    model: str | None = None
    last: str | float | None = "24h"
    since: str | float | None = None
    until: str | float | None = None
    roles: list[Literal["live", "shadow", "smoke"]] = Field(default=["live"], min_length=1)
    reference_path: str = "data/prepared/train.parquet"
    # the model whose embedding space the logged embeddings are in (matched to a logged
    # model_version through register_file; other versions are looked up in the BentoML store)
    model_dir: str = "models/fault_cnn"
    register_file: str = "reports/register.json"
    prepare_metrics: str = "reports/metrics/prepare.json"  # the test split's fault ratio
    out_dir: str = "reports/monitor"
    drift_pages: bool = True  # Evidently's HTML pages in out_dir (its import: seconds)
    stattest: str = "psi"
    drift_threshold: float = Field(0.2, gt=0)
    min_rows: int = Field(200, ge=10)
    max_rows: int = Field(20000, ge=100)
    embedding_sample: int = Field(500, ge=20)
    embedding_auc: float = Field(0.7, gt=0.5, le=1.0)
    max_fault_rate_delta: float = Field(0.05, gt=0, lt=1)
    fault_rate_z: float = Field(4.0, gt=0)
    label_delay: str | float = "7d"
    min_labels: int = Field(50, ge=1)
    min_f1: float = Field(0.8, ge=0, le=1)
    examples_per_class: int = Field(2, ge=1)
    seed: int = 0

    @field_validator("stattest")
    @classmethod
    def _known_stattest(cls, v: str) -> str:
        if v not in STATTESTS:
            hint = " (KS raises false alarms at these volumes)" if v.lower() == "ks" else ""
            raise ValueError(
                f"unknown stattest {v!r}{hint}: expected one of {', '.join(STATTESTS)}"
            )
        return v

    @field_validator("last", "label_delay")
    @classmethod
    def _duration(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("since", "until")
    @classmethod
    def _time(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            parse_time(v)
        return v

    def window(self, now: float) -> tuple[float | None, float]:
        """(start, end) in unix seconds; start None: from the first row."""
        end = parse_time(self.until) if self.until is not None else now
        if self.since is not None:
            start: float | None = parse_time(self.since)
        elif self.last is not None:
            start = end - parse_duration(self.last)
        else:
            start = None
        if start is not None and start >= end:
            raise ParamsError(
                f"monitor.since/monitor.last: the window is empty (start {start:.0f} is not "
                f"before monitor.until {end:.0f})"
            )
        return start, end
