"""`PredictionLog`: the log's write API (append, reject, add_labels, count), the same SQL and
validation for both backends.

A backend (sqlite.py, postgres.py) subclasses it and gives only the connection: how a write
transaction runs (`_transaction`), how a query runs (`_select`), how label writers are
serialised (`_lock_labels`), how the tables are created or migrated, and `close`.
`faultwatch.serve.predlog.open_log` picks the backend from the target. Durability and
concurrency: see the package's docstring.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from faultwatch.features import channel_feature_names
from faultwatch.serve.predlog.entries import (
    FeedbackError,
    LoggedPrediction,
    encode_embedding,
    encode_signal,
)
from faultwatch.serve.predlog.schema import FEATURE_COLUMNS, insert_sql, written

# ids per `IN (...)` query: far below SQLite's limit on bound parameters (32 766)
ID_CHUNK = 500
PREDICTION_COLUMNS = written("predictions")
INSERT_PREDICTION = insert_sql("predictions")
INSERT_SIGNAL = insert_sql("signals")
INSERT_LABEL = insert_sql("labels")
INSERT_REJECTED = insert_sql("rejected")
# a /predict request sent again with its X-Request-ID (the router retries one whose server died
# before answering): its earlier live row, written but never answered, is replaced
_RETRIED = "request_id = ? AND role = 'live' AND endpoint = 'predict'"
DELETE_RETRIED = (
    f"DELETE FROM signals WHERE prediction_id IN (SELECT prediction_id FROM predictions WHERE "
    f"{_RETRIED})",
    f"DELETE FROM predictions WHERE {_RETRIED}",
)


def row(table: str, values: dict[str, Any]) -> tuple:
    """`values` (one per written column of `table`, by name) in the table's column order."""
    return tuple(values[c] for c in written(table))


def _features(e: LoggedPrediction) -> tuple[list[float | None], str | None]:
    """(the FEATURE_COLUMNS values, the channel_features JSON) of `e`: a univariate entry's
    features go to the columns; a multichannel entry's, by name (`rms[x]`), to the JSON, and
    the columns are NULL."""
    empty: list[float | None] = [None] * len(FEATURE_COLUMNS)
    if e.features is None:
        return empty, None
    features = [float(v) for v in e.features]
    names = channel_feature_names(FEATURE_COLUMNS, e.channels)
    if len(features) != len(names):
        raise ValueError(
            f"features: expected {len(names)} values ({', '.join(names[:9])}"
            f"{', ...' if len(names) > 9 else ''}), got {len(features)}"
        )
    if e.channels is None:
        return list(features), None
    return empty, json.dumps(dict(zip(names, features, strict=True)))


def prediction_row(e: LoggedPrediction, now: float, colour: str) -> tuple:
    """The predictions row of `e`, in PREDICTION_COLUMNS order."""
    features, channel_features = _features(e)
    s = e.summary
    values: dict[str, Any] = {
        "time": now,
        "endpoint": e.endpoint,
        "model_version": e.model_version,
        "n": s.n,
        "mean": s.mean,
        "std": s.std,
        "min": s.min,
        "max": s.max,
        "n_nonfinite": s.n_nonfinite,
        "probability": float(e.probability),
        "label": e.label,
        "is_fault": int(e.is_fault),
        "threshold": float(e.threshold),
        "latency_ms": float(e.latency_ms),
        "batch_size": e.batch_size,
        "request_id": e.request_id,
        "prediction_id": e.prediction_id,
        "colour": colour,
        "role": e.role,
        "quality": e.quality,
        **dict(zip(FEATURE_COLUMNS, features, strict=True)),
        "embedding": None if e.embedding is None else encode_embedding(e.embedding),
        "channels": None if e.channels is None else json.dumps(list(e.channels)),
        "channel_features": channel_features,
        "model": e.model,
    }
    return row("predictions", values)


def signal_row(e: LoggedPrediction, now: float) -> tuple:
    """The signals row of a sampled entry; its prediction_id is the key."""
    if not e.prediction_id:
        raise ValueError("a sampled signal needs its entry's prediction_id (the signals key)")
    x = np.asarray(e.signal)
    if (x.ndim == 2) != (e.channels is not None) or (x.ndim == 2 and x.shape[0] != len(e.channels)):
        raise ValueError(f"a sampled signal of shape {x.shape} for channels {e.channels}")
    values = {
        "prediction_id": e.prediction_id,
        "time": now,
        "n": int(x.shape[-1]),
        "data": encode_signal(x),
        "channels": None if e.channels is None else len(e.channels),
    }
    return row("signals", values)


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
    return set(_select_ids(cursor, f"SELECT prediction_id FROM {table}", ids))


def models_of(cursor: Any, ids: Sequence[str]) -> dict[str, str | None]:
    """The model group that answered each of `ids` the predictions hold (None: logged by a
    single-model service)."""
    return dict(_select_ids(cursor, "SELECT prediction_id, model FROM predictions", ids))


def _select_ids(cursor: Any, select: str, ids: Sequence[str]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(ids), ID_CHUNK):
        chunk = list(ids[start : start + ID_CHUNK])
        marks = ", ".join("?" for _ in chunk)
        rows = cursor.execute(f"{select} WHERE prediction_id IN ({marks})", chunk).fetchall()
        found.extend(r[0] if len(r) == 1 else tuple(r) for r in rows)
    return found


def class_problems(
    items: Sequence[tuple[str, str]],
    answered_by: dict[str, str | None],
    classes_of: Callable[[str | None], Sequence[str]],
) -> list[FeedbackError]:
    """Every item whose label is not a class of the model group that answered its prediction
    (422 not_a_class, naming the group): in a fleet, a label is checked against its own
    group's classes, not any group's."""
    problems = []
    for i, (pid, lab) in enumerate(items):
        if pid not in answered_by:
            continue  # label_problems names it
        group = answered_by[pid]
        classes = classes_of(group)
        if lab not in classes:
            who = f"model {group}" if group is not None else "the model"
            problems.append(
                FeedbackError(
                    422,
                    "not_a_class",
                    ["labels", i, "label"],
                    f"{lab!r} is not a class of {who}, which answered prediction_id {pid!r}: "
                    "expected one of " + ", ".join(map(repr, classes)),
                    i,
                )
            )
    return problems


class PredictionLog(ABC):
    """Append-only log; thread-safe (one connection behind a lock). Opened by `open_log`,
    which returns the backend the target names (SqlitePredictionLog, PostgresPredictionLog)."""

    colour: str  # the serving instance's colour, written in every row
    where: str  # names the log in messages (a URL's password masked)
    synchronous: str  # NORMAL or FULL
    timeout_s: float

    # ------------------------------------------------------------ what a backend gives
    @abstractmethod
    def _transaction(self, action: str, work: Callable[[Any], Any]) -> Any:
        """`work(cursor)` in one write transaction, committed (durable) before returning; a
        database error becomes PredictionLogError naming the log and `action`."""

    @abstractmethod
    def _select(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
        """Column names and rows of one query (`?` placeholders)."""

    @abstractmethod
    def _lock_labels(self, cursor: Any) -> None:
        """Serialise label writers inside the transaction of `add_labels`."""

    @abstractmethod
    def close(self) -> None: ...

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
        retried = [
            (e.request_id,)
            for e in entries
            if e.request_id and e.endpoint == "predict" and e.role == "live"
        ]

        def work(cursor: Any) -> None:
            for delete in DELETE_RETRIED if retried else ():
                cursor.executemany(delete, retried)
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
        model: str | None = None,
    ) -> None:
        """Commit one refused request (durable before returning, like `append`); `model`: the
        group it named (a fleet bento), when known."""
        values = {
            "time": time.time(),
            "endpoint": endpoint,
            "status": status,
            "reason": reason,
            "detail": detail[:500],
            "body_bytes": body_bytes,
            "request_id": request_id,
            "colour": self.colour,
            "role": role,
            "model": model,
        }
        rejected = row("rejected", values)
        self._transaction("write 1 rows", lambda cursor: cursor.execute(INSERT_REJECTED, rejected))

    def add_labels(
        self,
        items: Sequence[tuple[str, str]],
        source: str | None = None,
        classes_of: Callable[[str | None], Sequence[str]] | None = None,
        labeller: str | None = None,
    ) -> int:
        """Store the delayed ground truth of `items` ((prediction_id, label) pairs), all or
        nothing: every item is checked first (see `label_problems`), inside the write
        transaction, and the first bad one raises FeedbackError with nothing written.
        Returns the number of labels stored. The label's class is the service's to check:
        `classes_of(group)` gives the classes of the group that answered a prediction (a
        fleet; see `class_problems`), else the service checked them before. `labeller`: who
        gave them (the name of the request's bearer token), kept beside each label."""
        items = [(str(pid), str(label)) for pid, label in items]
        if not items:
            return 0
        now = time.time()

        def work(cursor: Any) -> int:
            self._lock_labels(cursor)
            ids = list(dict.fromkeys(pid for pid, _ in items))
            answered_by = models_of(cursor, ids)
            problems = label_problems(items, set(answered_by), ids_in(cursor, "labels", ids))
            if classes_of is not None:
                problems += class_problems(items, answered_by, classes_of)
                problems.sort(key=lambda p: p.index)
            if problems:
                first = problems[0]
                if len(problems) > 1:
                    first.msg += f" ({len(problems) - 1} more of the {len(items)} items refused)"
                    first.args = (first.msg,)
                raise first
            labels = [
                row(
                    "labels",
                    {
                        "prediction_id": pid,
                        "label": lab,
                        "time": now,
                        "source": source,
                        "labeller": labeller,
                    },
                )
                for pid, lab in items
            ]
            cursor.executemany(INSERT_LABEL, labels)
            return len(items)

        return self._transaction(f"write {len(items)} labels", work)

    def count(self, table: str = "predictions") -> int:
        """Rows in `table`."""
        if table not in ("predictions", "rejected", "signals", "labels"):
            raise ValueError(f"unknown table {table!r}")
        return self._select(f"SELECT count(*) FROM {table}")[1][0][0]
