"""`PredictionLog`: the log's write API (append, reject, add_labels) over SQLite, in WAL mode.

The SQL and the validation here are shared: `PostgresPredictionLog` (postgres.py) subclasses
this class and replaces only the connection, the transaction and the query (`_transaction`,
`_select`, `_lock_labels`). Durability and concurrency: see the package's docstring.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faultwatch.paths import reports_dir
from faultwatch.serve.predlog.entries import (
    FeedbackError,
    LoggedPrediction,
    PredictionLogError,
    encode_embedding,
    encode_signal,
    mask_url,
)
from faultwatch.serve.predlog.schema import (
    ADDED_COLUMNS,
    FEATURE_COLUMNS,
    INDEXES,
    SCHEMA,
    statements,
)

ENV_PATH = "FAULTWATCH_PREDICTION_LOG"
ENV_SYNC = "FAULTWATCH_PREDICTION_LOG_SYNC"
ENV_TIMEOUT = "FAULTWATCH_PREDICTION_LOG_TIMEOUT"
SYNC_MODES = ("NORMAL", "FULL")
# seconds a write waits for another writer's lock; below the service's 30 s request timeout
DEFAULT_TIMEOUT_S = 10.0
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# ids per `IN (...)` query: far below SQLite's limit on bound parameters (32 766)
ID_CHUNK = 500

PREDICTION_COLUMNS = (
    "time",
    "endpoint",
    "model_version",
    "n",
    "mean",
    "std",
    "min",
    "max",
    "n_nonfinite",
    "probability",
    "label",
    "is_fault",
    "threshold",
    "latency_ms",
    "batch_size",
    "request_id",
    "prediction_id",
    "colour",
    "role",
    "quality",
    *FEATURE_COLUMNS,
    "embedding",
)
INSERT_PREDICTION = (
    f"INSERT INTO predictions ({', '.join(PREDICTION_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in PREDICTION_COLUMNS)})"
)
INSERT_SIGNAL = "INSERT INTO signals (prediction_id, time, n, data) VALUES (?, ?, ?, ?)"
INSERT_LABEL = "INSERT INTO labels (prediction_id, label, time, source) VALUES (?, ?, ?, ?)"
INSERT_REJECTED = (
    "INSERT INTO rejected (time, endpoint, status, reason, detail, body_bytes,"
    " request_id, colour, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def is_postgres_url(target: object) -> bool:
    """Whether `target` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def default_target() -> Path | str:
    """`$FAULTWATCH_PREDICTION_LOG` (a path or a postgresql:// URL), else
    reports/serving/predictions.sqlite under the project root."""
    env = os.environ.get(ENV_PATH)
    if env:
        return env if is_postgres_url(env) else Path(env)
    try:
        return reports_dir() / "serving" / "predictions.sqlite"
    except FileNotFoundError:  # a bento runs outside the project: log beside it
        return Path.cwd() / "predictions.sqlite"


def resolve_target(value: str | None, root: Path) -> Path | str:
    """What a launcher passes on as FAULTWATCH_PREDICTION_LOG: a postgresql:// URL unchanged
    (a str: `Path()` would turn its // into /), a path made absolute (the server runs in
    another folder), nothing: `root`/reports/serving/predictions.sqlite."""
    if not value:
        return root / "reports" / "serving" / "predictions.sqlite"
    return value if is_postgres_url(value) else Path(value).resolve()


def show_target(target: Path | str) -> str:
    """The log `target` names, for messages and printed settings: a URL's password masked."""
    return mask_url(target) if is_postgres_url(target) else str(target)


def default_path() -> Path:
    """The SQLite default of `default_target` (kept for callers that need a file)."""
    target = default_target()
    if isinstance(target, str):
        raise PredictionLogError(f"{ENV_PATH} names a PostgreSQL database, not a file")
    return target


def check_sync(synchronous: str | None) -> str:
    """NORMAL or FULL, from the argument, else FAULTWATCH_PREDICTION_LOG_SYNC."""
    mode = (synchronous or os.environ.get(ENV_SYNC) or "NORMAL").upper()
    if mode not in SYNC_MODES:
        raise ValueError(f"{ENV_SYNC}={mode!r}: expected one of {', '.join(SYNC_MODES)}")
    return mode


def resolve_timeout(timeout_s: float | None) -> float:
    if timeout_s is None:
        return float(os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT_S)
    return timeout_s


def prediction_row(e: LoggedPrediction, now: float, colour: str) -> tuple:
    """The predictions row of `e`, in PREDICTION_COLUMNS order."""
    if e.features is None:
        features: list[float | None] = [None] * len(FEATURE_COLUMNS)
    else:
        features = [float(v) for v in e.features]
        if len(features) != len(FEATURE_COLUMNS):
            raise ValueError(
                f"features: expected {len(FEATURE_COLUMNS)} values "
                f"({', '.join(FEATURE_COLUMNS)}), got {len(features)}"
            )
    s = e.summary
    return (
        now,
        e.endpoint,
        e.model_version,
        s.n,
        s.mean,
        s.std,
        s.min,
        s.max,
        s.n_nonfinite,
        float(e.probability),
        e.label,
        int(e.is_fault),
        float(e.threshold),
        float(e.latency_ms),
        e.batch_size,
        e.request_id,
        e.prediction_id,
        colour,
        e.role,
        e.quality,
        *features,
        None if e.embedding is None else encode_embedding(e.embedding),
    )


def signal_row(e: LoggedPrediction, now: float) -> tuple:
    """The signals row of a sampled entry; its prediction_id is the key."""
    if not e.prediction_id:
        raise ValueError("a sampled signal needs its entry's prediction_id (the signals key)")
    return (e.prediction_id, now, int(np.asarray(e.signal).size), encode_signal(e.signal))


def label_problems(
    items: Sequence[tuple[str, str]], known: set[str], labelled: set[str]
) -> list[FeedbackError]:
    """Every item that breaks a rule, in request order: an id twice in the request or already
    labelled (409 duplicate_label), an id not in the predictions (404 unknown_prediction)."""
    problems, first_at = [], {}
    for i, (pid, _) in enumerate(items):
        loc = ["labels", i, "prediction_id"]
        if pid in first_at:
            problems.append(
                FeedbackError(
                    409,
                    "duplicate_label",
                    loc,
                    f"prediction_id {pid!r} is labelled twice in this request (items "
                    f"{first_at[pid]} and {i}): one label per prediction",
                    i,
                )
            )
            continue
        first_at[pid] = i
        if pid not in known:
            problems.append(
                FeedbackError(
                    404,
                    "unknown_prediction",
                    loc,
                    f"prediction_id {pid!r} is not in the prediction log: only a prediction "
                    "the service answered (and logged) can be labelled",
                    i,
                )
            )
        elif pid in labelled:
            problems.append(
                FeedbackError(
                    409,
                    "duplicate_label",
                    loc,
                    f"prediction_id {pid!r} is labelled already: one label per prediction",
                    i,
                )
            )
    return problems


def ids_in(cursor: Any, table: str, ids: Sequence[str]) -> set[str]:
    """The prediction_ids among `ids` that `table` holds."""
    found: set[str] = set()
    for start in range(0, len(ids), ID_CHUNK):
        chunk = list(ids[start : start + ID_CHUNK])
        marks = ", ".join("?" for _ in chunk)
        rows = cursor.execute(
            f"SELECT prediction_id FROM {table} WHERE prediction_id IN ({marks})", chunk
        ).fetchall()
        found.update(r[0] for r in rows)
    return found


class PredictionLog:
    """Append-only log; thread-safe (one connection behind a lock). A path: SQLite (this
    class); a postgresql:// URL (here, or in $FAULTWATCH_PREDICTION_LOG when `path` is None):
    an instance of the PostgreSQL subclass, with the same methods."""

    def __new__(cls, path: Path | str | None = None, *args: Any, **kwargs: Any):
        if cls is PredictionLog and is_postgres_url(path or default_target()):
            # imported here: psycopg is needed only for a PostgreSQL log
            from faultwatch.serve.predlog.postgres import PostgresPredictionLog

            return super().__new__(PostgresPredictionLog)
        return super().__new__(cls)

    def __init__(
        self,
        path: Path | str | None = None,
        synchronous: str | None = None,
        timeout_s: float | None = None,
        colour: str = "",
    ):
        self.colour = colour
        self.path = Path(path) if path else default_path()
        if {"postgresql:", "postgres:"} & set(self.path.parts):
            # Path("postgresql://u:pw@h/db") is "postgresql:/u:pw@h/db": a file would be made
            shown = re.sub(r":[^:@/]*@", ":***@", str(self.path))
            raise PredictionLogError(
                f"{shown}: a postgresql:// URL made into a file path (Path() drops the //); "
                "pass the URL as a str"
            )
        self.where = str(self.path)  # names the log in messages
        self.synchronous = check_sync(synchronous)
        self.timeout_s = resolve_timeout(timeout_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # autocommit mode; transactions are explicit (BEGIN ... COMMIT) in `_transaction`
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.timeout_s
        )
        mode = self._switch_to_wal()
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: could not switch SQLite to WAL mode (got {mode})")
        self._conn.execute(f"PRAGMA synchronous={self.synchronous}")
        self._create_or_migrate()

    # ------------------------------------------------------------ backend: SQLite
    def _switch_to_wal(self) -> str:
        """`PRAGMA journal_mode=WAL`, retried: when two processes open a new file at once, the
        switch needs an exclusive lock and SQLite answers "database is locked" at once,
        without waiting through the busy timeout. Gives up after `timeout_s`."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.005
        while True:
            try:
                return self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise PredictionLogError(f"{self.where}: could not open the log: {e}") from e
                if time.monotonic() >= deadline:
                    raise PredictionLogError(
                        f"{self.where}: could not switch to WAL mode within "
                        f"{self.timeout_s:g} s: {e}"
                    ) from e
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _create_or_migrate(self) -> None:
        """Tables, missing columns and indexes, in one write transaction: two processes that
        open an old file at once do not both add a column."""

        def work(conn: sqlite3.Connection) -> None:
            for statement in statements(SCHEMA):
                conn.execute(statement)
            for table, columns in ADDED_COLUMNS.items():
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for name, definition in columns.items():
                    if name not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
            for statement in statements(INDEXES):
                conn.execute(statement)

        self._transaction("create or migrate the log", work)

    def _transaction(self, action: str, work: Callable[[Any], Any]) -> Any:
        """`work(cursor)` in one write transaction, committed (durable) before returning.
        A database error becomes PredictionLogError naming the log and `action`; any other
        exception (FeedbackError) rolls back and propagates unchanged."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise PredictionLogError(f"{self.where}: could not {action}: {e}") from e
            try:
                result = work(self._conn)
                self._conn.execute("COMMIT")
                return result
            except BaseException as e:
                if self._conn.in_transaction:  # a failed COMMIT leaves the transaction open
                    self._conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise PredictionLogError(f"{self.where}: could not {action}: {e}") from e
                raise

    def _select(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
        """Column names and rows of one query (`?` placeholders)."""
        with self._lock:
            try:
                cursor = self._conn.execute(sql, params)
                return [d[0] for d in cursor.description], cursor.fetchall()
            except sqlite3.Error as e:
                raise PredictionLogError(f"{self.where}: could not read: {e}") from e

    def _lock_labels(self, cursor: Any) -> None:
        """Serialise label writers; SQLite's BEGIN IMMEDIATE already does."""

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------ the shared API
    def append(self, entries: Iterable[LoggedPrediction]) -> None:
        """Commit `entries` and their sampled signals in one transaction; returns only once
        they are durable. Raises PredictionLogError (nothing written) when they cannot be."""
        now = time.time()
        entries = list(entries)
        rows = [prediction_row(e, now, self.colour) for e in entries]
        signals = [signal_row(e, now) for e in entries if e.signal is not None]
        if not rows:
            return

        def work(cursor: Any) -> None:
            cursor.executemany(INSERT_PREDICTION, rows)
            if signals:
                cursor.executemany(INSERT_SIGNAL, signals)

        self._transaction(f"write {len(rows)} rows", work)

    def reject(
        self,
        endpoint: str,
        status: int,
        reason: str,
        detail: str,
        body_bytes: int | None,
        request_id: str | None = None,
        role: str = "live",
    ) -> None:
        """Commit one refused request (durable before returning, like `append`)."""
        row = (
            time.time(),
            endpoint,
            status,
            reason,
            detail[:500],
            body_bytes,
            request_id,
            self.colour,
            role,
        )
        self._transaction("write 1 rows", lambda cursor: cursor.execute(INSERT_REJECTED, row))

    def add_labels(self, items: Sequence[tuple[str, str]], source: str | None = None) -> int:
        """Store the delayed ground truth of `items` ((prediction_id, label) pairs), all or
        nothing: every item is checked first (see `label_problems`), inside the write
        transaction, and the first bad one raises FeedbackError with nothing written.
        Returns the number of labels stored. The label's class is the service's to check."""
        items = [(str(pid), str(label)) for pid, label in items]
        if not items:
            return 0
        now = time.time()

        def work(cursor: Any) -> int:
            self._lock_labels(cursor)
            ids = list(dict.fromkeys(pid for pid, _ in items))
            problems = label_problems(
                items, ids_in(cursor, "predictions", ids), ids_in(cursor, "labels", ids)
            )
            if problems:
                first = problems[0]
                if len(problems) > 1:
                    first.msg += f" ({len(problems) - 1} more of the {len(items)} items refused)"
                    first.args = (first.msg,)
                raise first
            cursor.executemany(INSERT_LABEL, [(pid, lab, now, source) for pid, lab in items])
            return len(items)

        return self._transaction(f"write {len(items)} labels", work)

    def count(self, table: str = "predictions") -> int:
        """Rows in `table`."""
        if table not in ("predictions", "rejected", "signals", "labels"):
            raise ValueError(f"unknown table {table!r}")
        return self._select(f"SELECT count(*) FROM {table}")[1][0][0]
