"""`PostgresPredictionLog`: the same log in a PostgreSQL database, for several replicas behind
one router (`FAULTWATCH_PREDICTION_LOG=postgresql://user:password@host:port/db`).

One connection behind a lock, in autocommit mode with explicit transactions; the session sets
`synchronous_commit = on` whatever the server's default, so a COMMIT has reached the server's
WAL on disk when it returns (as SQLite FULL), and `lock_timeout` to the log's timeout. A broken
connection (server restarted) is replaced on the next write; that write, and every write while
the server is unreachable, raises PredictionLogError naming the URL with its password masked.
Tables are created (or columns added) under a transaction-scoped advisory lock, so servers that
start at once do not race on CREATE TABLE.

psycopg is imported by the functions that connect, not with this module: it costs 0.4 s of
import, which a process with a SQLite log (the default) does not pay.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from faultwatch.serve.predlog.entries import PredictionLogError, mask_url
from faultwatch.serve.predlog.log import PredictionLog
from faultwatch.serve.predlog.schema import ADDED_COLUMNS, INDEXES, SCHEMA, postgres_ddl, statements
from faultwatch.serve.predlog.target import check_sync, default_target, resolve_timeout

if TYPE_CHECKING:
    import psycopg

Select = Callable[..., list[tuple]]

# pg_advisory_xact_lock keys (any two constants that no other application of the database uses)
SCHEMA_LOCK = 0x6661756C74  # "fault"
LABELS_LOCK = 0x6661756C75


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    found = re.search(r"(?:^|&)password=([^&]*)", parts.query)
    return parts.password or (found.group(1) if found else None)


class _Cursor:
    """A psycopg cursor that takes the shared SQL's `?` placeholders."""

    def __init__(self, cursor: psycopg.Cursor):
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self._cursor.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(sql.replace("?", "%s"), rows)


class PostgresPredictionLog(PredictionLog):
    """The prediction log in PostgreSQL: PredictionLog's methods and SQL, its own connection."""

    def __init__(
        self,
        path: str | None = None,
        synchronous: str | None = None,
        timeout_s: float | None = None,
        colour: str = "",
    ):
        target = path or default_target()
        if isinstance(target, Path):
            raise ValueError(f"{target}: not a postgresql:// URL")
        self.url = target
        self.path = None
        self.where = mask_url(self.url)
        self.colour = colour
        # SQLite's setting, checked for the same typos; PostgreSQL commits are FULL-durable
        self.synchronous = check_sync(synchronous)
        self.timeout_s = resolve_timeout(timeout_s)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._create_or_migrate()

    def _mask(self, error: Exception) -> str:
        text = str(error).strip()
        password = _password(self.url)
        return text.replace(password, "***") if password else text

    def _connection(self) -> psycopg.Connection:
        """The open connection, (re)connecting when there is none or it broke."""
        import psycopg

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, math.ceil(self.timeout_s))
            )
        except psycopg.Error as e:
            raise PredictionLogError(f"{self.where}: could not connect: {self._mask(e)}") from e
        try:
            conn.execute("SET synchronous_commit = on")
            conn.execute(f"SET lock_timeout = {int(self.timeout_s * 1000)}")
        except psycopg.Error as e:
            conn.close()
            raise PredictionLogError(f"{self.where}: could not set up: {self._mask(e)}") from e
        self._conn = conn
        return conn

    def _create_or_migrate(self) -> None:
        """Tables, missing columns and indexes, under an advisory lock: one server at a time."""

        def work(cursor: _Cursor) -> None:
            cursor.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            for statement in statements(postgres_ddl(SCHEMA)):
                cursor.execute(statement)
            for table, columns in ADDED_COLUMNS.items():
                have = {
                    row[0]
                    for row in cursor.execute(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_schema = current_schema() AND table_name = ?",
                        (table,),
                    ).fetchall()
                }
                for name, definition in columns.items():
                    if name not in have:
                        cursor.execute(
                            f"ALTER TABLE {table} ADD COLUMN {name} {postgres_ddl(definition)}"
                        )
            for statement in statements(INDEXES):
                cursor.execute(statement)

        self._transaction("create or migrate the log", work)

    def _transaction(self, action: str, work: Callable[[Any], Any]) -> Any:
        import psycopg

        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cursor:
                    return work(_Cursor(cursor))
            except psycopg.Error as e:
                raise PredictionLogError(
                    f"{self.where}: could not {action}: {self._mask(e)}"
                ) from e

    def _select(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
        import psycopg

        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cursor:
                    cursor.execute(sql.replace("?", "%s"), params)
                    return [d.name for d in cursor.description], cursor.fetchall()
            except psycopg.Error as e:
                raise PredictionLogError(f"{self.where}: could not read: {self._mask(e)}") from e

    def _lock_labels(self, cursor: _Cursor) -> None:
        """Two servers labelling the same id at once: the second sees the first's label."""
        cursor.execute("SELECT pg_advisory_xact_lock(?)", (LABELS_LOCK,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@contextmanager
def read_only_postgres(url: str, timeout_s: float) -> Iterator[Select]:
    """`select(sql, params) -> rows` on a read-only session of `url`, for the `with` block: for
    readers that bring their own SQL (the deploy analysis); nothing is created or migrated.
    The shared SQL's `?` placeholders are translated. Errors are PredictionLogError naming
    the URL with its password masked."""
    import psycopg

    where = mask_url(url)

    def masked(e: Exception) -> str:
        text, password = str(e).strip(), _password(url)
        return text.replace(password, "***") if password else text

    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, math.ceil(timeout_s)))
    except psycopg.Error as e:
        raise PredictionLogError(f"{where}: could not connect: {masked(e)}") from e

    def select(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            # `%` is psycopg's placeholder character: a literal one is doubled
            return conn.execute(sql.replace("%", "%%").replace("?", "%s"), params).fetchall()
        except psycopg.Error as e:
            raise PredictionLogError(f"{where}: could not read: {masked(e)}") from e

    try:
        try:
            conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as e:
            raise PredictionLogError(f"{where}: could not set up: {masked(e)}") from e
        yield select
    finally:
        conn.close()
