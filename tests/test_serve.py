"""The serving layer: prediction log, micro-batcher, model store, and real BentoML servers.

The server tests (marked slow) share one `bentoml serve` process for the module, on a free
port, with its own BENTOML_HOME and prediction log under tmp; the tests of isolation, of a
refused start and of `faultwatch serve` start their own. The servers, store and packaged
project are fixtures of tests/helpers/serving_fixtures.py. Every process is started through
`started` (tests/helpers/processes.py), which stops its whole process group when the test ends,
failed or not.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import tool_env
from helpers.paths import REPO, VENV_BIN
from helpers.ports import free_port
from helpers.processes import running, started
from helpers.ready import wait_exit, wait_ready
from helpers.serving import (
    DRAIN_BYTES,
    JSON,
    LOG_TIMEOUT_S,
    MAX_BATCH,
    SPIKE,
    THRESHOLD,
    entry,
    good_signal,
    numbers,
    serve_cmd,
    server_env,
    user_env,
)
from helpers.signals import make_signals

from faultwatch.serve.predlog import InputSummary, open_log
from faultwatch.serve.schema import ServingLimits


# ---------------------------------------------------------------- processes
def test_a_failing_block_stops_the_whole_process_group(tmp_path):
    """`started` stops the process and what it started, also when the test inside fails."""
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    log = tmp_path / "out.log"
    with pytest.raises(RuntimeError, match="the test failed"):
        with started([sys.executable, "-c", code], tmp_path, tool_env(), log) as proc:
            deadline = time.monotonic() + 30
            while not log.read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.05)
            child = int(log.read_text())
            raise RuntimeError("the test failed")
    assert proc.poll() is not None
    assert not running(child)  # the group went, the child with it


def rows(log_path: Path, table: str = "predictions") -> int:
    with sqlite3.connect(log_path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# ---------------------------------------------------------------- the prediction log
def test_prediction_log_is_wal_and_counts_rows(tmp_path):
    log = open_log(tmp_path / "p.sqlite")
    log.append([entry(0.1), entry(0.9)])
    log.reject("/predict", 400, "finite_number", "signal.0: Input should be a finite number", 20)
    assert (log.count(), log.count("rejected")) == (2, 1)
    assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    log.close()
    full = open_log(tmp_path / "p.sqlite", synchronous="full")
    assert full._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(ValueError, match="FAULTWATCH_PREDICTION_LOG_SYNC"):
        open_log(tmp_path / "q.sqlite", synchronous="OFF")


def test_input_summary_counts_non_finite_values():
    s = InputSummary.of([1.0, np.nan, 3.0, np.inf])
    assert (s.n, s.n_nonfinite, s.mean, s.min, s.max) == (4, 2, 2.0, 1.0, 3.0)


def test_a_killed_process_loses_no_acknowledged_row(tmp_path):
    """Rows acknowledged (append returned) before a SIGKILL are all in the file afterwards."""
    path = tmp_path / "p.sqlite"
    code = textwrap.dedent(
        f"""
        import os, signal
        from faultwatch.serve.predlog import InputSummary, LoggedPrediction, open_log
        log = open_log({str(path)!r})
        e = LoggedPrediction("predict", "v1", InputSummary.of([1.0, 2.0]), 0.7, "f", True, 0.5, 1.0, 1)
        for i in range(200):
            log.append([e])
            print(i + 1, flush=True)  # the acknowledgement
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    acknowledged = int(proc.stdout.split()[-1])
    assert acknowledged == 200
    assert rows(path) == acknowledged


# ---------------------------------------------------------------- the micro-batcher
def test_micro_batcher_batches_concurrent_requests_in_order():
    import asyncio
    import threading

    from faultwatch.serve.batching import MicroBatcher, Overloaded

    release = threading.Event()

    def run(items: list[int]) -> list[int]:
        release.wait(5)  # the first batch holds the model until everything else has queued
        if -1 in items:
            raise ValueError("bad item")
        return [10 * i for i in items]

    async def scenario() -> None:
        b = MicroBatcher(run, max_batch=4, max_queue=8)
        first = asyncio.create_task(b.submit([0]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(b.submit([i, i + 100])) for i in range(1, 4)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded, match="queue holds 8"):
            await b.submit(list(range(3)))  # 6 queued + 3 > 8
        release.set()
        assert await first == [0]
        assert [await t for t in rest] == [[10 * i, 10 * (i + 100)] for i in range(1, 4)]
        assert list(b.batch_sizes) == [1, 4, 2]  # the 6 queued signals: batches of <= 4
        with pytest.raises(ValueError, match="bad item"):
            await b.submit([1, -1])

    asyncio.run(scenario())


def test_one_failing_item_fails_only_its_own_request():
    """`run` outcomes that are exceptions fail their item's request; the batch's other
    requests get their results. `run_isolated` turns a call that raises for the batch into
    such outcomes by retrying item by item."""
    import asyncio
    import threading

    from faultwatch.serve.batching import MicroBatcher, run_isolated

    calls: list[list[int]] = []

    def model(items: list[int]) -> list[int]:
        calls.append(list(items))
        if -1 in items:
            raise ValueError("bad item -1")
        return [10 * i for i in items]

    outcomes = run_isolated(model, [1, -1, 2])
    assert outcomes[0::2] == [10, 20]
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad item -1"
    assert calls == [[1, -1, 2], [1], [-1], [2]]  # the batch, then one by one
    assert run_isolated(model, [3, 4]) == [30, 40] and calls[-1] == [3, 4]

    release = threading.Event()

    def run(items: list[int]) -> list[int | Exception]:
        release.wait(5)  # hold the first batch until the others have queued together
        return run_isolated(model, items)

    async def scenario() -> None:
        b = MicroBatcher(run, max_batch=8, max_queue=16)
        first = asyncio.create_task(b.submit([0]))
        await asyncio.sleep(0.05)
        good = [asyncio.create_task(b.submit([i])) for i in (1, 2)]
        bad = asyncio.create_task(b.submit([3, -1]))  # one request, one bad signal
        more = asyncio.create_task(b.submit([4, 5]))
        await asyncio.sleep(0.05)
        release.set()
        assert await first == [0]
        assert [await t for t in good] == [[10], [20]]
        with pytest.raises(ValueError, match="bad item -1"):
            await bad
        assert await more == [40, 50]
        assert list(b.batch_sizes) == [1, 6]  # the bad request shared the batch with the others

    asyncio.run(scenario())


def test_a_cancelled_batch_leaves_no_request_waiting():
    """The batcher's task cancelled while the model runs (server shutdown): the running batch's
    requests and the queued ones all get BatchCancelled at once; none waits for ever."""
    import asyncio
    import threading

    from faultwatch.serve.batching import BatchCancelled, MicroBatcher

    release = threading.Event()

    def run(items: list[int]) -> list[int]:
        release.wait(5)
        return list(items)

    async def scenario() -> None:
        b = MicroBatcher(run, max_batch=2, max_queue=16)
        running = asyncio.create_task(b.submit([1, 2]))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(b.submit([3]))
        await asyncio.sleep(0.05)
        b._task.cancel()
        release.set()  # the thread finishes; its results must not be needed by anyone
        for task in (running, queued):
            with pytest.raises(BatchCancelled):
                await asyncio.wait_for(task, 5)
        assert await asyncio.wait_for(b.submit([7]), 5) == [7]  # a new batcher task starts

    asyncio.run(scenario())


def test_serve_settings_are_read_once_and_named(monkeypatch):
    from faultwatch.serve.settings import ServeSettings, SettingsError

    s = ServeSettings.from_env(
        {
            "FAULTWATCH_BATCH_SIZE": "16",
            "FAULTWATCH_PREDICTION_LOG": "/tmp/p.sqlite",
            "FAULTWATCH_PREDICTION_LOG_TIMEOUT": "2.5",
            "FAULTWATCH_TRACE_PREDICTIONS": "1",
        }
    )
    assert (s.batch_size, s.prediction_log, s.prediction_log_timeout_s) == (
        16,
        Path("/tmp/p.sqlite"),
        2.5,
    )
    assert s.trace_predictions is True and s.batching == "queue"
    assert s.as_dict()["FAULTWATCH_PREDICTION_LOG_TIMEOUT"] == 2.5
    with pytest.raises(
        SettingsError, match="FAULTWATCH_BATCHING='fast': expected queue or bentoml"
    ):
        ServeSettings.from_env({"FAULTWATCH_BATCHING": "fast"})
    with pytest.raises(SettingsError, match="FAULTWATCH_MAX_QUEUE='many'"):
        ServeSettings.from_env({"FAULTWATCH_MAX_QUEUE": "many"})
    with pytest.raises(SettingsError, match="must not exceed FAULTWATCH_MAX_QUEUE"):
        ServeSettings.from_env({"FAULTWATCH_BATCH_SIZE": "64", "FAULTWATCH_MAX_QUEUE": "8"})


def test_a_failed_log_write_raises_a_named_error_and_leaves_the_log_usable(tmp_path):
    """A locked log: PredictionLogError naming the file; once unlocked, appends work again."""

    from faultwatch.serve.predlog import PredictionLogError

    path = tmp_path / "p.sqlite"
    log = open_log(path, timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(
        PredictionLogError, match=f"{path}: could not write 1 rows: database is locked"
    ):
        log.append([entry()])
    other.execute("ROLLBACK")
    log.append([entry()])
    assert log.count() == 1


# ---------------------------------------------------------------- limits and the store
def test_limits_come_from_metadata_then_environment(monkeypatch):
    from faultwatch.data.params import DataParams

    defaults, data = ServingLimits.resolve({}), DataParams()
    assert (defaults.min_length, defaults.max_length) == (data.min_length, data.max_length)
    meta = {"input_schema": {"min_length": 32, "max_length": 500}}
    assert ServingLimits.resolve(meta).max_length == 500
    monkeypatch.setenv("FAULTWATCH_MAX_LENGTH", "400")
    assert ServingLimits.resolve(meta) == ServingLimits(min_length=32, max_length=400)
    monkeypatch.setenv("FAULTWATCH_MIN_LENGTH", "401")
    with pytest.raises(ValueError, match="min_length"):
        ServingLimits.resolve(meta)


def test_store_round_trip_and_metadata(store):
    import bentoml

    from faultwatch.model.io import load_model
    from faultwatch.serve.store import load_from_store, read_threshold

    _, model_dir, tag = store
    entry_ = bentoml.models.get(tag)
    assert entry_.info.labels == {"stage": "test"}
    assert entry_.info.metadata["threshold"] == THRESHOLD
    assert entry_.info.metadata["weights_sha256"] == load_model(model_dir).meta["weights_sha256"]
    assert read_threshold(entry_.path) == THRESHOLD
    x = [np.asarray(v) for v in make_signals()["values"]]
    np.testing.assert_array_equal(
        load_from_store(tag).predict_proba(x), load_model(model_dir).predict_proba(x)
    )


def test_store_refuses_tampered_weights(store, tmp_path):
    import shutil

    import bentoml

    from faultwatch.model.io import WeightsTampered
    from faultwatch.serve.store import StoreError, import_model, load_from_store

    _, model_dir, _ = store
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    with pytest.raises(StoreError, match="threshold"):
        import_model(bad, 1.5)
    tag = import_model(bad, 0.5)
    weights = Path(bentoml.models.get(tag).path) / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsTampered, match="sha256"):
        load_from_store(tag)
    bentoml.models.delete(tag)


# ---------------------------------------------------------------- the server
@pytest.mark.slow
def test_probes_and_prometheus_metrics(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    client.post("/predict", json={"signal": list(np.sin(np.arange(50.0)))})
    m = client.get("/metrics")
    assert m.status_code == 200
    assert m.headers["content-type"].startswith("text/plain")
    assert "# TYPE bentoml_service_request_duration_seconds histogram" in m.text
    assert 'endpoint="/predict"' in m.text


@pytest.mark.slow
def test_server_predictions_equal_the_in_process_model(client, store):
    from faultwatch.model.io import load_model

    _, model_dir, tag = store
    signals = [v.tolist() for v in make_signals()["values"]]
    expected = load_model(model_dir).predict_proba([np.asarray(s) for s in signals])
    version = tag.split(":")[1]

    one = [client.post("/predict", json={"signal": s}) for s in signals[:10]]
    assert all(r.status_code == 200 for r in one), one[0].text
    batch: list[dict] = []
    for i in range(0, len(signals), MAX_BATCH):
        r = client.post("/predict_batch", json={"signals": signals[i : i + MAX_BATCH]})
        assert r.status_code == 200, r.text
        batch += r.json()["predictions"]
    np.testing.assert_allclose([r.json()["probability"] for r in one], expected[:10], atol=1e-6)
    np.testing.assert_allclose([b["probability"] for b in batch], expected, atol=1e-6)
    for b in batch:
        assert b["is_fault"] == (b["probability"] >= THRESHOLD)
        assert b["label"] == ("fault" if b["is_fault"] else "healthy")
        assert (b["threshold"], b["model_version"]) == (THRESHOLD, version)


def test_an_npy_body_gives_the_models_answer_and_a_bad_one_its_rule(client, store):
    """A univariate model's binary form: (samples,) to /predict, (signals, samples) to
    /predict_batch; a second axis to /predict is a 422 naming the shape expected."""
    from faultwatch.model.io import load_model
    from faultwatch.serve.binary import npy_body

    npy = {"content-type": "application/x-npy"}
    signals = [v for v in make_signals()["values"] if len(v) == len(make_signals()["values"][0])]
    expected = load_model(store[1]).predict_proba(signals[:4])
    one = [client.post("/predict", content=npy_body(v), headers=npy) for v in signals[:4]]
    assert all(r.status_code == 200 for r in one), one[0].text
    r = client.post("/predict_batch", content=npy_body(np.stack(signals[:4])), headers=npy)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([r.json()["probability"] for r in one], expected, atol=1e-6)
    np.testing.assert_allclose(
        [p["probability"] for p in r.json()["predictions"]], expected, atol=1e-6
    )
    r = client.post("/predict", content=npy_body(np.stack(signals[:2])), headers=npy)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "shape", r.text
    assert "expected one signal (samples,)" in r.json()["error"]


@pytest.mark.slow
def test_concurrent_batches_get_their_own_answers(client, store, server):
    """Adaptive batching merges concurrent requests: each must still get its own results."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from faultwatch.model.io import load_model

    signals = [v.tolist() for v in make_signals(n_healthy=30, n_fault=10, seed=3)["values"]]
    expected = load_model(store[1]).predict_proba([np.asarray(s) for s in signals])
    requests = [signals[i : i + 4] for i in range(0, len(signals), 4)]  # 10 of 4

    def call(batch: list[list[float]]) -> list[float]:
        with httpx.Client(base_url=server[0], timeout=30) as c:
            r = c.post("/predict_batch", json={"signals": batch})
            assert r.status_code == 200, r.text
            return [p["probability"] for p in r.json()["predictions"]]

    before = rows(server[1])
    with ThreadPoolExecutor(8) as pool:
        got = [p for answer in pool.map(call, requests) for p in answer]
    np.testing.assert_allclose(got, expected, atol=1e-6)

    with sqlite3.connect(server[1]) as conn:
        sizes = conn.execute(
            "SELECT batch_size FROM predictions WHERE id > ?", (before,)
        ).fetchall()
    assert len(sizes) == len(signals)
    # a request's 4 signals share one model call (with other requests' signals if they overlap)
    assert min(s for (s,) in sizes) >= 4


BODY_10_MB = b'{"signal": [' + b"0.5, " * 2_100_000 + b"0.5]}"
S, SS = "signal", "signals"
# id: (path, body bytes, content type, (status, loc of the first error, its rule))
BAD_REQUESTS = {
    "nan": ("/predict", numbers(["NaN"]), JSON, (400, [S, 0], "finite_number")),
    "infinity": ("/predict", numbers(["1.0", "Infinity"]), JSON, (400, [S, 1], "finite_number")),
    "minus_infinity": ("/predict", numbers(["-Infinity"]), JSON, (400, [S, 0], "finite_number")),
    "overflow_to_inf": ("/predict", numbers(["1e400"]), JSON, (400, [S, 0], "finite_number")),
    "too_large_value": ("/predict", numbers(["1e300"]), JSON, (400, [S, 0], "less_than_equal")),
    "string_sample": ("/predict", numbers(['"1.5"']), JSON, (400, [S, 0], "float_type")),
    "boolean_sample": ("/predict", numbers(["true"]), JSON, (400, [S, 0], "float_type")),
    "null_sample": ("/predict", numbers(["null"]), JSON, (400, [S, 0], "float_type")),
    "string_signal": ("/predict", b'{"signal": "1, 2, 3"}', JSON, (400, [S], "list_type")),
    "empty_list": ("/predict", b'{"signal": []}', JSON, (400, [S], "too_short")),
    "nested_lists": (
        "/predict",
        json.dumps({"signal": [good_signal(20)] * 2}).encode(),
        JSON,
        (400, [S, 0], "float_type"),
    ),
    "too_short": ("/predict", b'{"signal": [1.0, 2.0, 3.0]}', JSON, (400, [S], "too_short")),
    "too_long": (
        "/predict",
        json.dumps({"signal": [0.5] * 2001}).encode(),
        JSON,
        (400, [S], "too_long"),
    ),
    "missing_field": ("/predict", b"{}", JSON, (400, [S], "missing")),
    "wrong_field_name": (
        "/predict",
        json.dumps({"signals": good_signal()}).encode(),
        JSON,
        (400, [S], "missing"),
    ),
    "empty_body": ("/predict", b"", JSON, (400, [S], "missing")),
    "null_body": ("/predict", b"null", JSON, (400, ["body"], "model_type")),
    "array_body": (
        "/predict",
        json.dumps(good_signal()).encode(),
        JSON,
        (400, ["body"], "model_type"),
    ),
    "invalid_json": ("/predict", b'{"signal": [1.0, 2.0', JSON, (400, ["body"], "json_invalid")),
    "text_plain": (
        "/predict",
        json.dumps({"signal": good_signal()}).encode(),
        "text/plain",
        (415, ["body"], "unsupported_media_type"),
    ),
    "form_encoded": (
        "/predict",
        b"signal=1&signal=2",
        "application/x-www-form-urlencoded",
        (415, ["body"], "unsupported_media_type"),
    ),
    "multipart": (
        "/predict",
        b"--x\r\n\r\n--x--",
        "multipart/form-data; boundary=x",
        (415, ["body"], "unsupported_media_type"),
    ),
    "pickle": (
        "/predict",
        b"\x80\x04N.",
        "application/vnd.bentoml+pickle",
        (415, ["body"], "unsupported_media_type"),
    ),
    "no_content_type": (
        "/predict",
        json.dumps({"signal": good_signal()}).encode(),
        None,
        (415, ["body"], "unsupported_media_type"),
    ),
    "body_10_mb": ("/predict", BODY_10_MB, JSON, (413, ["body"], "body_too_large")),
    "batch_empty": ("/predict_batch", b'{"signals": []}', JSON, (400, [SS], "too_short")),
    "batch_too_large": (
        "/predict_batch",
        json.dumps({"signals": [good_signal()] * (MAX_BATCH + 1)}).encode(),
        JSON,
        (400, [SS], "too_long"),
    ),
    "batch_one_bad_signal": (
        "/predict_batch",
        b'{"signals": [[' + b"0.5, " * 30 + b"0.5], [" + b"0.5, " * 30 + b"NaN]]}",
        JSON,
        (400, [SS, 1, 30], "finite_number"),
    ),
    "batch_not_nested": (
        "/predict_batch",
        json.dumps({"signals": good_signal(4)}).encode(),
        JSON,
        (400, [SS, 0], "list_type"),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_names_the_field_and_the_rule(client, server, case):
    """Every 4xx: status, and the first error's `loc` and `type` exactly; the top-level
    `error` names them too ("signal.0: <msg> (finite_number)"); recorded as rejected."""
    path, body, ctype, (status, loc, rule) = BAD_REQUESTS[case]
    headers = {"content-type": ctype} if ctype else {}
    before, rejected = rows(server[1]), rows(server[1], "rejected")
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == status, (r.status_code, r.text[:500])
    answer = r.json()
    first = answer["detail"][0]
    assert (first["loc"], first["type"]) == (loc, rule), answer
    assert first["msg"]
    where = ".".join(map(str, loc))
    assert answer["error"].startswith(f"{where}: {first['msg']} ({rule})"), answer["error"]
    assert rows(server[1]) == before  # nothing logged as a prediction
    assert rows(server[1], "rejected") == rejected + 1
    with sqlite3.connect(server[1]) as conn:
        reason, detail = conn.execute(
            "SELECT reason, detail FROM rejected ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert rule in reason.split(",") and detail.startswith(f"{where}: ")
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_clients_that_send_the_whole_body_first_read_the_413(server):
    """urllib and requests send a 10 MB body before reading: they get the 413 and its message
    (the server reads and discards the body up to its drain bound), not a connection reset."""
    import http.client
    import urllib.error
    import urllib.request

    import requests

    url = server[0]
    expected = (
        f"body: request body is {len(BODY_10_MB)} bytes; the limit is {4 * 1024 * 1024} bytes"
    )
    req = urllib.request.Request(f"{url}/predict", data=BODY_10_MB, headers={"content-type": JSON})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=30)
    assert caught.value.code == 413
    assert json.loads(caught.value.read())["error"] == f"{expected} (body_too_large)"

    r = requests.post(f"{url}/predict", data=BODY_10_MB, headers={"content-type": JSON}, timeout=30)
    assert (r.status_code, r.json()["detail"][0]["type"]) == (413, "body_too_large")
    assert r.json()["error"] == f"{expected} (body_too_large)"
    # any refusal reads the body first: a wrong content type too
    r = requests.post(f"{url}/predict", data=BODY_10_MB, headers={"content-type": "text/plain"})
    assert (r.status_code, r.json()["detail"][0]["type"]) == (415, "unsupported_media_type")

    # chunked (no Content-Length): the size is known once the body was read to its end
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    chunks = (BODY_10_MB[i : i + 65536] for i in range(0, len(BODY_10_MB), 65536))
    conn.request("POST", "/predict", chunks, {"content-type": JSON}, encode_chunked=True)
    answer = conn.getresponse()
    assert answer.status == 413
    assert json.loads(answer.read())["error"] == f"{expected} (body_too_large)"
    conn.close()
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200


def raw_request(url: str, headers: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
    return sock


@pytest.mark.slow
def test_a_body_past_the_drain_bound_is_cut_off(server):
    """The server reads a refused body no further than its bound (16 MiB here): a client that
    keeps sending is cut off; one that declares more, or asks to go ahead, is answered at once."""
    url = server[0]
    sent, chunk = 0, b"%x\r\n%s\r\n" % (1 << 20, b"0" * (1 << 20))
    with raw_request(url, f"Content-Type: {JSON}\r\nTransfer-Encoding: chunked\r\n") as sock:
        with pytest.raises(OSError):  # reset or broken pipe, once the server closed
            while sent < 256 * 2**20:
                sock.sendall(chunk)
                sent += 1 << 20
    # what the kernels buffer on both sides (well under 48 MiB on loopback) comes on top
    assert DRAIN_BYTES <= sent < DRAIN_BYTES + 48 * 2**20

    for extra in (
        f"Content-Length: {DRAIN_BYTES + 1}",
        "Content-Length: 10000000\r\nExpect: 100-continue",
    ):
        with raw_request(url, f"Content-Type: {JSON}\r\n{extra}\r\n") as sock:
            answer = sock.recv(65536).decode()  # nothing of the body was sent
        assert answer.startswith("HTTP/1.1 413 "), answer
        assert "connection: close" in answer.lower()
    import httpx

    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200


@pytest.mark.slow
def test_wrong_method_is_a_4xx(client):
    r = client.get("/predict")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    assert (r.json()["detail"][0]["loc"], r.json()["detail"][0]["type"]) == (
        ["method"],
        "method_not_allowed",
    )
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_log_holds_one_row_per_good_request_and_counts_rejections(client, server, store):

    log_path = server[1]
    before, rejected_before = rows(log_path), rows(log_path, "rejected")
    for n in (16, 50, 2000):  # the length limits are inclusive
        assert client.post("/predict", json={"signal": good_signal(n)}).status_code == 200
    r = client.post("/predict_batch", json={"signals": [good_signal(30), good_signal(70)]})
    assert r.status_code == 200
    assert (
        client.post(
            "/predict", content=numbers(["NaN"]), headers={"content-type": JSON}
        ).status_code
        == 400
    )
    assert rows(log_path) == before + 5
    assert rows(log_path, "rejected") == rejected_before + 1
    with sqlite3.connect(log_path) as conn:
        conn.row_factory = sqlite3.Row
        last = conn.execute("SELECT * FROM predictions ORDER BY id DESC LIMIT 5").fetchall()
        reject = conn.execute("SELECT * FROM rejected ORDER BY id DESC LIMIT 1").fetchone()
    assert [row["n"] for row in last] == [70, 30, 2000, 50, 16]
    assert [row["endpoint"] for row in last] == ["predict_batch"] * 2 + ["predict"] * 3
    assert {row["model_version"] for row in last} == {store[2].split(":")[1]}
    assert all(row["latency_ms"] > 0 and row["n_nonfinite"] == 0 for row in last)
    assert last[0]["batch_size"] >= 2
    assert (reject["status"], reject["reason"]) == (400, "finite_number")
    assert "signal.0" in reject["detail"]


@contextlib.contextmanager
def log_locked(log_path: Path):
    """Another writer holds the prediction log's write lock until the block ends."""
    conn = sqlite3.connect(log_path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def post_in_thread(url: str, path: str, body: dict) -> tuple[threading.Thread, dict]:
    """POST from a thread; the result dict gets status, json and the time the answer came."""
    import httpx

    result: dict = {}

    def call() -> None:
        r = httpx.post(f"{url}{path}", json=body, timeout=30)
        result.update(status=r.status_code, json=r.json(), at=time.monotonic())

    t = threading.Thread(target=call, daemon=True)
    t.start()
    return t, result


@pytest.mark.slow
def test_an_answer_waits_for_its_row_in_the_log(server):
    """While another writer holds the log's lock, a prediction is not answered; it is once
    its row is committed. An answer sent before (or beside) the write would arrive at once."""
    url, log_path, _ = server
    before = rows(log_path)
    with log_locked(log_path):
        t, result = post_in_thread(url, "/predict", {"signal": good_signal(33)})
        t.join(1.0)  # well inside the server's lock timeout (LOG_TIMEOUT_S)
        assert not result, f"answered while its row could not be written: {result}"
        released = time.monotonic()
    t.join(30)
    assert result["status"] == 200, result
    assert result["at"] >= released
    assert rows(log_path) == before + 1


@pytest.mark.slow
def test_a_prediction_the_log_cannot_hold_is_not_answered(server, client):
    """A log locked past the server's timeout: the client gets a 503 that says why, no
    prediction, and no row; once the log is free again, predictions are answered."""
    url, log_path, _ = server
    before = rows(log_path)
    with log_locked(log_path):
        t, result = post_in_thread(url, "/predict_batch", {"signals": [good_signal(30)] * 2})
        t.join(LOG_TIMEOUT_S + 20)
    assert result["status"] == 503, result
    assert "probability" not in json.dumps(result["json"])
    assert result["json"]["detail"][0]["type"] == "prediction_log_unavailable"
    error = result["json"]["error"]
    assert error.startswith("the prediction could not be recorded, so it is not answered: ")
    assert f"{log_path}: could not write 2 rows: database is locked" in error
    assert rows(log_path) == before
    assert client.post("/predict", json={"signal": good_signal(31)}).status_code == 200
    assert rows(log_path) == before + 1


@pytest.mark.slow
def test_a_killed_worker_loses_no_acknowledged_prediction(client, server):
    """SIGKILL the serving worker after answers were sent: every answered request is logged.
    The supervisor then starts a new worker. Runs last: it restarts the server's worker."""
    import psutil

    url, log_path, proc = server
    before = rows(log_path)
    answered = sum(
        client.post("/predict", json={"signal": good_signal(20 + i)}).status_code == 200
        for i in range(20)
    )
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers
    for w in workers:
        w.kill()
    assert rows(log_path) == before + answered == before + 20


# ---------------------------------------------------------------- refused at start, isolation
@pytest.mark.slow
def test_a_store_entry_whose_files_were_swapped_is_refused_at_start(store, spike_model, tmp_path):
    """Both files of an entry replaced by another model's (each pair consistent, so model.json
    alone cannot tell): `bentoml serve` stops at once, non-zero, naming the entry; it never
    becomes ready and does not restart its workers in a loop."""
    import shutil

    import bentoml

    from faultwatch.serve.store import import_model

    home, model_dir, _ = store
    tag = str(import_model(model_dir, THRESHOLD, metadata={"input_schema": {"min_length": 16}}))
    entry_dir = Path(bentoml.models.get(tag).path)
    for name in ("weights.safetensors", "model.json"):
        shutil.copy2(spike_model[0] / name, entry_dir / name)
    port = free_port()
    log = tmp_path / "server.log"
    try:
        env = server_env(home, tag, tmp_path / "p.sqlite")
        with started(serve_cmd(port), REPO, env, log) as proc:
            code = wait_exit(proc, log, f"http://127.0.0.1:{port}", timeout_s=60)
    finally:
        bentoml.models.delete(tag)
    out = log.read_text()
    assert code != 0, out[-3000:]
    assert f"store entry {tag}: weights sha256" in out, out[-3000:]
    assert "is not the one recorded at registration" in out
    assert "Application startup" not in out  # no worker was started


@pytest.mark.slow
def test_one_bad_signal_does_not_fail_its_neighbours(spike_server, spike_model):
    """A signal the model fails on (NaN probability) shares a model call with other clients'
    signals: only its own request fails (500, naming the signal); the others get 200.

    The shared call is forced: while the log is locked, the first request's batch waits in its
    log write, and everything sent meanwhile queues into the next model call."""
    from faultwatch.model.io import load_model

    url, log_path = spike_server
    goods = [good_signal(20 + i) for i in range(5)]
    expected = load_model(spike_model[0]).predict_proba([np.asarray(g) for g in goods])
    assert np.isnan(load_model(spike_model[0]).predict_proba([np.asarray(SPIKE)])).all()
    with log_locked(log_path):
        first = post_in_thread(url, "/predict", {"signal": good_signal(50)})
        time.sleep(0.5)  # the first batch is now waiting for the lock
        calls = [post_in_thread(url, "/predict", {"signal": g}) for g in goods[:3]]
        calls.append(post_in_thread(url, "/predict_batch", {"signals": [SPIKE, goods[0]]}))
        calls += [post_in_thread(url, "/predict_batch", {"signals": goods[3:]})]
        time.sleep(2.0)  # all of them queued behind the first batch
    for t, _ in [first, *calls]:
        t.join(30)
    answers = [result for _, result in calls]
    assert first[1]["status"] == 200
    assert [a["status"] for a in answers] == [200, 200, 200, 500, 200], answers
    got = [a["json"]["probability"] for a in answers[:3]]
    got += [p["probability"] for p in answers[4]["json"]["predictions"]]
    np.testing.assert_allclose(got, expected[[0, 1, 2, 3, 4]], atol=1e-6)
    failed = answers[3]["json"]
    assert failed["detail"][0]["loc"] == ["signals", 0]
    assert failed["detail"][0]["type"] == "model_failure"
    assert failed["error"] == (
        "signals.0: the model failed on this signal: "
        "the model returned a non-finite probability (model_failure)"
    )
    with sqlite3.connect(log_path) as conn:
        logged = conn.execute("SELECT endpoint, n, batch_size FROM predictions").fetchall()
    # the first request, then 3 + 2 good signals answered from one model call of 7 signals
    # (the failing request's two signals included, neither of them logged)
    assert sorted(logged) == sorted(
        [("predict", 50, 1)] + [("predict", n, 7) for n in (20, 21, 22)]
        + [("predict_batch", n, 7) for n in (23, 24)]
    )  # fmt: skip


# ---------------------------------------------------------------- faultwatch serve
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_faultwatch_serve_from_a_subfolder_serves_the_packaged_bento(packaged, tmp_path):
    """`faultwatch serve` typed in notebooks/, with no BENTOML_HOME: the project's store, the
    bento the package stage built, the project's prediction log; ready, and it predicts."""
    import httpx

    root, pkg = packaged
    cwd, port = root / "notebooks", free_port()
    cmd = [str(VENV_BIN / "faultwatch"), "serve", "--port", str(port)]
    shown = subprocess.run(
        [*cmd, "--show-config"], cwd=cwd, env=user_env(), capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)
    assert (config["target"], config["model_tag"]) == (pkg["bento_tag"], pkg["model_tag"])
    assert config["BENTOML_HOME"] == str(root / ".bentoml")
    log_path = root / "reports" / "serving" / "predictions.sqlite"
    assert config["prediction_log"] == str(log_path)
    assert config["settings"]["FAULTWATCH_MODEL_TAG"] == pkg["model_tag"]
    assert config["limits"]["max_length"] == 2000  # the model's input schema

    from faultwatch import registry

    version = registry.register({"model_tag": pkg["model_tag"]}, root)
    for what, target in [
        (version, pkg["bento_tag"]),  # the bento that packages the version's model
        (pkg["model_tag"], "faultwatch.serve.service:FaultDetector"),
        (pkg["bento_tag"].split(":")[1], pkg["bento_tag"]),
    ]:
        p = subprocess.run(
            [*cmd, what, "--show-config"], cwd=cwd, env=user_env(), capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        assert (json.loads(p.stdout)["target"], json.loads(p.stdout)["model_tag"]) == (
            target,
            pkg["model_tag"],
        )

    # a port another server holds: a message naming it and the way out, no traceback
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        p = subprocess.run(
            [*cmd[:-1], str(taken)], cwd=cwd, env=user_env(), capture_output=True, text=True
        )
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"127.0.0.1:{taken}: cannot listen there (Address already in use)" in p.stderr
    assert "--port" in p.stderr and "Traceback" not in p.stderr

    url, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    with started(cmd, cwd, user_env(), log) as proc:
        wait_ready(url, proc, log, timeout_s=120)
        r = httpx.post(f"{url}/predict", json={"signal": good_signal(40)}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == pkg["model_tag"].split(":")[1]
    assert f"serving bento {pkg['bento_tag']} with {pkg['model_tag']}" in log.read_text()
    assert rows(log_path) == 1


@pytest.mark.slow
def test_a_bad_store_fails_at_once_with_a_message(packaged, tmp_path):
    """A BENTOML_HOME that does not exist, a bento that is not there: `faultwatch serve` exits
    1 at once, saying what is missing. The README's old command (a relative BENTOML_HOME,
    which does not resolve in the bento's folder) stops too, instead of restarting workers."""
    root, _ = packaged
    serve = [str(VENV_BIN / "faultwatch"), "serve", "--port", str(free_port())]
    missing = root / "no-such-store"
    cases = [
        ([], {"BENTOML_HOME": str(missing)}, f"BENTOML_HOME {missing}: no such folder"),
        (["faultwatch:nope"], {}, f"no bento faultwatch:nope in {root / '.bentoml' / 'bentos'}"),
        (["fault_cnn:nope"], {}, f"model fault_cnn:nope is not in the store {root / '.bentoml'}"),
    ]
    for args, env, message in cases:
        started_at = time.monotonic()
        p = subprocess.run(
            [*serve, *args],
            cwd=root,
            env=user_env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert p.stderr.startswith(f"error: {message}"), p.stderr
        assert time.monotonic() - started_at < 30

    port = free_port()
    readme = [str(VENV_BIN / "bentoml"), "serve", "faultwatch:latest", "--port", str(port)]
    log = tmp_path / "readme.log"
    with started(readme, root, user_env(BENTOML_HOME=".bentoml"), log) as proc:
        code = wait_exit(proc, log, f"http://127.0.0.1:{port}", timeout_s=60)
    out = log.read_text()
    assert code != 0, out[-3000:]
    assert "BENTOML_HOME=.bentoml: no such folder" in out, out[-3000:]
    assert "run `faultwatch serve`" in out
