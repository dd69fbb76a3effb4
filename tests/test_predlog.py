"""The prediction log's storage: the new columns and tables (features, embedding, sampled
signals, labels) on SQLite and on a real PostgreSQL server (tests/helpers/postgres.py), label validation,
migration of an older file, one transaction per append, and two processes writing at once."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from helpers.cli import tool_env
from helpers.paths import REPO

from faultwatch.errors import FaultwatchError
from faultwatch.features import FEATURES, channel_feature_names
from faultwatch.serve.predlog import (
    FeedbackError,
    InputSummary,
    LoggedPrediction,
    PostgresPredictionLog,
    PredictionLog,
    PredictionLogError,
    features_frame,
    mask_url,
    open_log,
    read_embeddings,
    read_predictions,
    read_rejected,
    read_signals,
)
from faultwatch.serve.settings import ServeSettings

pytestmark = pytest.mark.timeout(120)


def entry(pid: str | None = None, p: float = 0.7, **fields) -> LoggedPrediction:
    summary = InputSummary.of(np.arange(10.0))
    e = LoggedPrediction(
        "predict_batch", "v1", summary, p, "fault" if p >= 0.5 else "healthy", p >= 0.5, 0.5, 1.5, 2
    )
    return replace(e, prediction_id=pid or uuid.uuid4().hex, **fields)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    """A fresh, empty log of each backend: a file path, or a new database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "p.sqlite")
    return request.getfixturevalue("postgres_url")


def execute(target: str, sql: str, params: tuple = ()) -> list[tuple]:
    """One statement on its own connection, committed (not through the log under test)."""
    if target.startswith("postgresql://"):
        with psycopg.connect(target, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    with sqlite3.connect(target) as conn:
        return conn.execute(sql, params).fetchall()


# ---------------------------------------------------------------- round trip, both backends
def test_features_embedding_signals_and_labels_round_trip(target):
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(300)
    features = [0.5, 3.0, 2.9, 7.0, 0.1, 0.2, 0.3, 0.4]
    full = entry("a1", 0.9, features=features, embedding=np.arange(16.0), signal=signal)
    bare = entry("a2", 0.2)  # logged as an older server would: no features, no embedding
    smoke = entry("a3", 0.6, role="smoke", features=features, signal=signal[:50])
    log = open_log(target, colour="blue")
    assert isinstance(log, PredictionLog)
    log.append([full, bare, smoke])
    log.reject("/predict", 400, "finite_number", "signal.3: Input should be finite", 99)
    assert log.add_labels([("a1", "fault")], source="technician", labeller="alice") == 1
    assert log.add_labels([("a3", "healthy")], source="technician") == 1  # no token's name
    assert [log.count(t) for t in ("predictions", "signals", "labels", "rejected")] == [3, 2, 2, 1]
    log.close()

    df = read_predictions(target)  # live only, by default
    assert list(df.prediction_id) == ["a1", "a2"]
    assert list(df.columns[-len(FEATURES) - 2 :]) == [*FEATURES, "true_label", "label_time"]
    assert df.loc[0, list(FEATURES)].tolist() == features
    assert df.loc[1, list(FEATURES)].isna().all()
    assert (df.loc[0, "true_label"], df.loc[0, "colour"], df.loc[0, "is_fault"]) == (
        "fault",
        "blue",
        True,
    )
    assert df.loc[1, ["true_label", "label_time"]].isna().all()
    assert df.loc[0, "label_time"] >= df.loc[0, "time"]
    assert df.dtypes["time"] == "float64" and df.dtypes["n"] == "int64"
    assert list(read_predictions(target, roles=None).prediction_id) == ["a1", "a2", "a3"]
    assert read_predictions(target, start=df.time.max() + 1).empty
    assert len(read_predictions(target, start=df.time.min(), end=df.time.max() + 1)) == 2

    emb = read_embeddings(target, ["a2", "a1"])
    assert emb.shape == (2, 16) and np.isnan(emb[0]).all()
    assert emb[1].tolist() == list(range(16))
    with pytest.raises(ValueError, match="1 prediction_id.*not in the prediction log: 'nope'"):
        read_embeddings(target, ["a1", "nope"])

    signals = read_signals(target, roles=None)
    assert list(signals.columns) == [
        "prediction_id",
        "time",
        "values",
        "true_label",
        "model_version",
        "labeller",
    ]
    assert list(signals.prediction_id) == ["a1", "a3"]
    assert signals["labeller"][0] == "alice" and pd.isna(signals["labeller"][1])
    assert signals["values"][0].dtype == np.float64
    np.testing.assert_array_equal(signals["values"][0], signal.astype("float32"))
    assert list(read_signals(target).prediction_id) == ["a1"]  # live only
    assert list(read_signals(target, labelled_only=True, roles=None).true_label) == [
        "fault",
        "healthy",
    ]

    rejected = read_rejected(target)
    assert rejected.to_dict("records")[0] | {"time": 0} == {
        "time": 0,
        "endpoint": "/predict",
        "status": 400,
        "reason": "finite_number",
        "colour": "blue",
        "role": "live",
        "model": None,
    }


def test_the_service_setting_keeps_a_postgresql_url_and_the_log_follows_it(
    postgres_url, monkeypatch
):
    settings = ServeSettings.from_env({"FAULTWATCH_PREDICTION_LOG": postgres_url})
    assert settings.prediction_log == postgres_url  # not a Path, which would eat the //
    monkeypatch.setenv("FAULTWATCH_PREDICTION_LOG", postgres_url)
    for log in (open_log(), open_log(postgres_url)):
        assert isinstance(log, PostgresPredictionLog)
        log.close()
    assert read_predictions().empty  # the read side follows the variable too


def test_bad_entries_are_refused_before_writing(tmp_path):
    log = open_log(tmp_path / "p.sqlite")
    with pytest.raises(ValueError, match=r"features: expected 8 values \(rms, crest"):
        log.append([entry(features=[1.0, 2.0])])
    with pytest.raises(ValueError, match="a sampled signal needs its entry's prediction_id"):
        log.append([replace(entry(signal=np.ones(5)), prediction_id=None)])
    assert log.count() == 0
    with pytest.raises(PredictionLogError, match="nothing.sqlite: no prediction log there"):
        read_predictions(tmp_path / "nothing.sqlite")
    mangled = Path("postgresql://fw:pw@db:5432/log").resolve()  # what Path() makes of a URL
    with pytest.raises(PredictionLogError, match=r"fw:\*\*\*@db:5432/log: a postgresql:// URL"):
        open_log(mangled)
    assert not mangled.parent.exists()


# ---------------------------------------------------------------- one transaction per append
def test_an_append_is_all_or_nothing_predictions_and_signals(target):
    """The signal of the batch's second entry cannot be stored (its key is taken): neither
    prediction of the batch is in the log, although both predictions rows were valid."""
    log = open_log(target)
    execute(
        target, "INSERT INTO signals (prediction_id, time, n, data) VALUES (?, 0, 0, ?)", ("x", b"")
    )
    batch = [entry("ok", signal=np.ones(8)), entry("x", signal=np.ones(8))]
    with pytest.raises(PredictionLogError, match="could not write 2 rows"):
        log.append(batch)
    assert (log.count(), log.count("signals")) == (0, 1)
    log.append([entry("ok", signal=np.ones(8))])  # the log is usable afterwards
    assert (log.count(), log.count("signals")) == (1, 2)
    log.close()


# ---------------------------------------------------------------- labels
def test_labels_are_validated_all_first_and_nothing_is_written_on_a_bad_item(target):
    log = open_log(target)
    log.append([entry("p1"), entry("p2"), entry("p3")])
    assert log.add_labels([("p1", "fault")], source="ticket-1") == 1
    assert log.add_labels([]) == 0

    with pytest.raises(FeedbackError) as unknown:
        log.add_labels([("p2", "fault"), ("ghost", "fault")])
    e = unknown.value
    assert isinstance(e, FaultwatchError)
    assert (e.status, e.reason, e.loc, e.index) == (
        404,
        "unknown_prediction",
        ["labels", 1, "prediction_id"],
        1,
    )
    assert "'ghost' is not in the prediction log" in str(e)

    with pytest.raises(FeedbackError) as labelled:
        log.add_labels([("p3", "healthy"), ("p2", "fault"), ("p1", "healthy")])
    e = labelled.value
    assert (e.status, e.reason, e.loc) == (409, "duplicate_label", ["labels", 2, "prediction_id"])
    assert "'p1' is labelled already" in e.msg

    with pytest.raises(FeedbackError) as twice:
        log.add_labels([("p2", "fault"), ("p3", "fault"), ("p2", "healthy")])
    e = twice.value
    assert (e.status, e.reason, e.loc) == (409, "duplicate_label", ["labels", 2, "prediction_id"])
    assert "'p2' is labelled twice in this request (items 0 and 2)" in e.msg

    with pytest.raises(FeedbackError, match=r"'ghost' .*\(1 more of the 3 items refused\)"):
        log.add_labels([("ghost", "fault"), ("p2", "fault"), ("p1", "fault")])

    # every refused request above held good items (p2, p3): none of them was written
    assert execute(target, "SELECT prediction_id, label, source FROM labels") == [
        ("p1", "fault", "ticket-1")
    ]
    assert log.add_labels([("p2", "fault"), ("p3", "healthy")]) == 2
    assert log.count("labels") == 3
    log.close()


# ---------------------------------------------------------------- migration of an older file
IDENTITY_ERA_SCHEMA = """
CREATE TABLE predictions (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL,
    model_version TEXT NOT NULL, n INTEGER NOT NULL, mean REAL, std REAL, min REAL, max REAL,
    n_nonfinite INTEGER NOT NULL, probability REAL NOT NULL, label TEXT NOT NULL,
    is_fault INTEGER NOT NULL, threshold REAL NOT NULL, latency_ms REAL NOT NULL,
    batch_size INTEGER NOT NULL, request_id TEXT, prediction_id TEXT,
    colour TEXT NOT NULL DEFAULT '', role TEXT NOT NULL DEFAULT 'live'
);
CREATE TABLE rejected (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL, status INTEGER NOT NULL,
    reason TEXT NOT NULL, detail TEXT, body_bytes INTEGER, request_id TEXT,
    colour TEXT NOT NULL DEFAULT '', role TEXT NOT NULL DEFAULT 'live'
);
INSERT INTO predictions VALUES (1, 5.0, 'predict', 'v0', 40, 0, 1, -1, 1, 0, 0.2, 'healthy',
    0, 0.5, 1.5, 1, 'r1', 'old-1', 'blue', 'live');
"""


def test_an_older_file_gains_the_feature_embedding_signal_and_label_storage(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(IDENTITY_ERA_SCHEMA)
    log = open_log(path)
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(predictions)")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert columns[-12:] == [*FEATURES, "embedding", "channels", "channel_features", "model"]
    assert {"signals", "labels"} <= tables
    log.append([entry("new-1", features=list(range(8)), embedding=np.ones(4), signal=np.ones(9))])
    assert log.add_labels([("old-1", "healthy"), ("new-1", "fault")]) == 2
    log.close()
    open_log(path).close()  # a second open: nothing to add, no error

    df = read_predictions(path)
    assert list(df.prediction_id) == ["old-1", "new-1"]
    assert df.loc[0, list(FEATURES)].isna().all() and df.loc[1, "band_3"] == 7.0
    assert list(df.true_label) == ["healthy", "fault"]


# ---------------------------------------------------------------- multichannel rows
AXES = ("x", "y", "z")


def test_multichannel_rows_round_trip(target):
    """A multichannel row names its channels and holds its per-channel features as JSON (the
    univariate feature columns NULL; features_frame makes them columns); its summary is over
    all channels with n per channel; its raw signal reads back as (channels, samples)."""
    signal = np.random.default_rng(1).standard_normal((3, 40))
    signal[2, 5] = np.nan
    summary = InputSummary.of(signal)
    assert (summary.n, summary.n_nonfinite) == (40, 1)
    assert summary.mean == pytest.approx(np.nanmean(signal))
    features = np.arange(24.0).tolist()
    mc = replace(entry("m1", 0.8, features=features, signal=signal, channels=AXES), summary=summary)
    uni = entry("u1", 0.2, features=list(range(8)), signal=np.ones(20))
    log = open_log(target)
    log.append([mc, uni])
    with pytest.raises(ValueError, match=r"features: expected 24 values \(rms\[x\], crest\[x\]"):
        log.append([replace(mc, prediction_id="m2", features=features[:8])])
    with pytest.raises(ValueError, match=r"shape \(40,\) for channels \('x', 'y', 'z'\)"):
        log.append([replace(mc, prediction_id="m3", signal=signal[0])])
    assert log.count() == 2  # a refused append writes nothing
    log.close()

    df = read_predictions(target)
    assert df.loc[0, "channels"] == '["x", "y", "z"]'
    assert df.loc[1, ["channels", "channel_features"]].isna().all()  # a univariate row
    assert df.loc[0, list(FEATURES)].isna().all()
    assert df.loc[0, "n"] == 40
    wide = features_frame(df)
    names = channel_feature_names(FEATURES, AXES)
    assert list(wide.columns) == [*FEATURES, *names] and list(wide.index) == list(df.index)
    assert wide.loc[0, names].tolist() == features and wide.loc[0, list(FEATURES)].isna().all()
    assert wide.loc[1, list(FEATURES)].tolist() == list(range(8))
    assert wide.loc[1, names].isna().all()
    only_mc = features_frame(df.iloc[:1])
    assert list(only_mc.columns) == names

    signals = read_signals(target).set_index("prediction_id")
    np.testing.assert_array_equal(signals.loc["m1", "values"], signal.astype("float32"))
    assert signals.loc["u1", "values"].shape == (20,)


# ---------------------------------------------------------------- two processes at once
def test_a_new_sqlite_log_opens_while_another_process_holds_its_write_lock(tmp_path):
    """Two servers creating one new log at once: while one holds the write lock (creating the
    tables, before its own switch to WAL), SQLite refuses the other's switch to WAL at once,
    without its busy timeout. The log retries the switch; it opens once the lock is free."""
    path = tmp_path / "p.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other process, half-way through creating the log
    release = threading.Timer(0.3, other.execute, ["COMMIT"])
    release.start()
    t0 = time.monotonic()
    try:
        log = open_log(str(path), colour="green", timeout_s=5)
    finally:
        release.join()
        other.close()
    assert time.monotonic() - t0 >= 0.25  # it did wait for the other to finish
    log.append(
        [LoggedPrediction("predict", "v1", InputSummary.of([1.0]), 0.1, "h", False, 0.5, 1, 1)]
    )
    log.close()
    assert execute(str(path), "PRAGMA journal_mode")[0][0] == "wal"
    assert execute(str(path), "SELECT count(*) FROM predictions")[0][0] == 1


WRITER = """
import sys, time, uuid
from dataclasses import replace
from pathlib import Path
import numpy as np
from faultwatch.serve.predlog import InputSummary, LoggedPrediction, open_log
target, tag, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
while not go.exists():  # both processes open (create the tables) and write at once
    time.sleep(0.005)
log = open_log(target, colour=tag)
e = LoggedPrediction("predict_batch", "v1", InputSummary.of([1.0, 2.0]), 0.7, "f", True, 0.5, 1.0, 5)
for i in range({batches}):
    batch = [replace(e, prediction_id=uuid.uuid4().hex, features=[float(i)] * 8,
                     embedding=np.ones(8), signal=np.ones(64) if j == 0 else None)
             for j in range(5)]
    log.append(batch)
print("done", tag, flush=True)
"""


@pytest.mark.timeout(180)
def test_two_processes_append_at_once_and_lose_no_row(target, tmp_path):
    """Two writer processes start together on an empty log (both create the tables, like two
    servers starting), then append 60 batches of 5 each: all 600 rows, 600 distinct ids."""
    batches = 60
    go = tmp_path / "go"
    code = textwrap.dedent(WRITER.format(batches=batches))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, target, tag, str(go)],
            cwd=REPO,
            env=tool_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("blue", "green")
    ]
    try:
        time.sleep(0.5)
        go.touch()
        outs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.startswith("done")
    df = read_predictions(target)
    assert len(df) == 2 * batches * 5
    assert df.prediction_id.is_unique
    assert df.colour.value_counts().to_dict() == {"blue": batches * 5, "green": batches * 5}
    assert len(read_signals(target)) == 2 * batches


# ---------------------------------------------------------------- PostgreSQL failures
def test_an_unreachable_server_is_a_named_error_with_the_password_masked():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://faultwatch:hunter2-secret@127.0.0.1:{port}/log"
    with pytest.raises(PredictionLogError) as e:
        open_log(url, timeout_s=2)
    message = str(e.value)
    assert message.startswith(
        f"postgresql://faultwatch:***@127.0.0.1:{port}/log: could not connect"
    )
    assert "hunter2" not in message
    assert mask_url("postgresql://u@h/db?password=x&sslmode=disable") == (
        "postgresql://u@h/db?password=***&sslmode=disable"
    )


def test_a_dropped_connection_fails_one_write_then_reconnects(postgres_url):
    log = open_log(postgres_url)
    log.append([entry("before")])
    execute(
        postgres_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    with pytest.raises(PredictionLogError, match=r"faultwatch:\*\*\*@127\.0\.0\.1:\d+/"):
        log.append([entry("lost")])  # never acknowledged: the service answers 503
    log.append([entry("after")])
    assert list(read_predictions(log).prediction_id) == ["before", "after"]
    log.close()


def test_a_predict_sent_again_with_its_request_id_keeps_one_row(target):
    """The router retries a /predict whose server died after logging it but before answering:
    the answer that reached the client is the one row of its request id. /predict_batch rows (a
    request's signals may be committed in several batches) and shadow rows are kept."""
    log = open_log(target)
    try:
        first = entry(endpoint="predict", request_id="r1", signal=np.arange(4.0))
        log.append([first, entry(endpoint="predict", request_id="r2")])
        log.append([entry(endpoint="predict", request_id="r1", role="shadow")])
        again = entry(endpoint="predict", request_id="r1")
        log.append([again])
        log.append([entry(request_id="b1"), entry(request_id="b1")])  # predict_batch
        log.append([entry(request_id="b1")])
    finally:
        log.close()
    rows = execute(target, "SELECT request_id, role, prediction_id FROM predictions")
    live_r1 = [r[2] for r in rows if r[:2] == ("r1", "live")]
    assert live_r1 == [again.prediction_id], rows
    assert sorted(r[0] for r in rows if r[1] == "shadow") == ["r1"]
    assert sum(r[0] == "b1" for r in rows) == 3 and sum(r[0] == "r2" for r in rows) == 1
    assert execute(
        target, "SELECT count(*) FROM signals WHERE prediction_id = ?", (first.prediction_id,)
    ) == [(0,)]
