"""The prediction log: one SQLite row per answered prediction, one per rejected request.

Durability: every row is committed before the service answers, in WAL mode. With
`synchronous=NORMAL` (the default) a commit has reached the WAL file through `write()` when
it returns, so a crash or kill of the serving process, or of its container, loses no
acknowledged row; only a kernel crash or power cut before the OS writes its page cache back
can lose the last commits (never corrupt the file). `synchronous=FULL` also survives that, at
one fsync per commit: 4 ms on this machine's disk against 0.03 ms, more than the model costs.
The batched endpoint writes one transaction per batch, so FULL costs one fsync per batch.
Choose with `FAULTWATCH_PREDICTION_LOG_SYNC` (NORMAL or FULL).

A row that cannot be committed (the file locked by another writer for longer than
`FAULTWATCH_PREDICTION_LOG_TIMEOUT` seconds, default 10; a full or read-only disk) raises
`PredictionLogError`, and the service answers 503 instead of the prediction: no answer leaves
that the log does not hold.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faultwatch.errors import FaultwatchError
from faultwatch.paths import reports_dir

ENV_PATH = "FAULTWATCH_PREDICTION_LOG"
ENV_SYNC = "FAULTWATCH_PREDICTION_LOG_SYNC"
ENV_TIMEOUT = "FAULTWATCH_PREDICTION_LOG_TIMEOUT"
SYNC_MODES = ("NORMAL", "FULL")
# seconds a write waits for another writer's lock; below the service's 30 s request timeout
DEFAULT_TIMEOUT_S = 10.0


class PredictionLogError(FaultwatchError):
    """Rows could not be committed to the prediction log."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,            -- unix seconds, when the row was written
    endpoint TEXT NOT NULL,
    model_version TEXT NOT NULL,
    n INTEGER NOT NULL,            -- input summary: length and moments of the raw signal
    mean REAL, std REAL, min REAL, max REAL,
    n_nonfinite INTEGER NOT NULL,
    probability REAL NOT NULL,
    label TEXT NOT NULL,
    is_fault INTEGER NOT NULL,
    threshold REAL NOT NULL,
    latency_ms REAL NOT NULL,      -- validated request to committed row (queue, batch, model)
    batch_size INTEGER NOT NULL    -- signals in the model call that answered it
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,          -- the error type, e.g. finite_number, too_long, body_too_large
    detail TEXT,                   -- the message the client got (truncated)
    body_bytes INTEGER
);
"""


def default_path() -> Path:
    """`$FAULTWATCH_PREDICTION_LOG`, else reports/serving/predictions.sqlite under the root."""
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(env)
    try:
        return reports_dir() / "serving" / "predictions.sqlite"
    except FileNotFoundError:  # a bento runs outside the project: log beside it
        return Path.cwd() / "predictions.sqlite"


@dataclass(frozen=True)
class InputSummary:
    n: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    n_nonfinite: int

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> InputSummary:
        x = np.asarray(values, dtype="float64")
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            return cls(int(x.size), None, None, None, None, int(x.size))
        return cls(
            n=int(x.size),
            mean=float(finite.mean()),
            std=float(finite.std()),
            min=float(finite.min()),
            max=float(finite.max()),
            n_nonfinite=int(x.size - finite.size),
        )


@dataclass(frozen=True)
class LoggedPrediction:
    endpoint: str
    model_version: str
    summary: InputSummary
    probability: float
    label: str
    is_fault: bool
    threshold: float
    latency_ms: float
    batch_size: int


class PredictionLog:
    """Append-only SQLite log; thread-safe (one connection behind a lock)."""

    def __init__(
        self,
        path: Path | str | None = None,
        synchronous: str | None = None,
        timeout_s: float | None = None,
    ):
        self.path = Path(path) if path else default_path()
        self.synchronous = (synchronous or os.environ.get(ENV_SYNC) or "NORMAL").upper()
        if self.synchronous not in SYNC_MODES:
            raise ValueError(
                f"{ENV_SYNC}={self.synchronous!r}: expected one of {', '.join(SYNC_MODES)}"
            )
        if timeout_s is None:
            timeout_s = float(os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT_S)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # autocommit mode; transactions are explicit (BEGIN ... COMMIT) in `_write`
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=timeout_s
        )
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: could not switch SQLite to WAL mode (got {mode})")
        self._conn.execute(f"PRAGMA synchronous={self.synchronous}")
        self._conn.executescript(SCHEMA)

    def _write(self, sql: str, rows: Iterable[tuple]) -> None:
        rows = list(rows)
        if not rows:
            return
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise PredictionLogError(
                    f"{self.path}: could not write {len(rows)} rows: {e}"
                ) from e
            try:
                self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException as e:
                if self._conn.in_transaction:  # a failed COMMIT leaves the transaction open
                    self._conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise PredictionLogError(
                        f"{self.path}: could not write {len(rows)} rows: {e}"
                    ) from e
                raise

    def append(self, entries: Iterable[LoggedPrediction]) -> None:
        """Commit `entries` in one transaction; returns only once they are durable."""
        now = time.time()
        self._write(
            "INSERT INTO predictions (time, endpoint, model_version, n, mean, std, min, max,"
            " n_nonfinite, probability, label, is_fault, threshold, latency_ms, batch_size)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    now,
                    e.endpoint,
                    e.model_version,
                    e.summary.n,
                    e.summary.mean,
                    e.summary.std,
                    e.summary.min,
                    e.summary.max,
                    e.summary.n_nonfinite,
                    e.probability,
                    e.label,
                    int(e.is_fault),
                    e.threshold,
                    e.latency_ms,
                    e.batch_size,
                )
                for e in entries
            ),
        )

    def reject(
        self, endpoint: str, status: int, reason: str, detail: str, body_bytes: int | None
    ) -> None:
        self._write(
            "INSERT INTO rejected (time, endpoint, status, reason, detail, body_bytes)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(time.time(), endpoint, status, reason, detail[:500], body_bytes)],
        )

    def count(self, table: str = "predictions") -> int:
        if table not in ("predictions", "rejected"):
            raise ValueError(f"unknown table {table!r}")
        with self._lock:
            return self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
