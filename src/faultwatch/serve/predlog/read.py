"""The read side of the prediction log, for the monitor, the traffic tests and retraining:
one DataFrame (or array) per question, the same from SQLite and PostgreSQL.

`target` is a path, a postgresql:// URL, None ($FAULTWATCH_PREDICTION_LOG, else the default
file), or an open PredictionLog (its connection is used, e.g. inside the service). Windows are
[start, end) in unix seconds on the row's `time`. pandas is imported by these functions only:
the service's image has no pandas, and it never reads the log this way.

`read_only(target)` is for readers that bring their own SQL (the deploy analysis): one query
helper over either backend that creates, migrates and locks nothing (SQLite opened `mode=ro`,
a PostgreSQL session in read-only mode); `log_exists` tells "no log there yet" apart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faultwatch.serve.predlog.entries import PredictionLogError, decode_embedding, decode_signal
from faultwatch.serve.predlog.factory import open_log
from faultwatch.serve.predlog.log import ID_CHUNK, PredictionLog
from faultwatch.serve.predlog.postgres import read_only_postgres
from faultwatch.serve.predlog.schema import FEATURE_COLUMNS
from faultwatch.serve.predlog.target import default_target, is_postgres_url, resolve_timeout

if TYPE_CHECKING:
    import pandas as pd

Target = PredictionLog | Path | str | None

PREDICTION_FIELDS = (
    "time",
    "model_version",
    "model",  # the group; None: a row from before fleets
    "endpoint",
    "colour",
    "role",
    "prediction_id",
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
    "quality",
    "channels",  # JSON list of names; None: univariate
    "channel_features",  # JSON {"rms[x]": ...}; None: univariate (see features_frame)
    *FEATURE_COLUMNS,
)
FLOAT_FIELDS = (
    "time",
    "mean",
    "std",
    "min",
    "max",
    "probability",
    "threshold",
    "latency_ms",
    *FEATURE_COLUMNS,
    "label_time",
)
REJECTED_FIELDS = ("time", "endpoint", "status", "reason", "colour", "role", "model")


@contextmanager
def opened(target: Target) -> Iterator[PredictionLog]:
    """The log `target` names, opened for the `with` block (or `target` itself, left open).
    A SQLite file that does not exist is an error, not a new empty log."""
    if isinstance(target, PredictionLog):
        yield target
        return
    target = target or default_target()
    if not is_postgres_url(target) and not Path(target).is_file():
        raise PredictionLogError(f"{target}: no prediction log there (no such file)")
    log = open_log(target)
    try:
        yield log
    finally:
        log.close()


def log_exists(target: Path | str) -> bool:
    """Whether there is a log to read: a SQLite file that exists; a PostgreSQL URL always (an
    unreachable server is an error when read, not an empty log)."""
    return is_postgres_url(target) or Path(target).is_file()


@contextmanager
def read_only(
    target: Path | str, timeout_s: float | None = None
) -> Iterator[Callable[..., list[tuple]]]:
    """`select(sql, params=()) -> rows` over the log `target` names, for the `with` block: SQL
    in SQLite's dialect with `?` placeholders (translated for PostgreSQL); keep to what both
    run (no `sum(a = b)`: PostgreSQL has no sum of booleans). Opens nothing for writing, so
    it neither creates a missing log nor waits for a writer's lock; a missing SQLite file is
    a PredictionLogError (check `log_exists` first). `timeout_s`: the log's timeout
    (FAULTWATCH_PREDICTION_LOG_TIMEOUT, default 10 s), for a busy file or a connection."""
    timeout_s = resolve_timeout(timeout_s)
    if is_postgres_url(target):
        with read_only_postgres(str(target), timeout_s) as select:
            yield select
        return
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error as e:
        raise PredictionLogError(f"{target}: could not open the prediction log: {e}") from e

    def select(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise PredictionLogError(f"{target}: could not read: {e}") from e

    try:
        yield select
    finally:
        conn.close()


def _where(
    column: str, start: float | None, end: float | None, roles: Sequence[str] | None = None
) -> tuple[str, list[Any]]:
    """A WHERE clause for the window [start, end) on `column` and the roles (None: all)."""
    clauses, params = [], []
    if start is not None:
        clauses.append(f"{column} >= ?")
        params.append(float(start))
    if end is not None:
        clauses.append(f"{column} < ?")
        params.append(float(end))
    if roles is not None:
        roles = [roles] if isinstance(roles, str) else list(roles)
        clauses.append(f"p.role IN ({', '.join('?' for _ in roles)})" if roles else "1 = 0")
        params.extend(roles)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _frame(columns: list[str], rows: list[tuple]) -> pd.DataFrame:
    """Rows as a DataFrame with float columns (None -> NaN), ints and a boolean is_fault."""
    import pandas as pd

    df = pd.DataFrame.from_records(rows, columns=columns)
    for name in columns:
        if name in FLOAT_FIELDS:
            df[name] = df[name].astype("float64")
        elif name in ("n", "n_nonfinite", "status"):
            df[name] = df[name].astype("int64")
        elif name == "is_fault":
            df[name] = df[name].astype(bool)
    return df


def read_predictions(
    target: Target = None,
    start: float | None = None,
    end: float | None = None,
    roles: Sequence[str] | None = ("live",),
) -> pd.DataFrame:
    """One row per logged prediction in [start, end) of `roles` (None: all), oldest first:
    PREDICTION_FIELDS, then `true_label` and `label_time` from the labels (missing: none yet).
    The FEATURES columns are NaN for rows written without them, and for multichannel rows,
    whose features are in `channel_features` (as JSON: `features_frame` makes them columns)."""
    where, params = _where("p.time", start, end, roles)
    fields = ", ".join(f"p.{f}" for f in PREDICTION_FIELDS)
    sql = (
        f"SELECT {fields}, l.label AS true_label, l.time AS label_time FROM predictions p"
        f" LEFT JOIN labels l ON l.prediction_id = p.prediction_id{where} ORDER BY p.time, p.id"
    )
    with opened(target) as log:
        return _frame(*log._select(sql, params))


def read_embeddings(target: Target, prediction_ids: Sequence[str]) -> np.ndarray:
    """(len(prediction_ids), d) float64 embeddings, rows in the order of `prediction_ids`; a row
    of NaN where the prediction was logged without one. An id not in the log, or two sizes of
    embedding (two models), raise ValueError naming them."""
    ids = [str(i) for i in prediction_ids]
    found: dict[str, bytes | None] = {}
    with opened(target) as log:
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            _, rows = log._select(
                f"SELECT prediction_id, embedding FROM predictions WHERE prediction_id IN ({marks})",
                chunk,
            )
            found.update((pid, None if blob is None else bytes(blob)) for pid, blob in rows)
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(repr(i) for i in missing[:5])
        raise ValueError(f"{len(missing)} prediction_id(s) not in the prediction log: {shown}")
    vectors = {pid: decode_embedding(blob) for pid, blob in found.items() if blob is not None}
    sizes = {v.size: pid for pid, v in vectors.items()}
    if len(sizes) > 1:
        named = ", ".join(f"{d} ({pid!r})" for d, pid in sizes.items())
        raise ValueError(f"embeddings of different sizes (two models?): {named}")
    d = next(iter(sizes), 0)
    out = np.full((len(ids), d), np.nan)
    for row, pid in enumerate(ids):
        if pid in vectors:
            out[row] = vectors[pid]
    return out


def read_rejected(
    target: Target = None, start: float | None = None, end: float | None = None
) -> pd.DataFrame:
    """One row per refused request in [start, end), oldest first: REJECTED_FIELDS."""
    where, params = _where("p.time", start, end)
    sql = f"SELECT {', '.join(f'p.{f}' for f in REJECTED_FIELDS)} FROM rejected p{where}"
    with opened(target) as log:
        return _frame(*log._select(sql + " ORDER BY p.time, p.id", params))


def read_signals(
    target: Target = None,
    start: float | None = None,
    end: float | None = None,
    labelled_only: bool = False,
    roles: Sequence[str] | None = ("live",),
) -> pd.DataFrame:
    """The sampled raw signals in [start, end) of `roles`, oldest first: prediction_id, time,
    values (float64 arrays: (samples,), or (channels, samples) for a multichannel model),
    true_label (missing: not labelled yet), model_version, labeller (who gave the label).
    `labelled_only`: only those with a label (what retraining can use)."""
    import pandas as pd

    where, params = _where("s.time", start, end, roles)
    join = "JOIN" if labelled_only else "LEFT JOIN"
    sql = (
        "SELECT s.prediction_id, s.time, s.data, s.channels, l.label AS true_label,"
        " p.model_version, l.labeller"
        " FROM signals s JOIN predictions p ON p.prediction_id = s.prediction_id"
        f" {join} labels l ON l.prediction_id = s.prediction_id{where} ORDER BY s.time, p.id"
    )
    with opened(target) as log:
        columns, rows = log._select(sql, params)
    df = _frame(columns, rows)
    channels = [None if c is None or c != c else int(c) for c in df.pop("channels")]
    values = [decode_signal(bytes(b), c) for b, c in zip(df.pop("data"), channels, strict=True)]
    df.insert(2, "values", pd.Series(values, index=df.index, dtype=object))
    return df


def features_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """The logged monitor features of `read_predictions`' rows as columns, one row per
    prediction (same index): the FEATURES columns of univariate rows, and each multichannel
    row's `channel_features` expanded into `feature[channel]` columns (`rms[x]`, ...,
    channel-major, in the order logged); NaN where a row has no such feature. The univariate
    columns come first, and only when some row is univariate (or none is multichannel)."""
    import pandas as pd

    parsed = [
        json.loads(v) if isinstance(v, str) else None
        for v in predictions.get("channel_features", pd.Series(None, index=predictions.index))
    ]
    names: dict[str, None] = {}
    for d in parsed:
        names.update(dict.fromkeys(d or {}))
    univariate = any(d is None for d in parsed) or not names
    out = (
        predictions.reindex(columns=list(FEATURE_COLUMNS)).astype("float64")
        if univariate
        else pd.DataFrame(index=predictions.index)
    )
    if names:
        wide = pd.DataFrame.from_records(
            [d or {} for d in parsed], index=predictions.index, columns=list(names)
        )
        out = pd.concat([out, wide.astype("float64")], axis=1)
    return out
