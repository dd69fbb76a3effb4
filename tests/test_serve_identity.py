"""Request identity: prediction ids, X-Request-ID, roles and colours in the prediction log, and
two serving processes (blue and green) writing one log at once.

The servers come from tests/helpers/serving_fixtures.py (their own instances for this module);
every process is started through `started`, which stops its whole group when the test ends.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.paths import VENV_BIN
from helpers.ports import free_port
from helpers.processes import started
from helpers.ready import wait_ready
from helpers.serving import JSON, SPIKE, good_signal, numbers, user_env

from faultwatch.serve.predlog import open_log
from faultwatch.serve.settings import ServeSettings, SettingsError

HEX32 = re.compile(r"[0-9a-f]{32}")


def logged(log_path: Path, sql: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(log_path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


# ---------------------------------------------------------------- the log, in process
OLD_SCHEMA = """
CREATE TABLE predictions (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL,
    model_version TEXT NOT NULL, n INTEGER NOT NULL, mean REAL, std REAL, min REAL, max REAL,
    n_nonfinite INTEGER NOT NULL, probability REAL NOT NULL, label TEXT NOT NULL,
    is_fault INTEGER NOT NULL, threshold REAL NOT NULL, latency_ms REAL NOT NULL,
    batch_size INTEGER NOT NULL
);
CREATE INDEX predictions_time ON predictions (time);
CREATE TABLE rejected (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL, status INTEGER NOT NULL,
    reason TEXT NOT NULL, detail TEXT, body_bytes INTEGER
);
INSERT INTO predictions VALUES (1, 1.0, 'predict', 'v0', 40, 0, 1, -1, 1, 0, 0.2, 'healthy',
    0, 0.5, 1.5, 1);
INSERT INTO rejected VALUES (1, 1.0, '/predict', 400, 'finite_number', 'signal.0', 20);
"""


def test_an_old_log_is_migrated_on_open(tmp_path):
    """A log written before request identity existed: opened, it gains the columns (its old
    rows live, colour ''), the indexes, and takes new rows; opening it again changes nothing."""
    from helpers.serving import entry

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    log = open_log(path, colour="green")
    log.append([entry(0.9)])
    log.reject("/predict", 503, "overloaded", "overloaded: queue full", 10, "req-1", "shadow")
    log.close()
    open_log(path).close()  # a second open: nothing to add, no error
    rows = logged(path, "SELECT id, prediction_id, colour, role FROM predictions ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, None, "", "live"), (2, None, "green", "live")]
    rejected = logged(path, "SELECT status, request_id, colour, role FROM rejected ORDER BY id")
    assert [tuple(r) for r in rejected] == [
        (400, None, "", "live"),
        (503, "req-1", "green", "shadow"),
    ]
    indexes = {r["name"]: r["unique"] for r in logged(path, "PRAGMA index_list(predictions)")}
    assert indexes["predictions_prediction_id"] == 1
    assert "predictions_colour_time" in indexes
    assert [r["name"] for r in logged(path, "PRAGMA index_info(predictions_colour_time)")] == [
        "colour",
        "time",
    ]


def test_a_prediction_id_is_logged_once(tmp_path):
    from dataclasses import replace

    from helpers.serving import entry

    from faultwatch.serve.predlog import PredictionLogError

    log = open_log(tmp_path / "p.sqlite")
    log.append([replace(entry(), prediction_id="a" * 32)])
    with pytest.raises(PredictionLogError, match="UNIQUE constraint failed"):
        log.append([replace(entry(), prediction_id="a" * 32)])
    log.close()


def test_colour_is_a_setting_with_a_rule():
    assert ServeSettings.from_env({}).colour == ""
    settings = ServeSettings.from_env({"FAULTWATCH_COLOUR": "green"})
    assert settings.as_dict()["FAULTWATCH_COLOUR"] == "green"
    with pytest.raises(SettingsError, match=r"FAULTWATCH_COLOUR='blue green': expected at most"):
        ServeSettings.from_env({"FAULTWATCH_COLOUR": "blue green"})


# ---------------------------------------------------------------- a real server
def by_prediction_id(log_path: Path, ids: list[str]) -> dict[str, sqlite3.Row]:
    marks = ",".join("?" * len(ids))
    rows = logged(log_path, f"SELECT * FROM predictions WHERE prediction_id IN ({marks})", *ids)
    return {r["prediction_id"]: r for r in rows}


@pytest.mark.slow
def test_every_answer_has_its_own_prediction_id_as_logged(client, server):
    """predict and predict_batch: one 32-hex prediction_id per signal, all different; each is
    logged once with that answer's probability and the request id the answer echoes."""
    log_path = server[1]
    single = client.post("/predict", json={"signal": good_signal(40)})
    batch = client.post("/predict_batch", json={"signals": [good_signal(n) for n in (30, 31, 70)]})
    assert (single.status_code, batch.status_code) == (200, 200), (single.text, batch.text)
    answers = [single.json(), *batch.json()["predictions"]]
    ids = [a["prediction_id"] for a in answers]
    assert all(HEX32.fullmatch(i) for i in ids) and len(set(ids)) == 4, ids
    generated = [single.headers["x-request-id"], batch.headers["x-request-id"]]
    assert all(HEX32.fullmatch(g) for g in generated) and generated[0] != generated[1]
    rows = by_prediction_id(log_path, ids)
    assert len(rows) == 4
    for a, request_id in zip(answers, generated[:1] + generated[1:] * 3, strict=True):
        row = rows[a["prediction_id"]]
        assert row["probability"] == a["probability"]
        assert (row["request_id"], row["role"], row["colour"]) == (request_id, "live", "")


@pytest.mark.slow
@pytest.mark.parametrize("role", ["live", "shadow", "smoke"])
def test_a_given_request_id_and_role_are_echoed_and_logged(client, server, role):
    request_id = f"haproxy:7f00.0001_{role}-1"
    r = client.post(
        "/predict_batch",
        json={"signals": [good_signal(40), good_signal(41)]},
        headers={"X-Request-ID": request_id, "X-Faultwatch-Role": role},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == request_id
    rows = by_prediction_id(server[1], [p["prediction_id"] for p in r.json()["predictions"]])
    assert {(row["request_id"], row["role"]) for row in rows.values()} == {(request_id, role)}
    assert len(rows) == 2


@pytest.mark.slow
def test_a_request_id_of_128_characters_is_accepted(client):
    request_id = "a" * 128
    r = client.post(
        "/predict", json={"signal": good_signal()}, headers={"X-Request-ID": request_id}
    )
    assert (r.status_code, r.headers["x-request-id"]) == (200, request_id)


BAD_HEADERS = {
    "too_long": ({"X-Request-ID": "a" * 129}, "X-Request-ID", "must be 1 to 128 characters"),
    "space": ({"X-Request-ID": "a b"}, "X-Request-ID", "of A-Z a-z 0-9 . _ : -"),
    "slash": ({"X-Request-ID": "a/b"}, "X-Request-ID", "(got 3 characters: 'a/b')"),
    "role": (
        {"X-Faultwatch-Role": "canary"},
        "X-Faultwatch-Role",
        "must be one of live, shadow, smoke (got 'canary')",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_HEADERS), ids=list(BAD_HEADERS))
def test_a_bad_identity_header_is_a_400_naming_it(client, server, case):
    headers, name, rule = BAD_HEADERS[case]
    before = logged(server[1], "SELECT count(*) AS n FROM rejected")[0]["n"]
    r = client.post("/predict", json={"signal": good_signal()}, headers=headers)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"].startswith(f"header.{name}: "), body
    assert rule in body["error"] and body["error"].endswith("(invalid_header)")
    assert body["detail"][0]["loc"] == ["header", name]
    echoed = r.headers["x-request-id"]  # a bad id is not echoed: a new one stands for it
    assert HEX32.fullmatch(echoed)
    rows = logged(server[1], "SELECT * FROM rejected WHERE request_id = ?", echoed)
    assert [(row["status"], row["reason"]) for row in rows] == [(400, "invalid_header")]
    assert logged(server[1], "SELECT count(*) AS n FROM rejected")[0]["n"] == before + 1


@pytest.mark.slow
def test_a_4xx_echoes_and_logs_the_request_id(client, server):
    r = client.post(
        "/predict",
        content=numbers(["NaN"]),
        headers={"content-type": JSON, "X-Request-ID": "bad-body-1", "X-Faultwatch-Role": "shadow"},
    )
    assert (r.status_code, r.headers["x-request-id"]) == (400, "bad-body-1")
    rows = logged(server[1], "SELECT * FROM rejected WHERE request_id = 'bad-body-1'")
    assert [(row["reason"], row["role"]) for row in rows] == [("finite_number", "shadow")]


@pytest.mark.slow
def test_a_5xx_refusal_echoes_the_id_and_is_logged(spike_server):
    """A model failure (500) is recorded in `rejected` with its request id and reason."""
    import httpx

    url, log_path = spike_server
    r = httpx.post(
        f"{url}/predict", json={"signal": SPIKE}, headers={"X-Request-ID": "spike-1"}, timeout=30
    )
    assert (r.status_code, r.headers["x-request-id"]) == (500, "spike-1"), r.text
    assert r.json()["detail"][0]["type"] == "model_failure"
    rows = logged(log_path, "SELECT * FROM rejected WHERE request_id = 'spike-1'")
    assert [(row["status"], row["reason"], row["endpoint"]) for row in rows] == [
        (500, "model_failure", "/predict")
    ]
    assert "the model failed on this signal" in rows[0]["detail"]


# ---------------------------------------------------------------- blue and green, one log
N_REQUESTS = 300  # per server
CLIENT_THREADS = 6  # per server


def hammer(url: str, colour: str) -> tuple[list[str], list[str]]:
    """N_REQUESTS requests from CLIENT_THREADS keep-alive clients (every fifth a batch of 3):
    (the prediction ids answered, the failures)."""
    import httpx

    local = threading.local()

    def call(i: int) -> tuple[list[str], str | None]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        headers = {"X-Request-ID": f"{colour}-{i}"}
        try:
            if i % 5 == 0:
                body = {"signals": [good_signal(30 + j) for j in range(3)]}
                r = local.client.post("/predict_batch", json=body, headers=headers)
                answers = r.json()["predictions"] if r.status_code == 200 else []
            else:
                r = local.client.post("/predict", json={"signal": good_signal(40)}, headers=headers)
                answers = [r.json()] if r.status_code == 200 else []
        except httpx.HTTPError as e:
            return [], f"{colour}-{i}: {e!r}"
        if r.status_code != 200:
            return [], f"{colour}-{i}: {r.status_code} {r.text[:200]}"
        return [a["prediction_id"] for a in answers], None

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        results = list(pool.map(call, range(N_REQUESTS)))
    return [i for ids, _ in results for i in ids], [f for _, f in results if f]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_blue_and_green_write_one_log_at_once_and_lose_nothing(packaged, tmp_path):
    """Two `faultwatch serve` processes of the packaged bento (FAULTWATCH_COLOUR blue and
    green) on one prediction log, both under concurrent load at once: every answered
    prediction_id is in the log exactly once, with its colour and request id; none is lost."""
    import subprocess

    root, pkg = packaged
    log_path = tmp_path / "shared.sqlite"
    procs, urls = {}, {}
    with (
        started(*serve_args(root, "blue", log_path, tmp_path, urls)) as procs["blue"],
        started(*serve_args(root, "green", log_path, tmp_path, urls)) as procs["green"],
    ):
        for colour, proc in procs.items():
            wait_ready(urls[colour], proc, tmp_path / f"{colour}.log", timeout_s=180)
        shown = subprocess.run(
            [str(VENV_BIN / "faultwatch"), "serve", "--show-config"],
            cwd=root,
            env=user_env(FAULTWATCH_COLOUR="green"),
            capture_output=True,
            text=True,
        )
        assert json.loads(shown.stdout)["settings"]["FAULTWATCH_COLOUR"] == "green", shown.stderr
        results: dict[str, tuple[list[str], list[str]]] = {}
        threads = [
            threading.Thread(target=lambda c=c: results.__setitem__(c, hammer(urls[c], c)))
            for c in procs
        ]
        started_at = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        elapsed = time.monotonic() - started_at
    assert set(results) == {"blue", "green"}, "a client thread did not finish"
    want = N_REQUESTS + 2 * (N_REQUESTS // 5)  # a batch of 3 for every fifth request
    for colour, (ids, failures) in results.items():
        assert failures == [], failures[:5]
        assert len(ids) == len(set(ids)) == want, colour
    rows = logged(log_path, "SELECT prediction_id, colour, request_id FROM predictions")
    assert len(rows) == 2 * want
    logged_ids = {r["prediction_id"]: r for r in rows}
    assert len(logged_ids) == len(rows)  # each exactly once
    for colour, (ids, _) in results.items():
        assert all(logged_ids[i]["colour"] == colour for i in ids)
        assert all(logged_ids[i]["request_id"].startswith(f"{colour}-") for i in ids)
    print(f"2 x {N_REQUESTS} requests ({2 * want} predictions) in {elapsed:.1f} s")


def serve_args(root: Path, colour: str, log_path: Path, tmp: Path, urls: dict[str, str]):
    """`started`'s arguments for `faultwatch serve` as `colour` on a free port (in `urls`)."""
    port = free_port()
    urls[colour] = f"http://127.0.0.1:{port}"
    cmd = [str(VENV_BIN / "faultwatch"), "serve", "--port", str(port)]
    env = user_env(FAULTWATCH_COLOUR=colour, FAULTWATCH_PREDICTION_LOG=str(log_path))
    return cmd, root, env, tmp / f"{colour}.log"
