"""What the service logs for monitoring (features, embedding, sampled raw signals), delayed
labels through POST /feedback, and its Prometheus metrics read back through a real Prometheus.

The servers come from tests/helpers/serving_fixtures.py (`server`: FAULTWATCH_LOG_SIGNALS unset,
so 0) plus one of this module's own with FAULTWATCH_LOG_SIGNALS=1; every process is started
through `started`, which stops its whole group when the test ends, failed or not. The log's
new columns and tables are read with SQL, by the names of the issue-12 contract
(predictions.rms ... band_3, predictions.embedding, signals, labels).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.processes import started
from helpers.ready import wait_exit, wait_ready
from helpers.serving import AUTH, LABELLER, MAX_BATCH, serve_cmd, server_env
from helpers.signals import make_signals

from faultwatch.features import FEATURES, monitor_features

PROMETHEUS = Path("/usr/bin/prometheus")
CHANNELS_LAST = 8  # helpers.serving.save_tiny_model: FaultCNN(channels=(4, 8))
DASHBOARD = REPO / "deploy" / "grafana" / "faultwatch.json"


def logged(log_path: Path, sql: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(log_path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


def signals(n: int, seed: int = 0) -> list[list[float]]:
    return [v.tolist() for v in make_signals(n_healthy=n, n_fault=0, seed=seed)["values"]][:n]


def predict(client, sigs: list[list[float]]) -> list[dict]:
    """Answers for `sigs`: the first through /predict, the rest in one /predict_batch."""
    r = client.post("/predict", json={"signal": sigs[0]})
    assert r.status_code == 200, r.text
    out = [r.json()]
    if len(sigs) > 1:
        r = client.post("/predict_batch", json={"signals": sigs[1:]})
        assert r.status_code == 200, r.text
        out += r.json()["predictions"]
    return out


def row_of(log_path: Path, prediction_id: str) -> sqlite3.Row:
    (row,) = logged(log_path, "SELECT * FROM predictions WHERE prediction_id = ?", prediction_id)
    return row


# ---------------------------------------------------------------- in process
def test_one_forward_pass_gives_the_same_probabilities_and_the_embedding(store):
    from faultwatch.model.io import load_model
    from faultwatch.serve.embedding import embedding_size, proba_and_embedding

    model = load_model(store[1])
    x = [np.asarray(s) for s in signals(40, seed=5)]
    for batch in (x[:1], x[:7], x):
        proba, emb = proba_and_embedding(model, batch)
        np.testing.assert_array_equal(proba, model.predict_proba(batch))  # bit for bit
        assert emb.shape == (len(batch), CHANNELS_LAST) == (len(batch), embedding_size(model))
        assert emb.dtype == np.float32
    # the embedding is the head's input: the head of it gives the logit back
    import torch

    with torch.inference_mode():
        logit = model.network.head(torch.from_numpy(emb)).squeeze(-1).numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), proba, atol=1e-6)


def test_log_signals_is_a_fraction_and_a_bad_value_names_the_variable():
    from faultwatch.serve.launch import ServePlan
    from faultwatch.serve.settings import ServeSettings, SettingsError

    assert ServeSettings.from_env({}).log_signals == 0.0
    assert ServeSettings.from_env({"FAULTWATCH_LOG_SIGNALS": "0.25"}).log_signals == 0.25
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(SettingsError, match=rf"FAULTWATCH_LOG_SIGNALS='?{re.escape(bad)}"):
            ServeSettings.from_env({"FAULTWATCH_LOG_SIGNALS": bad})
    with pytest.raises(SettingsError, match="fraction from 0 to 1"):
        ServeSettings.from_env({"FAULTWATCH_LOG_SIGNALS": "2"})
    with pytest.raises(SettingsError, match="FAULTWATCH_LOG_SIGNALS='some'"):
        ServeSettings.from_env({"FAULTWATCH_LOG_SIGNALS": "some"})
    url = "postgresql://u@localhost:5432/log"  # a URL stays a URL (a Path would eat a slash)
    assert ServeSettings.from_env({"FAULTWATCH_PREDICTION_LOG": url}).prediction_log == url
    # `faultwatch serve --show-config` prints the plan's description
    plan = ServePlan("t", "fault_cnn:x", "w", Path("/h"), Path("/l"), {}, {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAULTWATCH_LOG_SIGNALS", "0.1")
        assert plan.describe("127.0.0.1", 3000)["settings"]["FAULTWATCH_LOG_SIGNALS"] == 0.1


def test_f1_from_label_counts(tmp_path):
    from faultwatch.serve.metrics import LabelCounts, label_counts

    assert LabelCounts(4, tp=1, fp=1, fn=1).f1 == 0.5
    assert LabelCounts(3, tp=0, fp=0, fn=0).f1 is None  # nothing faulty predicted or labelled
    assert label_counts(tmp_path / "none.sqlite", "fault") == {}


# ---------------------------------------------------------------- what is logged
@pytest.mark.slow
def test_features_and_embedding_are_logged_for_both_endpoints(client, server):
    log_path = server[1]
    sigs = signals(6, seed=11)
    answers = predict(client, sigs)
    expected = monitor_features([np.asarray(s) for s in sigs])
    for answer, s, feats in zip(answers, sigs, expected, strict=True):
        row = row_of(log_path, answer["prediction_id"])
        assert row["endpoint"] == ("predict" if s is sigs[0] else "predict_batch")
        np.testing.assert_allclose([row[f] for f in FEATURES], feats, rtol=1e-9, atol=1e-12)
        emb = np.frombuffer(row["embedding"], dtype="<f4")
        assert emb.shape == (CHANNELS_LAST,) and np.all(np.isfinite(emb))
    # FAULTWATCH_LOG_SIGNALS unset (0): no raw signal kept
    ids = [a["prediction_id"] for a in answers]
    marks = ",".join("?" * len(ids))
    assert logged(log_path, f"SELECT * FROM signals WHERE prediction_id IN ({marks})", *ids) == []


@pytest.fixture(scope="module")
def sampled_server(store, tmp_path_factory):
    """A server logging every raw signal (FAULTWATCH_LOG_SIGNALS=1) into a log of its own:
    yields (base url, log path, port)."""
    home, _, tag = store
    tmp = tmp_path_factory.mktemp("sampled")
    log_path = tmp / "predictions.sqlite"
    port = free_port()
    env = server_env(home, tag, log_path, FAULTWATCH_LOG_SIGNALS="1",
                     FAULTWATCH_REALISED_F1_REFRESH="0.5")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), REPO, env, tmp / "server.log") as proc:
        wait_ready(url, proc, tmp / "server.log")
        yield url, log_path, port


@pytest.mark.slow
def test_log_signals_1_keeps_every_raw_signal(sampled_server):
    import httpx

    url, log_path, _ = sampled_server
    rng = np.random.default_rng(3)
    sigs = [(rng.standard_normal(n) * 10 ** rng.uniform(-3, 6)).tolist() for n in (16, 40, 999)]
    with httpx.Client(base_url=url, timeout=30) as c:
        answers = predict(c, sigs)
    for answer, s in zip(answers, sigs, strict=True):
        (row,) = logged(
            log_path, "SELECT * FROM signals WHERE prediction_id = ?", answer["prediction_id"]
        )
        values = np.frombuffer(zlib.decompress(row["data"]), dtype="<f4")
        assert row["n"] == len(s) == len(values)
        np.testing.assert_array_equal(values, np.asarray(s, dtype=np.float32))  # float32 round trip
        np.testing.assert_allclose(values, s, rtol=1e-7 * 2**3)


# ---------------------------------------------------------------- feedback
def feedback(client, body, **headers):
    """POST /feedback as the tests' labeller (AUTH), with `headers` over it."""
    return client.post("/feedback", json=body, headers={**AUTH, **headers})


def labels_of(log_path: Path, ids: list[str]) -> dict[str, str]:
    marks = ",".join("?" * len(ids))
    rows = logged(
        log_path, f"SELECT prediction_id, label FROM labels WHERE prediction_id IN ({marks})", *ids
    )
    return {r["prediction_id"]: r["label"] for r in rows}


@pytest.mark.slow
def test_feedback_is_accepted_once_and_refused_with_a_reason(client, server):
    log_path = server[1]
    ids = [a["prediction_id"] for a in predict(client, signals(4, seed=21))]
    r = feedback(client, {"prediction_id": ids[0], "label": "fault"})
    assert (r.status_code, r.json()) == (200, {"accepted": 1}), r.text
    r = feedback(client, {"labels": [{"prediction_id": i, "label": "healthy"} for i in ids[1:3]],
                          "source": "technician"})  # fmt: skip
    assert (r.status_code, r.json()) == (200, {"accepted": 2}), r.text
    assert labels_of(log_path, ids) == {ids[0]: "fault", ids[1]: "healthy", ids[2]: "healthy"}

    # a second label for a prediction: 409, naming it
    r = feedback(client, {"prediction_id": ids[0], "label": "healthy"})
    assert r.status_code == 409, r.text
    d = r.json()["detail"][0]
    assert (d["type"], d["loc"]) == ("duplicate_label", ["prediction_id"])
    assert ids[0] in d["msg"] and "duplicate_label" in r.json()["error"]
    # an id the log does not hold: 404
    unknown = "0" * 32
    r = feedback(client, {"prediction_id": unknown, "label": "fault"})
    assert (r.status_code, r.json()["detail"][0]["type"]) == (404, "unknown_prediction")
    assert unknown in r.json()["error"]
    # not a class of the model: 422 naming the label and the classes
    r = feedback(client, {"prediction_id": ids[3], "label": "broken"})
    assert r.status_code == 422, r.text
    d = r.json()["detail"][0]
    assert (d["type"], d["loc"]) == ("not_a_class", ["label"])
    assert "'broken'" in d["msg"] and "'healthy'" in d["msg"] and "'fault'" in d["msg"]
    assert labels_of(log_path, ids[3:]) == {}
    reasons = [r["reason"] for r in logged(log_path, "SELECT reason FROM rejected")]
    assert {"duplicate_label", "unknown_prediction", "not_a_class"} <= set(reasons)


@pytest.mark.slow
def test_a_bad_batch_writes_nothing(client, server):
    log_path = server[1]
    ids = [a["prediction_id"] for a in predict(client, signals(4, seed=31))]
    good = [{"prediction_id": i, "label": "healthy"} for i in ids[:3]]
    cases = [
        (good + [{"prediction_id": "f" * 32, "label": "fault"}], 404, ["labels", 3]),
        (good + [{"prediction_id": ids[0], "label": "fault"}], 409, ["labels", 3]),  # twice
        (good[:1] + [{"prediction_id": ids[3], "label": "Fault"}], 422, ["labels", 1, "label"]),
    ]
    for items, status, loc in cases:
        r = feedback(client, {"labels": items})
        assert r.status_code == status, r.text
        assert r.json()["detail"][0]["loc"][: len(loc)] == loc
        assert labels_of(log_path, ids) == {}  # all of a request or nothing
    r = feedback(client, {"labels": good + [{"prediction_id": ids[3], "label": "fault"}]})
    assert (r.status_code, r.json()) == (200, {"accepted": 4})


MALFORMED = {
    # body: (the key the error names, its rule)
    "missing label": ({"prediction_id": "a" * 32}, "label is required"),
    "both forms": (
        {
            "prediction_id": "a" * 32,
            "label": "fault",
            "labels": [{"prediction_id": "b" * 32, "label": "fault"}],
        },
        "not both",
    ),  # fmt: skip
    "bad id": ({"prediction_id": "not-an-id", "label": "fault"}, "prediction_id"),
    "number label": ({"prediction_id": "a" * 32, "label": 1}, "label"),
    "empty batch": ({"labels": []}, "labels"),
    "batch too long": (
        {
            "labels": [
                {"prediction_id": f"{i:032x}", "label": "fault"} for i in range(MAX_BATCH + 1)
            ]
        },
        "labels",
    ),  # fmt: skip
    "unknown key": ({"prediction_id": "a" * 32, "label": "fault", "lable": "x"}, "lable"),
    "item key": ({"labels": [{"prediction_id": "a" * 32, "labl": "fault"}]}, "labels.0"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_feedback_is_a_4xx_naming_the_key_and_is_recorded(client, server, case):
    body, named = MALFORMED[case]
    before = len(logged(server[1], "SELECT id FROM rejected"))
    r = feedback(client, body)
    assert 400 <= r.status_code < 500, r.text
    assert named in r.json()["error"], r.json()
    rejected = logged(server[1], "SELECT * FROM rejected ORDER BY id")
    assert len(rejected) == before + 1 and rejected[-1]["endpoint"] == "/feedback"
    # and not JSON at all
    r = client.post(
        "/feedback", content=b"label=fault", headers={**AUTH, "content-type": "text/plain"}
    )
    assert r.status_code == 415


@pytest.mark.slow
def test_labels_come_only_with_a_labellers_token_and_record_who_gave_them(client, server):
    """No credential: 401 (with WWW-Authenticate); another scheme: 401; an unknown token: 403;
    each refused before the body is looked at, recorded without the token (and counted:
    test_prometheus_reads_predictions_and_realised_f1), with nothing written. The tests' labeller's token: the label, with its labeller's name."""
    (answer,) = predict(client, signals(1, seed=81))
    body = {"prediction_id": answer["prediction_id"], "label": "fault"}
    wrong = "not-a-token-of-this-server-0123456789"
    before = len(logged(server[1], "SELECT * FROM rejected"))
    cases = [
        ({}, 401, "credential_missing"),
        ({"Authorization": f"Basic {wrong}"}, 401, "credential_missing"),
        ({"Authorization": f"Bearer {wrong}"}, 403, "credential_refused"),
    ]
    for headers, status, rule in cases:
        r = client.post("/feedback", json=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
        (detail,) = r.json()["detail"]
        assert (detail["type"], detail["loc"]) == (rule, ["header", "Authorization"]), detail
        assert (r.headers.get("www-authenticate") == 'Bearer realm="faultwatch"') == (
            status == 401
        ), r.headers
    rejected = logged(server[1], "SELECT * FROM rejected ORDER BY id")[before:]
    assert [(row["endpoint"], row["status"], row["reason"]) for row in rejected] == [
        ("/feedback", status, rule) for _, status, rule in cases
    ]
    assert not any(wrong in str(dict(row)) for row in rejected)  # the token is never kept
    assert wrong not in (server[1].parent / "server.log").read_text()  # nor logged
    assert labels_of(server[1], [answer["prediction_id"]]) == {}
    r = feedback(client, body)  # the tests' labeller (AUTH)
    assert r.status_code == 200, r.text
    (row,) = logged(
        server[1], "SELECT * FROM labels WHERE prediction_id = ?", body["prediction_id"]
    )
    assert (row["label"], row["labeller"]) == ("fault", LABELLER)


@pytest.mark.slow
def test_feedback_from_a_shadow_copy_is_not_recorded(client, server):
    (answer,) = predict(client, signals(1, seed=41))
    r = feedback(client, {"prediction_id": answer["prediction_id"], "label": "fault"},
                 **{"X-Faultwatch-Role": "shadow"})  # fmt: skip
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "shadow_feedback"
    assert labels_of(server[1], [answer["prediction_id"]]) == {}


# ---------------------------------------------------------------- Prometheus
def promql(base: str, query: str) -> list[dict]:
    import httpx

    r = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def wait_for(base: str, query: str, ok, timeout_s: float = 60) -> list[dict]:
    """The query's result once `ok(result)`; fails with the last result after `timeout_s`."""
    deadline, result = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        try:
            result = promql(base, query)
            if ok(result):
                return result
        except Exception:  # Prometheus still starting
            pass
        time.sleep(0.5)
    pytest.fail(f"{query}: {result} after {timeout_s} s")


@pytest.fixture
def prometheus(sampled_server, tmp_path):
    """A real Prometheus (Debian's) scraping the sampled server every second: its base URL."""
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} missing: `make system` installs Debian's prometheus")
    _, _, port = sampled_server
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: faultwatch\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    listen = f"127.0.0.1:{free_port()}"
    cmd = [str(PROMETHEUS), f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
           f"--web.listen-address={listen}"]  # fmt: skip
    with started(cmd, tmp_path, {}, tmp_path / "prometheus.log"):
        yield f"http://{listen}"


@pytest.mark.slow
def test_prometheus_reads_predictions_and_realised_f1(sampled_server, prometheus, store):
    import httpx

    url, log_path, _ = sampled_server
    version = store[2].split(":")[1]
    with httpx.Client(base_url=url, timeout=30) as c:
        answers = predict(c, signals(MAX_BATCH, seed=51))
        # true labels: the predicted class, flipped for every third answer
        truth = []
        for i, a in enumerate(answers):
            flip = i % 3 == 0
            truth.append(a["is_fault"] != flip)
        r = feedback(c, {"labels": [
            {"prediction_id": a["prediction_id"], "label": "fault" if t else "healthy"}
            for a, t in zip(answers, truth, strict=True)]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert feedback(c, {"prediction_id": "1" * 32, "label": "x"}).status_code == 422
        # refusals for want of a credential are counted too (never with the token)
        body = {"prediction_id": "1" * 32, "label": "fault"}
        assert c.post("/feedback", json=body).status_code == 401
        wrong = {"Authorization": "Bearer not-a-token-of-this-server-0123456789"}
        assert c.post("/feedback", json=body, headers=wrong).status_code == 403
    pred = np.array([a["is_fault"] for a in answers])
    true = np.array(truth)
    tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
    f1 = 2 * tp / (2 * tp + fp + fn)

    answered = len(logged(log_path, "SELECT id FROM predictions"))  # this test's and others'
    total = wait_for(
        prometheus,
        f'sum(faultwatch_predictions_total{{model_version="{version}"}})',
        lambda res: res and float(res[0]["value"][1]) >= answered,
    )
    assert float(total[0]["value"][1]) == answered
    got = wait_for(
        prometheus,
        f'faultwatch_realised_f1{{model_version="{version}"}}',
        lambda res: bool(res),
    )
    assert float(got[0]["value"][1]) == pytest.approx(f1)
    n_labels = wait_for(prometheus, "faultwatch_labels_total", lambda res: bool(res))
    assert float(n_labels[0]["value"][1]) == len(answers)
    n_faults = len(logged(log_path, "SELECT id FROM predictions WHERE is_fault = 1"))
    faults = wait_for(prometheus, "sum(faultwatch_faults_total) or vector(0)", bool)
    assert float(faults[0]["value"][1]) == n_faults
    for reason in ("not_a_class", "credential_missing", "credential_refused"):
        rejected = wait_for(
            prometheus, f'faultwatch_rejected_total{{reason="{reason}"}}', lambda res: bool(res)
        )
        assert float(rejected[0]["value"][1]) == 1, reason


# ---------------------------------------------------------------- Grafana
def test_dashboard_panels_query_metrics_the_service_exports():
    from faultwatch.serve.metrics import EXPORTED

    board = json.loads(DASHBOARD.read_text())
    assert any(v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in board["templating"]["list"])  # fmt: skip
    bentoml = {"bentoml_service_request_duration_seconds_bucket"}
    exprs = {}
    for panel in board["panels"]:
        if panel.get("type") == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        exprs[panel["title"]] = [t["expr"] for t in panel["targets"]]
        assert exprs[panel["title"]], panel["title"]
    names = {
        name
        for title, es in exprs.items()
        for e in es
        for name in re.findall(r"\b(?:faultwatch|bentoml)_[a-z0-9_]+", e)
    }
    assert names and names <= set(EXPORTED) | bentoml, names - set(EXPORTED) - bentoml
    titles = " ".join(exprs).lower()
    for topic in ("fault rate", "rejected", "f1", "latency"):
        assert topic in titles


@pytest.mark.slow
def test_metrics_endpoint_names_every_dashboard_metric(client):
    """Each metric the dashboard queries is in the service's /metrics once it has answered."""
    predict(client, signals(1, seed=61))
    client.post("/predict", json={"signal": [1.0]})  # too short: a rejection
    text = client.get("/metrics").text
    board = DASHBOARD.read_text()
    for name in set(re.findall(r"\b(?:faultwatch|bentoml)_[a-z0-9_]+", board)):
        if name.startswith(("faultwatch_realised", "faultwatch_labels")):
            continue  # only once labels exist; the Prometheus test reads them
        assert f"\n{name}" in text or text.startswith(name), name


# ---------------------------------------------------------------- through the router
@pytest.fixture
def green_beside(server, store, tmp_path):
    """A second server (green) writing the module server's log (blue): yields its url."""
    home, _, tag = store
    port = free_port()
    env = server_env(home, tag, server[1], FAULTWATCH_COLOUR="green")
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), REPO, env, tmp_path / "green.log") as proc:
        wait_ready(url, proc, tmp_path / "green.log")
        yield url


@pytest.mark.slow
def test_the_router_sends_feedback_to_the_live_colour_and_never_shadows_it(
    server, green_beside, tmp_path
):
    """Blue live, green staged with shadow on: /feedback through the router reaches blue only
    (no shadow copy), and a label for a prediction blue answered is accepted by green too."""
    import httpx

    from faultwatch.deploy.router import RouterConfig, RuntimeAPI, start, stop_pid

    blue_port = int(server[0].rsplit(":", 1)[1])
    green_port = int(green_beside.rsplit(":", 1)[1])
    cfg = RouterConfig("127.0.0.1", free_port(), tmp_path / "router")
    pid = start(cfg, {"blue": blue_port, "green": green_port}, green_beside)
    try:
        api = RuntimeAPI(cfg.sock)
        api.enable("blue")
        api.set_weight("blue", 100)
        with httpx.Client(base_url=f"http://127.0.0.1:{cfg.port}", timeout=30) as c:
            answers = predict(c, signals(3, seed=71))  # /predict, then /predict_batch
            deadline = time.monotonic() + 30
            while api.shadow_stats().get("answered", 0) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            shadowed = api.shadow_stats()
            assert shadowed["answered"] == 2, shadowed  # both predictions were copied
            r = feedback(c, {"prediction_id": answers[0]["prediction_id"], "label": "fault"})
            assert r.status_code == 200, r.text
            assert r.headers["x-faultwatch-server"] == "blue"
            time.sleep(1)
            assert api.shadow_stats()["sent"] == shadowed["sent"]  # /feedback not copied
        # green shares the log: it takes a label for what blue answered, and refuses a second
        body = {"prediction_id": answers[1]["prediction_id"], "label": "healthy"}
        assert httpx.post(f"{green_beside}/feedback", json=body, headers=AUTH).status_code == 200
        assert httpx.post(f"{server[0]}/feedback", json=body, headers=AUTH).status_code == 409
    finally:
        stop_pid(pid)
    ids = [a["prediction_id"] for a in answers]
    assert labels_of(server[1], ids) == {ids[0]: "fault", ids[1]: "healthy"}
    colours = logged(server[1], "SELECT colour, role FROM predictions WHERE role = 'shadow'")
    assert {(r["colour"], r["role"]) for r in colours} >= {("green", "shadow")}


# ---------------------------------------------------------------- servers of their own
# last in the module: a server started on the store of `server` and `sampled_server` takes their
# Prometheus files (BentoML's multiprocess folder in that store), so their metrics read nothing
@pytest.mark.slow
def test_predictions_can_be_protected_and_labels_need_tokens_configured(store, tmp_path):
    """FAULTWATCH_PREDICT_TOKENS set: /predict and /predict_batch take a token from that file;
    no FAULTWATCH_LABELLER_TOKENS: /feedback refuses every label (403), saying what to set."""
    home, _, tag = store
    clients = tmp_path / "clients"
    clients.write_text("dashboard:dashboard-token-0123456789\n")
    env = server_env(home, tag, tmp_path / "p.sqlite", FAULTWATCH_PREDICT_TOKENS=str(clients))
    env.pop("FAULTWATCH_LABELLER_TOKENS")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    import httpx

    with started(serve_cmd(port), REPO, env, tmp_path / "server.log") as proc:
        wait_ready(url, proc, tmp_path / "server.log")
        with httpx.Client(base_url=url, timeout=30) as c:
            sig = signals(2, seed=82)
            r = c.post("/predict", json={"signal": sig[0]})
            assert r.status_code == 401 and r.json()["detail"][0]["type"] == "credential_missing"
            ok = {"Authorization": "Bearer dashboard-token-0123456789"}
            r = c.post("/predict_batch", json={"signals": sig}, headers=ok)
            assert r.status_code == 200, r.text
            pid = r.json()["predictions"][0]["prediction_id"]
            r = c.post("/feedback", json={"prediction_id": pid, "label": "fault"}, headers=AUTH)
            assert r.status_code == 403, r.text
            (detail,) = r.json()["detail"]
            assert detail["type"] == "no_credentials_configured", detail
            assert "FAULTWATCH_LABELLER_TOKENS is not set" in detail["msg"], detail


@pytest.mark.slow
def test_a_bad_tokens_file_stops_the_server_naming_its_line(store, tmp_path):
    home, _, tag = store
    tokens = tmp_path / "labellers"
    secret = "alice-token-0123456789abcdef"
    tokens.write_text(f"alice:{secret}\nbob:short\n")
    env = server_env(home, tag, tmp_path / "p.sqlite", FAULTWATCH_LABELLER_TOKENS=str(tokens))
    port = free_port()
    log = tmp_path / "server.log"
    with started(serve_cmd(port), REPO, env, log) as proc:
        code = wait_exit(proc, log, f"http://127.0.0.1:{port}", timeout_s=60)
    out = log.read_text()
    assert code != 0, out[-3000:]
    assert f"{tokens}:2: the token of 'bob' must be 16 to 256 characters" in out, out[-3000:]
    assert secret not in out and "Application startup" not in out
