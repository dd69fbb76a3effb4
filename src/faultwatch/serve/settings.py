"""The service's settings: every `FAULTWATCH_*` variable the server reads, resolved in one place.

The service resolves them once when it is imported; `faultwatch serve --show-config` prints
the same object, so what a server will do can be read before it starts. The input limits
(`FAULTWATCH_MIN_LENGTH` ...) depend on the served model's metadata too: see
`faultwatch.serve.schema.ServingLimits`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultwatch.errors import FaultwatchError

BATCHING_MODES = ("queue", "bentoml")
SYNC_MODES = ("NORMAL", "FULL")
COLOUR_RULE = re.compile(r"[A-Za-z0-9_-]{0,32}")


class SettingsError(FaultwatchError):
    """A FAULTWATCH_* variable holds a value the service cannot use."""


@dataclass(frozen=True)
class ServeSettings:
    # store entry to serve; None: the bento's `model_tag` build argument, else fault_cnn:latest
    model_tag: str | None = None
    # the serving instance's name (blue, green), written in every prediction log row; "" alone
    colour: str = ""
    # the prediction log: a SQLite file or a postgresql:// URL (kept a str);
    # None: faultwatch.serve.predlog.default_target()
    prediction_log: Path | str | None = None
    prediction_log_sync: str = "NORMAL"  # NORMAL or FULL (see faultwatch.serve.predlog)
    # seconds a prediction waits for a locked log before it is answered 503
    prediction_log_timeout_s: float = 10.0
    batching: str = "queue"  # "queue" (faultwatch.serve.batching) or "bentoml" (adaptive)
    # signals per model call. Under load a batch is everything that queued during the previous
    # call; 64 is above the concurrency the service is tested at (32), and this CNN costs no
    # more per signal at batch 64 than at 32 on CPU (0.3-0.4 ms).
    batch_size: int = 64
    # signals waiting beyond this are refused with 503: about 1 s of model time on 1 CPU thread
    max_queue: int = 2048
    # only for batching=bentoml: BentoML answers 503 to a request it expects to wait longer.
    # At c=32 p99 reached 0.4-0.7 s on a busy 2-core machine, so 2 s leaves room; 20 ms turned
    # 39 of 40 burst requests into 503s (shared/MEASURED.md).
    max_latency_ms: int = 2000
    torch_threads: int = 1
    # OpenTelemetry spans cost CPU on every request and go nowhere unless an exporter is set up
    trace_predictions: bool = False
    # every prediction and every rejection is in the prediction log; the access log doubles
    # that and costs ~15 % of the request rate (shared/MEASURED.md)
    access_log: bool = False
    # an oversized body is read and discarded up to this many bytes, so that a client which
    # sends its whole body before reading gets the 413; beyond it the connection is closed
    max_drain_bytes: int = 64 * 1024 * 1024
    # the share of answered signals whose raw values are logged (table `signals`), 0 to 1: what
    # production data can be labelled and retrained on. A 1000-sample signal costs ~3 KB
    # compressed, so 1 logs everything at ~3 KB per prediction.
    log_signals: float = 0.0
    # seconds between two reads of the labels for faultwatch_realised_f1 at /metrics (a
    # /feedback the process answers refreshes it at once)
    realised_f1_refresh_s: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f"FAULTWATCH_{f.name.upper()}".removesuffix("_S")
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(name, raw, f.default)
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if not COLOUR_RULE.fullmatch(self.colour):
            raise SettingsError(
                f"FAULTWATCH_COLOUR={self.colour!r}: expected at most 32 characters of "
                "A-Z a-z 0-9 _ - (e.g. blue, green)"
            )
        if self.batching not in BATCHING_MODES:
            raise SettingsError(
                f"FAULTWATCH_BATCHING={self.batching!r}: expected {' or '.join(BATCHING_MODES)}"
            )
        if self.prediction_log_sync.upper() not in SYNC_MODES:
            raise SettingsError(
                f"FAULTWATCH_PREDICTION_LOG_SYNC={self.prediction_log_sync!r}: expected "
                f"{' or '.join(SYNC_MODES)}"
            )
        for name in ("batch_size", "max_queue", "torch_threads", "max_drain_bytes"):
            if getattr(self, name) < 1:
                raise SettingsError(f"FAULTWATCH_{name.upper()} must be 1 or more")
        if not 0.0 <= self.log_signals <= 1.0:
            raise SettingsError(
                f"FAULTWATCH_LOG_SIGNALS={self.log_signals!r}: expected a fraction from 0 to 1 "
                "(the share of signals logged raw; 0 logs none, 1 all)"
            )
        if not self.realised_f1_refresh_s > 0:
            raise SettingsError(
                f"FAULTWATCH_REALISED_F1_REFRESH={self.realised_f1_refresh_s!r}: expected "
                "seconds, more than 0"
            )
        if self.batch_size > self.max_queue:
            raise SettingsError(
                f"FAULTWATCH_BATCH_SIZE ({self.batch_size}) must not exceed "
                f"FAULTWATCH_MAX_QUEUE ({self.max_queue})"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, keyed by the environment variable that sets each value."""
        return {
            f"FAULTWATCH_{f.name.upper()}".removesuffix("_S"): (
                str(v) if isinstance(v := getattr(self, f.name), Path) else v
            )
            for f in dataclasses.fields(self)
        }


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("0", "1", "true", "false"):
                raise ValueError("expected 0 or 1")
            return raw.lower() in ("1", "true")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if value != value:  # NaN passes every range check
                raise ValueError("expected a number, got NaN")
            return value
    except ValueError as e:
        raise SettingsError(f"{name}={raw!r}: {e}") from None
    if name == "FAULTWATCH_PREDICTION_LOG":
        return raw if raw.startswith(("postgresql://", "postgres://")) else Path(raw)
    return raw
