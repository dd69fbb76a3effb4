"""A fleet bento's endpoint (issue 23): several model groups in one BentoML server, loaded on
demand, at most one loaded at a time here, a broken group refused alone. Real `bentoml serve`
over HTTP; the models are tiny networks imported into a temporary store."""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.processes import started
from helpers.ready import wait_ready
from helpers.serving import (
    AUTH,
    AXES,
    THRESHOLD,
    good_signal,
    save_tiny_model,
    save_tiny_multichannel_model,
    serve_cmd,
    server_env,
)

GROUPS = ("pump", "fan", "valve", "broken")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A server of four groups (pump and valve univariate, valve's fault class `leak`, fan
    x/y/z, broken: its weights replaced after registration), FAULTWATCH_MAX_LOADED_MODELS=1; yields (url, log, tags)."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from faultwatch.serve.store import import_model

    tmp = tmp_path_factory.mktemp("fleet")
    home = tmp / "bentoml"
    (home / "models").mkdir(parents=True)
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    meta = {"input_schema": {"min_length": 16, "max_length": 2000}}
    try:
        tags = {
            "pump": import_model(save_tiny_model(tmp / "pump"), THRESHOLD, metadata=meta),
            "fan": import_model(save_tiny_multichannel_model(tmp / "fan"), 0.5, metadata=meta),
            "valve": import_model(save_tiny_model(tmp / "valve", "leak"), 0.9, metadata=meta),
            "broken": import_model(save_tiny_model(tmp / "broken"), 0.5, metadata=meta),
        }
        import bentoml

        weights = Path(bentoml.models.get(tags["broken"]).path) / "weights.safetensors"
    finally:
        BentoMLContainer.model_store.reset()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of the weights: its sha256 is no longer the registered one
    weights.write_bytes(bytes(data))
    tags = {g: str(t) for g, t in tags.items()}
    log_path = tmp / "predictions.sqlite"
    env = server_env(home, "", log_path, FAULTWATCH_MODELS=json.dumps(tags))
    env.pop("FAULTWATCH_MODEL_TAG")
    env["FAULTWATCH_MAX_LOADED_MODELS"] = "1"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), REPO, env, tmp / "server.log") as proc:
        wait_ready(url, proc, tmp / "server.log")
        yield url, log_path, tags


@pytest.fixture(scope="module")
def client(fleet):
    with httpx.Client(base_url=fleet[0], timeout=30) as c:
        yield c


def models(client) -> dict[str, dict]:
    r = client.get("/models")
    assert r.status_code == 200, r.text
    return {m["model"]: m for m in r.json()["models"]}


def test_ready_without_loading_and_lists_every_group(client, fleet):
    ready = client.get("/readyz").json()
    assert ready["models"] == fleet[2]
    listed = models(client)
    assert list(listed) == list(GROUPS)
    assert not any(m["loaded"] for m in listed.values())  # /readyz waited for none of them
    assert listed["broken"]["error"] and "sha256" in listed["broken"]["error"]
    # a CNN's model.json names no family: it is a cnn (test_serve_classical: a classical group)
    families = {g: m["family"] for g, m in listed.items()}
    assert families == {"pump": "cnn", "fan": "cnn", "valve": "cnn", "broken": None}
    assert client.get("/models").json()["max_loaded_models"] == 1


def test_each_group_answers_in_its_own_form_and_one_model_stays_loaded(client, fleet):
    sig = good_signal(64)
    pump = client.post("/predict", json={"signal": sig, "model": "pump"})
    assert pump.status_code == 200, pump.text
    assert pump.json()["model"] == "pump"
    assert pump.json()["model_version"] == fleet[2]["pump"].split(":")[1]
    assert pump.json()["threshold"] == THRESHOLD
    fan = client.post(
        "/predict",
        json={"channels": {a: sig for a in AXES}},
        headers={"X-Faultwatch-Model": "fan"},
    )
    assert fan.status_code == 200, fan.text
    assert fan.json()["model"] == "fan"
    listed = models(client)
    assert [g for g, m in listed.items() if m["loaded"]] == ["fan"]  # pump evicted: bound 1
    valve = client.post("/predict_batch", json={"signals": [sig, sig], "model": "valve"})
    assert valve.status_code == 200, valve.text
    assert [p["threshold"] for p in valve.json()["predictions"]] == [0.9, 0.9]
    again = client.post("/predict", json={"signal": sig, "model": "pump"})
    assert again.status_code == 200
    assert again.json()["probability"] == pump.json()["probability"]  # reloaded, same model
    listed = models(client)
    assert listed["pump"]["loads"] == 2 and listed["pump"]["loaded"]
    assert listed["pump"]["load_s"] < 5
    assert client.get("/models").json()["evictions"] >= 3


def test_concurrent_first_requests_load_a_group_once(client):
    client.post("/predict", json={"signal": good_signal(64), "model": "valve"})  # pump out
    before = models(client)["pump"]["loads"]
    assert not models(client)["pump"]["loaded"]

    def ask(_):
        return httpx.post(
            f"{client.base_url}/predict",
            json={"signal": good_signal(64), "model": "pump"},
            timeout=30,
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(8))) == [200] * 8
    assert models(client)["pump"]["loads"] == before + 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason", "named"),
    [
        ({"signal": good_signal(64)}, {}, 422, "model_required", "pump, fan, valve, broken"),
        ({"signal": good_signal(64), "model": "kiln"}, {}, 404, "unknown_model", "'kiln'"),
        ({"signal": good_signal(64)}, {"X-Faultwatch-Model": "kiln"}, 404, "unknown_model", "fan"),
        (
            {"signal": good_signal(64), "model": "pump"},
            {"X-Faultwatch-Model": "fan"},
            422,
            "model_conflict",
            "'fan'",
        ),
        ({"signal": good_signal(64), "model": "fan"}, {}, 422, "channel_count", "x, y, z"),
        ({"channels": {"x": good_signal(64)}, "model": "pump"}, {}, 422, "univariate", "one"),
        ({"signal": good_signal(5), "model": "valve"}, {}, 400, "too_short", "at least 16"),
    ],
)
def test_a_request_for_no_or_the_wrong_group_is_refused_naming_them(
    client, fleet, body, headers, status, reason, named
):
    r = client.post("/predict", json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["detail"][0]["type"] == reason
    assert named in r.json()["error"]
    with sqlite3.connect(fleet[1]) as conn:
        last = conn.execute("SELECT reason FROM rejected ORDER BY id DESC LIMIT 1").fetchone()
    assert last == (reason,)  # recorded like any refusal


def test_a_broken_group_answers_503_and_the_others_keep_answering(client, fleet):
    r = client.post("/predict", json={"signal": good_signal(64), "model": "broken"})
    assert r.status_code == 503, r.text
    assert r.json()["detail"][0]["type"] == "model_unavailable"
    assert "'broken'" in r.json()["error"] and "sha256" in r.json()["error"]
    with sqlite3.connect(fleet[1]) as conn:
        last = conn.execute("SELECT reason, model FROM rejected ORDER BY id DESC LIMIT 1")
        assert last.fetchone() == ("model_unavailable", "broken")  # the group is named
    for g in ("pump", "valve"):
        ok = client.post("/predict", json={"signal": good_signal(64), "model": g})
        assert ok.status_code == 200, ok.text


def test_every_row_of_the_log_names_its_group(client, fleet):
    with sqlite3.connect(fleet[1]) as conn:
        rows = dict(conn.execute("SELECT model, count(*) FROM predictions GROUP BY model"))
        versions = dict(conn.execute("SELECT DISTINCT model, model_version FROM predictions"))
    assert set(rows) == {"pump", "fan", "valve"}
    assert versions == {g: fleet[2][g].split(":")[1] for g in rows}
    metrics = client.get("/metrics").text
    assert 'model="fan"' in metrics and 'model="broken"' not in metrics


def test_a_label_is_checked_against_the_classes_of_the_group_that_answered(client, fleet):
    """/feedback in a fleet: pump's classes are healthy/fault, valve's healthy/leak; a label is
    refused unless the group that answered the prediction has that class, all or nothing."""
    sig = good_signal(64)
    ids = {}
    for g in ("pump", "valve"):
        r = client.post("/predict", json={"signal": sig, "model": g})
        assert r.status_code == 200, r.text
        ids[g] = r.json()["prediction_id"]
    wrong = client.post(
        "/feedback", headers=AUTH, json={"prediction_id": ids["valve"], "label": "fault"}
    )
    assert wrong.status_code == 422, wrong.text
    (detail,) = wrong.json()["detail"]
    assert detail["type"] == "not_a_class" and detail["loc"] == ["label"], detail
    assert "not a class of model valve" in detail["msg"] and "'leak'" in detail["msg"], detail
    batch = {"labels": [{"prediction_id": ids["valve"], "label": "leak"},
                        {"prediction_id": ids["pump"], "label": "leak"}]}  # fmt: skip
    r = client.post("/feedback", headers=AUTH, json=batch)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["labels", 1, "label"], r.text
    assert "not a class of model pump" in r.json()["error"], r.text
    with sqlite3.connect(fleet[1]) as conn:  # all or nothing: valve's good label not written
        assert conn.execute("SELECT count(*) FROM labels").fetchone()[0] == 0
    batch["labels"][1]["label"] = "fault"
    r = client.post("/feedback", headers=AUTH, json=batch)
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    with sqlite3.connect(fleet[1]) as conn:
        got = dict(conn.execute("SELECT p.model, l.label FROM labels l JOIN predictions p "
                                "USING (prediction_id)"))  # fmt: skip
    assert got == {"valve": "leak", "pump": "fault"}
