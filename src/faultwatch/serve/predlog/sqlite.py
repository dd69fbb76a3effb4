"""`SqlitePredictionLog`: the prediction log in a SQLite file, in WAL mode (the embedded
default). The SQL and the validation are PredictionLog's (log.py); this backend gives the
connection, the transaction and the query. Durability and concurrency: see the package's
docstring.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from faultwatch.serve.predlog.entries import PredictionLogError
from faultwatch.serve.predlog.log import PredictionLog
from faultwatch.serve.predlog.schema import ADDED_COLUMNS, INDEXES, SCHEMA, statements
from faultwatch.serve.predlog.target import check_sync, default_path, resolve_timeout


class SqlitePredictionLog(PredictionLog):
    """The prediction log in a SQLite file (None: the default path); one connection."""

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
