"""The serving layer: prediction log, model store, and a real BentoML server over HTTP.

The server tests (marked slow) share one `bentoml serve` process for the module, on a free
port, with its own BENTOML_HOME and prediction log under tmp.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import VENV_BIN, make_signals, tool_env

from faultwatch.serve.predlog import InputSummary, LoggedPrediction, PredictionLog
from faultwatch.serve.schema import ServingLimits

REPO = Path(__file__).resolve().parents[1]
INPUT_LENGTH = 64
THRESHOLD = 0.3
MAX_BATCH = 8  # the server's limit, set small through the environment


# ---------------------------------------------------------------- fixtures
def save_tiny_model(model_dir: Path) -> Path:
    import torch

    from faultwatch.model.io import save_model
    from faultwatch.model.network import FaultCNN

    torch.manual_seed(0)
    net = FaultCNN(channels=(4, 8), kernel_size=5, dropout=0.0)
    save_model(model_dir, net, {"input_length": INPUT_LENGTH, "positive_label": "fault"})
    return model_dir


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, Path, str]:
    """(BENTOML_HOME, the saved model folder, the store tag) with one imported model."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from faultwatch.serve.store import import_model

    tmp = tmp_path_factory.mktemp("store")
    home = tmp / "bentoml"
    (home / "models").mkdir(parents=True)
    model_dir = save_tiny_model(tmp / "model")
    # point this process's model store at the temporary home, whatever BENTOML_HOME says
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        tag = import_model(
            model_dir,
            THRESHOLD,
            labels={"stage": "test"},
            metadata={"input_schema": {"min_length": 16, "max_length": 2000}},
        )
        yield home, model_dir, str(tag)
    finally:
        BentoMLContainer.model_store.reset()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    """A `bentoml serve` of the service; yields (base url, prediction log path, process)."""
    import httpx

    home, _, tag = store
    tmp = tmp_path_factory.mktemp("server")
    log_path = tmp / "predictions.sqlite"
    port = free_port()
    env = tool_env(
        BENTOML_HOME=str(home),
        FAULTWATCH_MODEL_TAG=tag,
        FAULTWATCH_PREDICTION_LOG=str(log_path),
        FAULTWATCH_MAX_BATCH=str(MAX_BATCH),
        FAULTWATCH_TORCH_THREADS="1",
        BENTOML_DO_NOT_TRACK="true",
    )
    out = open(tmp / "server.log", "w")  # closed in teardown
    proc = subprocess.Popen(
        [str(VENV_BIN / "bentoml"), "serve", "faultwatch.serve.service:FaultDetector",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
            pytest.fail(f"server did not start:\n{(tmp / 'server.log').read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    yield url, log_path, proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out.close()


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


def rows(log_path: Path, table: str = "predictions") -> int:
    import sqlite3

    with sqlite3.connect(log_path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# ---------------------------------------------------------------- the prediction log
def entry(p: float = 0.7) -> LoggedPrediction:
    summary = InputSummary.of(np.arange(10.0))
    return LoggedPrediction("predict", "v1", summary, p, "fault", p >= 0.5, 0.5, 1.2, 1)


def test_prediction_log_is_wal_and_counts_rows(tmp_path):
    log = PredictionLog(tmp_path / "p.sqlite")
    log.append([entry(0.1), entry(0.9)])
    log.reject("/predict", 400, "finite_number", "signal.0: Input should be a finite number", 20)
    assert (log.count(), log.count("rejected")) == (2, 1)
    assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    log.close()
    full = PredictionLog(tmp_path / "p.sqlite", synchronous="full")
    assert full._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(ValueError, match="FAULTWATCH_PREDICTION_LOG_SYNC"):
        PredictionLog(tmp_path / "q.sqlite", synchronous="OFF")


def test_input_summary_counts_non_finite_values():
    s = InputSummary.of([1.0, np.nan, 3.0, np.inf])
    assert (s.n, s.n_nonfinite, s.mean, s.min, s.max) == (4, 2, 2.0, 1.0, 3.0)


def test_a_killed_process_loses_no_acknowledged_row(tmp_path):
    """Rows acknowledged (append returned) before a SIGKILL are all in the file afterwards."""
    path = tmp_path / "p.sqlite"
    code = textwrap.dedent(
        f"""
        import os, signal
        from faultwatch.serve.predlog import InputSummary, LoggedPrediction, PredictionLog
        log = PredictionLog({str(path)!r})
        e = LoggedPrediction("predict", "v1", InputSummary.of([1.0, 2.0]), 0.7, "f", True, 0.5, 1.0, 1)
        for i in range(200):
            log.append([e])
            print(i + 1, flush=True)  # the acknowledgement
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=tool_env()
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
    import sqlite3

    with sqlite3.connect(server[1]) as conn:
        sizes = conn.execute(
            "SELECT batch_size FROM predictions WHERE id > ?", (before,)
        ).fetchall()
    assert len(sizes) == len(signals)
    # a request's 4 signals share one model call (with other requests' signals if they overlap)
    assert min(s for (s,) in sizes) >= 4


def good_signal(n: int = 40) -> list[float]:
    return np.sin(np.linspace(0, 6, n)).round(5).tolist()


def numbers(tokens: list[str], n: int = 40) -> bytes:
    """A /predict body whose samples are raw JSON tokens (NaN and Infinity are not JSON)."""
    return ('{"signal": [' + ", ".join(tokens + ["0.5"] * (n - len(tokens))) + "]}").encode()


JSON = "application/json"
BAD_REQUESTS = {
    # id: (path, body bytes, content type)
    "nan": ("/predict", numbers(["NaN"]), JSON),
    "infinity": ("/predict", numbers(["1.0", "Infinity"]), JSON),
    "minus_infinity": ("/predict", numbers(["-Infinity"]), JSON),
    "overflow_to_inf": ("/predict", numbers(["1e400"]), JSON),
    "too_large_value": ("/predict", numbers(["1e300"]), JSON),
    "string_sample": ("/predict", numbers(['"1.5"']), JSON),
    "boolean_sample": ("/predict", numbers(["true"]), JSON),
    "null_sample": ("/predict", numbers(["null"]), JSON),
    "string_signal": ("/predict", b'{"signal": "1, 2, 3"}', JSON),
    "empty_list": ("/predict", b'{"signal": []}', JSON),
    "nested_lists": ("/predict", json.dumps({"signal": [good_signal(20)] * 2}).encode(), JSON),
    "too_short": ("/predict", json.dumps({"signal": [1.0, 2.0, 3.0]}).encode(), JSON),
    "too_long": ("/predict", json.dumps({"signal": [0.5] * 2001}).encode(), JSON),
    "missing_field": ("/predict", b"{}", JSON),
    "wrong_field_name": ("/predict", json.dumps({"signals": good_signal()}).encode(), JSON),
    "empty_body": ("/predict", b"", JSON),
    "null_body": ("/predict", b"null", JSON),
    "array_body": ("/predict", json.dumps(good_signal()).encode(), JSON),
    "invalid_json": ("/predict", b'{"signal": [1.0, 2.0', JSON),
    "text_plain": ("/predict", json.dumps({"signal": good_signal()}).encode(), "text/plain"),
    "form_encoded": ("/predict", b"signal=1&signal=2", "application/x-www-form-urlencoded"),
    "multipart": ("/predict", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x"),
    "pickle": ("/predict", b"\x80\x04N.", "application/vnd.bentoml+pickle"),
    "no_content_type": ("/predict", json.dumps({"signal": good_signal()}).encode(), None),
    "body_10_mb": ("/predict", b'{"signal": [' + b"0.5, " * 2_100_000 + b"0.5]}", JSON),
    "batch_empty": ("/predict_batch", b'{"signals": []}', JSON),
    "batch_too_large": (
        "/predict_batch",
        json.dumps({"signals": [good_signal()] * (MAX_BATCH + 1)}).encode(),
        JSON,
    ),
    "batch_one_bad_signal": (
        "/predict_batch",
        b'{"signals": [[' + b"0.5, " * 30 + b"0.5], [" + b"0.5, " * 30 + b"NaN]]}",
        JSON,
    ),
    "batch_not_nested": ("/predict_batch", json.dumps({"signals": good_signal()}).encode(), JSON),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_a_4xx_with_a_message(client, server, case):
    path, body, ctype = BAD_REQUESTS[case]
    headers = {"content-type": ctype} if ctype else {}
    before = rows(server[1])
    r = client.post(path, content=body, headers=headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    answer = r.json()
    assert answer["error"], answer
    detail = answer.get("detail") or []
    assert detail and all(d["msg"] and "loc" in d for d in detail), answer
    assert rows(server[1]) == before  # nothing logged as a prediction
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_a_streamed_oversized_body_is_refused(client):
    """No Content-Length (chunked): the guard stops reading at the limit."""

    def chunks():
        yield b'{"signal": ['
        for _ in range(600):
            yield b"0.5, " * 2000
        yield b"0.5]}"

    r = client.post("/predict", content=chunks(), headers={"content-type": JSON})
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["error"]
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_wrong_method_is_a_4xx(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_log_holds_one_row_per_good_request_and_counts_rejections(client, server, store):
    import sqlite3

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
