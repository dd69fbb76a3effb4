"""What waits for a person's label: a window of the prediction log, the predictions still
without a label, the model's faults first (notebooks/06_review.ipynb, `faultwatch review`).

`read_waiting` asks the log (SQLite or PostgreSQL, read-only) for the window's predictions
that have no row in `labels` yet: faults first, most probable first, then the rest, nearest to
the threshold first. `review_queue` is what the notebook shows a person: every waiting fault
(up to `max_faults`) and a seeded sample of `sample` of the rest, since a missed fault hides
among the predicted-healthy rows. Their raw signals come from the log's sampled `signals`
(FAULTWATCH_LOG_SIGNALS; a row without one is shown by its numbers alone), their nearest
training examples from faultwatch.monitor.nearest, and the labels go to the service's
`/feedback` under the person's token through faultwatch.monitor.labelling.

The window is params.yaml:review's (`last` before `until`, or `since` .. `until`), read as the
monitor reads its own (faultwatch.monitor.params).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from faultwatch.errors import FaultwatchError, ParamsError
from faultwatch.monitor.params import parse_duration, parse_time
from faultwatch.params import Section
from faultwatch.paths import resolve
from faultwatch.serve import predlog
from faultwatch.serve.credentials import NAME_RULE
from faultwatch.serve.store import MODEL_NAME

PREDICTION_ID = r"[0-9a-f]{32}"  # the service's prediction ids (and /feedback's rule)
# what the queue shows of each prediction, besides the logged features (for `nearest`)
COLUMNS = (
    "prediction_id",
    "request_id",
    "time",
    "model",
    "model_version",
    "probability",
    "label",
    "is_fault",
    "threshold",
    "quality",
    "channels",
)


class ReviewParams(Section):
    """The `review` section (notebooks/06_review.ipynb; `faultwatch review`)."""

    # the prediction log: a SQLite path or postgresql://...; null: $FAULTWATCH_PREDICTION_LOG,
    # else reports/serving/predictions.sqlite
    log: str | None = None
    model: str | None = None  # a fleet's model group (the log's `model`); null: every row
    last: str | float | None = "24h"
    since: str | float | None = None
    until: str | float | None = None
    roles: list[Literal["live", "shadow", "smoke"]] = Field(default=["live"], min_length=1)
    max_faults: int = Field(20, ge=0)  # waiting predicted faults shown, most probable first
    sample: int = Field(10, ge=0)  # and this many of the other waiting rows, drawn at random
    examples: int = Field(3, ge=1, le=20)  # nearest training examples beside each signal
    reference_path: str = "data/prepared/train.parquet"
    model_dir: str = "models/fault_cnn"  # embeds the training split for the version it is
    register_file: str = "reports/register.json"  # (others: the BentoML store's entry)
    url: str = "http://localhost:3000"  # the service (or router) whose /feedback takes labels
    labeller: str | None = None  # your name in the tokens file (faultwatch labellers add NAME)
    token_file: str | None = None  # null: the project's; or a file holding your token alone
    labels: dict[str, str | int] = Field(default_factory=dict)  # sent on this run: id -> 1/0
    seed: int = 0

    @field_validator("last")
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

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r}: expected http://HOST:PORT (the service or the router)")
        return v.rstrip("/")

    @field_validator("labeller")
    @classmethod
    def _labeller(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RULE.fullmatch(v):
            raise ValueError(f"{v!r}: a labeller's name is 1 to 64 of A-Z a-z 0-9 . _ @ -")
        return v

    def window(self, now: float) -> tuple[float | None, float]:
        """(start, end) in unix seconds; start None: from the first row."""
        end = parse_time(self.until) if self.until is not None else now
        start = (
            parse_time(self.since)
            if self.since is not None
            else (end - parse_duration(self.last) if self.last is not None else None)
        )
        if start is not None and start >= end:
            raise ParamsError(
                f"review.since/review.last: the window is empty (start {start:.0f} is not "
                f"before review.until {end:.0f})"
            )
        return start, end


@dataclass
class Waiting:
    """The window's predictions without a label (`rows`, faults first), how many predictions
    and labels the window holds, and `note`: why it is empty when there is no log yet."""

    target: str
    start: float | None
    end: float
    rows: pd.DataFrame
    n_predictions: int = 0
    n_labelled: int = 0
    note: str | None = None

    @property
    def n_faults(self) -> int:
        return int(self.rows["is_fault"].sum()) if len(self.rows) else 0

    def summary(self) -> str:
        """One line: the log, the window, and what waits."""
        if self.note:
            return self.note
        span = (
            f"{_iso(self.start) if self.start is not None else 'the first row'} .. {_iso(self.end)}"
        )
        return (
            f"{predlog.show_target(self.target)}: {span}: {self.n_predictions} predictions, "
            f"{self.n_labelled} labelled, {len(self.rows)} waiting for a label "
            f"({self.n_faults} called faults)"
        )


def _iso(t: float) -> str:
    return pd.Timestamp(t, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def log_target(params: ReviewParams) -> str:
    """`review.log`, else the log the service writes."""
    if params.log:
        return params.log if "://" in params.log else str(resolve(params.log))
    return str(predlog.default_path())


def no_log_yet(target: str) -> str:
    return (
        f"review.log: {target}: no prediction log there yet. Serve a model and send it "
        "requests (`faultwatch serve`, `faultwatch deploy up`), or point review.log (`log` in "
        "the notebook's parameters cell, `--log`) or FAULTWATCH_PREDICTION_LOG at a log."
    )


def _where(params: ReviewParams, start: float | None, end: float) -> tuple[str, list[str | float]]:
    """The window, roles and model group as SQL (SQLite's dialect; read_only translates)."""
    clauses = ["p.time < ?", f"p.role IN ({', '.join('?' for _ in params.roles)})"]
    args: list[str | float] = [float(end), *params.roles]
    if start is not None:
        clauses.insert(0, "p.time >= ?")
        args.insert(0, float(start))
    if params.model is not None:  # fault_cnn also owns the rows from before fleets (NULL)
        own = " OR p.model IS NULL" if params.model == MODEL_NAME else ""
        clauses.append(f"(p.model = ?{own})")
        args.append(params.model)
    return " AND ".join(clauses), args


def read_waiting(params: ReviewParams, now: float | None = None) -> Waiting:
    """The window's predictions still waiting for a label, faults first (most probable
    first), then the rest (nearest to its threshold first), with their logged features
    (predlog.features_frame's columns). A SQLite log that does not exist yet gives an empty
    Waiting whose `note` says so (`faultwatch review` refuses it: check_log_exists)."""
    start, end = params.window(time.time() if now is None else now)
    target = log_target(params)
    features = [f"p.{c}" for c in (*predlog.FEATURE_COLUMNS, "channel_features")]
    if not predlog.log_exists(target):
        empty = pd.DataFrame(columns=[*COLUMNS, *(f[2:] for f in features)])
        return Waiting(target, start, end, empty, note=no_log_yet(target))
    where, args = _where(params, start, end)
    join = "FROM predictions p LEFT JOIN labels l ON l.prediction_id = p.prediction_id"
    fields = ", ".join([*(f"p.{c}" for c in COLUMNS), *features])
    with predlog.read_only(target) as select:
        ((n, labelled),) = select(
            f"SELECT count(*), count(l.prediction_id) {join} WHERE {where}", args
        )
        rows = select(
            f"SELECT {fields} {join} WHERE {where} AND l.prediction_id IS NULL"
            " AND p.prediction_id IS NOT NULL ORDER BY p.time, p.id",
            args,
        )
    names = [*COLUMNS, *(f[2:] for f in features)]
    df = pd.DataFrame.from_records(rows, columns=names)
    for c in ("time", "probability", "threshold", *predlog.FEATURE_COLUMNS):
        df[c] = df[c].astype("float64")
    df["is_fault"] = df["is_fault"].astype(bool)
    # the faults most probable first; the rest nearest to its threshold first
    faults = df[df["is_fault"]].sort_values("probability", ascending=False, kind="stable")
    margin = (df["probability"] - df["threshold"]).abs()
    rest = df[~df["is_fault"]].iloc[np.argsort(margin[~df["is_fault"]].to_numpy(), kind="stable")]
    df = pd.concat([faults, rest]).reset_index(drop=True)
    return Waiting(target, start, end, df, int(n or 0), int(labelled or 0))


def check_log_exists(params: ReviewParams) -> None:
    """PredictionLogError naming review.log when there is no prediction log to review."""
    target = log_target(params)
    if not predlog.log_exists(target):
        raise predlog.PredictionLogError(no_log_yet(target))


def review_queue(waiting: Waiting, params: ReviewParams) -> pd.DataFrame:
    """What a person is shown: the waiting faults (up to `max_faults`, most probable first)
    and `sample` of the other waiting rows drawn at random (`seed`), each with `why`."""
    rows = waiting.rows
    faults = rows[rows["is_fault"]].head(params.max_faults).assign(why="called a fault")
    rest = rows[~rows["is_fault"]]
    if len(rest) > params.sample:
        pick = np.random.default_rng(params.seed).choice(len(rest), params.sample, replace=False)
        rest = rest.iloc[np.sort(pick)]
    return pd.concat([faults, rest.assign(why="sampled from the rest")]).reset_index(drop=True)


def read_signals(target: str, prediction_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The logged raw signals of `prediction_ids` that were sampled (FAULTWATCH_LOG_SIGNALS):
    id -> float64 array ((samples,), or (channels, samples)); an id without one is absent."""
    ids = [str(i) for i in prediction_ids]
    out: dict[str, np.ndarray] = {}
    if not ids or not predlog.log_exists(target):
        return out
    with predlog.read_only(target) as select:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" for _ in chunk)
            sql = f"SELECT prediction_id, data, channels FROM signals WHERE prediction_id IN ({marks})"
            for pid, data, channels in select(sql, chunk):
                n = None if channels is None else int(channels)
                out[pid] = predlog.decode_signal(bytes(data), n)
    return out


def classes(waiting: Waiting, params: ReviewParams) -> tuple[str, str] | None:
    """(healthy, fault): the classes a label of 0 and 1 stand for, from the window's answers
    (the fault class the model answered), else from the model in `model_dir`; None when the
    window mixes groups with different fault classes or nothing tells the fault class."""
    from faultwatch.data.prepare import HEALTHY_LABEL

    faults = set(waiting.rows.loc[waiting.rows["is_fault"], "label"].astype(str))
    if len(faults) > 1:
        return None
    if faults:
        return HEALTHY_LABEL, faults.pop()
    try:
        from faultwatch.model.io import read_meta

        return HEALTHY_LABEL, str(read_meta(resolve(params.model_dir))["class_names"][1])
    except (FaultwatchError, OSError, KeyError, IndexError):  # no model here: by class names
        return None


def table(queue: pd.DataFrame) -> pd.DataFrame:
    """The queue as a person reads it: id, time (UTC), group, version, probability, the
    model's answer and why it is shown."""
    if queue.empty:
        return pd.DataFrame(
            columns=["prediction_id", "time", "group", "version", "probability", "answer", "why"]
        )
    return pd.DataFrame(
        {
            "prediction_id": queue["prediction_id"],
            "time": [_iso(t) for t in queue["time"]],
            "group": queue["model"].fillna(MODEL_NAME),
            "version": queue["model_version"],
            "probability": queue["probability"].round(4),
            "answer": queue["label"],
            "why": queue.get("why", ""),
        }
    )
