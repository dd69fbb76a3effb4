"""The classical family served, packaged and monitored (issue 24): a random forest in the
BentoML store answers as its saved folder does, alone or beside a CNN in a fleet bento, and its
log rows carry the monitor's features but no embedding; a tampered one is refused naming it;
its golden set passes the smoke test; `faultwatch package` labels its bento `classical`; the
monitor on its log says embedding drift does not apply and judges the rest as for a CNN.
Real `bentoml serve` over HTTP; the models are fitted in the test (25 trees, a tiny CNN)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from helpers.cli import run
from helpers.paths import REPO, VENV_BIN
from helpers.ports import free_port
from helpers.processes import started
from helpers.projects import copy_project
from helpers.ready import wait_exit, wait_ready
from helpers.serving import AUTH, MAX_BATCH, save_tiny_model, serve_cmd, server_env
from helpers.signals import amplitude_signals, make_signals

from faultwatch.features import FEATURES

pytestmark = pytest.mark.slow

TREES = {"n_estimators": 25, "feature_length": 64, "fft_bands": 4, "seed": 3}
THRESHOLD = 0.5
CNN_THRESHOLD = 0.3
SCHEMA = {"input_schema": {"min_length": 16, "max_length": 2000}}
NOT_APPLICABLE = (
    "embedding drift: not applicable, classical model: drift judged on its input features"
)


def with_y(df):
    """make_signals' frame in prepare's schema (y: 1 = fault)."""
    return df.assign(y=(df["label"] == "fault").astype(int))


def save_forest(folder: Path) -> Path:
    from faultwatch.model import classical

    train = with_y(make_signals(40, 12, seed=1))
    fitted = classical.fit_classical(list(train["values"]), train["y"].to_numpy(), **TREES)
    classical.save_classical(folder, fitted, {"positive_label": "fault"})
    return folder


def signals(
    seed: int = 2, n_healthy: int = 30, n_fault: int = 10, amplitude: int = 4
) -> list[list[float]]:
    """Signals like the training ones (the forest answers them 0 or 1), then 2 x `amplitude`
    whose fault is their amplitude (it answers those in between)."""
    values = [
        *make_signals(n_healthy, n_fault, seed)["values"],
        *amplitude_signals(amplitude, amplitude, seed)["values"],
    ]
    return [v.tolist() for v in values]


def rows(log: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(log) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(BENTOML_HOME, {name: folder}, {name: store tag}): the forest, a CNN, and the forest
    imported again with one byte of its weights changed in the store afterwards."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from faultwatch.serve.store import import_model

    tmp = tmp_path_factory.mktemp("classical")
    home = tmp / "bentoml"
    (home / "models").mkdir(parents=True)
    folders = {"forest": save_forest(tmp / "forest"), "cnn": save_tiny_model(tmp / "cnn")}
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        tags = {
            "forest": import_model(folders["forest"], THRESHOLD, metadata=SCHEMA),
            "cnn": import_model(folders["cnn"], CNN_THRESHOLD, metadata=SCHEMA),
            "tampered": import_model(folders["forest"], THRESHOLD, metadata=SCHEMA),
        }
        import bentoml

        weights = Path(bentoml.models.get(tags["tampered"]).path) / "weights.safetensors"
    finally:
        BentoMLContainer.model_store.reset()
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # a node's threshold or child: not the registered weights
    weights.write_bytes(bytes(data))
    return home, folders, {k: str(t) for k, t in tags.items()}


@pytest.fixture(scope="module")
def single(store, tmp_path_factory):
    """A `bentoml serve` of the forest alone; yields (url, prediction log)."""
    home, _, tags = store
    tmp = tmp_path_factory.mktemp("single")
    log, port = tmp / "predictions.sqlite", free_port()
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), REPO, server_env(home, tags["forest"], log), tmp / "s.log") as p:
        wait_ready(url, p, tmp / "s.log")
        yield url, log


@pytest.fixture(scope="module")
def fleet(store, tmp_path_factory):
    """A fleet server: groups cnn, forest and tampered; yields (url, prediction log)."""
    home, _, tags = store
    tmp = tmp_path_factory.mktemp("fleet")
    log, port = tmp / "predictions.sqlite", free_port()
    env = server_env(home, "", log, FAULTWATCH_MODELS=json.dumps(tags))
    env.pop("FAULTWATCH_MODEL_TAG")
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), REPO, env, tmp / "f.log") as p:
        wait_ready(url, p, tmp / "f.log")
        yield url, log


def test_a_classical_model_answers_as_its_folder_and_logs_features_but_no_embedding(store, single):
    from faultwatch.model.io import load_model

    _, folders, tags = store
    url, log = single
    sent = signals()
    expected = load_model(folders["forest"]).predict_proba([np.asarray(s) for s in sent])
    assert expected.min() < THRESHOLD <= expected.max()  # both answers given
    assert len(set(expected.tolist())) > 2  # and figures in between
    before = rows(log, "SELECT coalesce(max(id), 0) FROM predictions")[0][0]
    with httpx.Client(base_url=url, timeout=30) as c:
        one = [c.post("/predict", json={"signal": s}) for s in sent[:5]]
        assert all(r.status_code == 200 for r in one), one[0].text
        batch = []
        for i in range(0, len(sent), MAX_BATCH):
            r = c.post("/predict_batch", json={"signals": sent[i : i + MAX_BATCH]})
            assert r.status_code == 200, r.text
            batch += r.json()["predictions"]
        listed = c.get("/models").json()["models"]
    # float64 trees, no batch effect: the same figures, bit for bit
    assert [r.json()["probability"] for r in one] == expected[:5].tolist()
    assert [b["probability"] for b in batch] == expected.tolist()
    version = tags["forest"].split(":")[1]
    for b in batch:
        assert b["label"] == ("fault" if b["probability"] >= THRESHOLD else "healthy")
        assert (b["threshold"], b["model_version"]) == (THRESHOLD, version)
    assert [(m["model"], m["family"], m["loaded"]) for m in listed] == [
        ("fault_cnn", "classical", True)
    ]
    features = ", ".join(FEATURES)
    logged = rows(
        log, f"SELECT probability, embedding, {features} FROM predictions WHERE id > {before} "
        "ORDER BY id",
    )  # fmt: skip
    assert len(logged) == 5 + len(sent)  # every answer's row, committed before it left
    assert [r[0] for r in logged] == expected[:5].tolist() + expected.tolist()
    assert all(r[1] is None for r in logged)  # no embedding: a forest has no network
    assert all(v is not None for r in logged for v in r[2:])  # the monitor's features, as a CNN's


def test_a_classical_models_golden_set_passes_the_smoke_test(store, single):
    from faultwatch.model.io import load_model
    from faultwatch.serve.golden import compute_golden, smoke_test

    _, folders, tags = store
    sent = signals(seed=4, n_healthy=1, n_fault=1, amplitude=3)  # MAX_BATCH
    golden = compute_golden(
        load_model(folders["forest"]), tags["forest"], THRESHOLD, range(len(sent)), sent
    )
    result = smoke_test(single[0], golden, tolerance=0.0)
    assert result.passed, result.message
    assert result.label_mismatches == 0 and result.max_abs_diff == 0.0


def test_a_fleet_answers_a_cnn_group_and_a_classical_group_and_refuses_a_tampered_one(store, fleet):
    from faultwatch.model.io import load_model

    _, folders, tags = store
    url, log = fleet
    sent = signals(seed=6, n_healthy=2, n_fault=1, amplitude=2)
    x = [np.asarray(s) for s in sent]
    with httpx.Client(base_url=url, timeout=30) as c:
        answers = {}
        for group in ("cnn", "forest"):
            r = c.post("/predict_batch", json={"signals": sent, "model": group})
            assert r.status_code == 200, r.text
            answers[group] = r.json()["predictions"]
            one = c.post("/predict", json={"signal": sent[0], "model": group})
            assert one.status_code == 200 and one.json()["model"] == group, one.text
        bad = c.post("/predict", json={"signal": sent[0], "model": "tampered"})
        listed = {m["model"]: m for m in c.get("/models").json()["models"]}
    assert [a["probability"] for a in answers["forest"]] == (
        load_model(folders["forest"]).predict_proba(x).tolist()
    )
    np.testing.assert_allclose(
        [a["probability"] for a in answers["cnn"]],
        load_model(folders["cnn"]).predict_proba(x),
        atol=1e-6,
    )
    assert {a["threshold"] for a in answers["cnn"]} == {CNN_THRESHOLD}
    assert {a["model_version"] for a in answers["forest"]} == {tags["forest"].split(":")[1]}
    assert bad.status_code == 503, bad.text
    assert bad.json()["detail"][0]["type"] == "model_unavailable"
    assert "'tampered'" in bad.json()["error"] and "sha256" in bad.json()["error"]
    assert {g: m["family"] for g, m in listed.items()} == {
        "cnn": "cnn",
        "forest": "classical",
        "tampered": None,  # not described: its error says why
    }
    logged = rows(log, "SELECT model, embedding IS NULL, rms IS NULL FROM predictions")
    assert {(m, no_emb, no_rms) for m, no_emb, no_rms in logged} == {
        ("cnn", 0, 0),  # the CNN logs its embedding
        ("forest", 1, 0),  # the forest none; both the monitor's features
    }
    assert rows(log, "SELECT reason, model FROM rejected") == [("model_unavailable", "tampered")]


def test_a_tampered_classical_model_stops_a_single_model_server_at_start(store, tmp_path):
    home, _, tags = store
    port, out = free_port(), tmp_path / "server.log"
    env = server_env(home, tags["tampered"], tmp_path / "p.sqlite")
    with started(serve_cmd(port), REPO, env, out) as proc:
        code = wait_exit(proc, out, f"http://127.0.0.1:{port}", timeout_s=60)
    text = out.read_text()
    assert code != 0, text[-3000:]
    assert f"store entry {tags['tampered']}: weights sha256" in text, text[-3000:]
    assert "Application startup" not in text  # no worker was started


def test_the_monitor_on_a_classical_models_log_says_embedding_drift_does_not_apply(
    store, single, tmp_path
):
    """Live traffic and its labels through the served forest, then the monitor's own functions
    (those notebooks/05_monitor.ipynb calls) on that log, with the forest as the local model."""
    from faultwatch.model.io import read_meta
    from faultwatch.monitor import source
    from faultwatch.monitor.params import MonitorParams
    from faultwatch.monitor.report import monitor_report

    _, folders, tags = store
    url, log = single
    test = with_y(make_signals(45, 15, seed=8))
    with httpx.Client(base_url=url, timeout=30) as c:
        ids = []
        for i in range(0, len(test), MAX_BATCH):
            chunk = [v.tolist() for v in test["values"][i : i + MAX_BATCH]]
            r = c.post("/predict_batch", json={"signals": chunk})
            assert r.status_code == 200, r.text
            ids += [p["prediction_id"] for p in r.json()["predictions"]]
        items = [{"prediction_id": p, "label": lab} for p, lab in zip(ids, test["label"].map(
            lambda lab: "fault" if lab == "fault" else "healthy"), strict=True)]  # fmt: skip
        for i in range(0, len(items), MAX_BATCH):
            r = c.post("/feedback", json={"labels": items[i : i + MAX_BATCH]}, headers=AUTH)
            assert r.status_code == 200, r.text
    root = tmp_path / "proj"
    (root / "data/prepared").mkdir(parents=True)
    train = with_y(make_signals(40, 12, seed=1))
    train.assign(values=train["values"].map(list)).to_parquet(root / "data/prepared/train.parquet")
    shutil.copytree(folders["forest"], root / "models/fault_cnn")
    (root / "reports").mkdir()
    sha = read_meta(folders["forest"])["weights_sha256"]
    record = {"model_tag": tags["forest"], "weights_sha256": sha}
    (root / "reports/register.json").write_text(json.dumps(record))
    params = MonitorParams(log=str(log), last="1h", min_rows=20, min_labels=10, label_delay="1s")
    window = source.read_window(params)
    reference = source.load_reference(params, root)
    result = monitor_report(
        window.predictions,
        window.rejected,
        reference,
        params,
        (window.start, window.end),
        window.read_embeddings(),
    )
    version = tags["forest"].split(":")[1]
    v = result["versions"][version]
    assert v["embedding_drift"] == {
        "verdict": "not_applicable",
        "family": "classical",
        "note": NOT_APPLICABLE,
    }
    assert result["notes"] == [
        {"kind": "embedding_drift", "model_version": version, "note": NOT_APPLICABLE}
    ]
    assert "embedding_drift" not in {r["kind"] for r in result["reasons"]}
    # the rest as for any model: input drift tested on the logged features, output, performance
    assert v["input_drift"]["n_rows"]["all"] >= len(test)
    verdicts = {c: e["verdict"] for c, e in v["input_drift"]["columns"].items()}
    assert set(verdicts) >= set(FEATURES) and "untested" not in verdicts.values(), verdicts
    assert v["output_drift"]["fault_rate"] is not None
    assert v["performance"]["realised"]["n"] == len(test)
    assert v["performance"]["realised"]["f1"] is not None


def test_faultwatch_package_puts_a_classical_model_in_the_bento_labelled_classical(store, tmp_path):
    _, folders, _ = store
    root = copy_project(tmp_path / "proj")
    home = {"BENTOML_HOME": str(root / ".bentoml")}
    meta = {**SCHEMA, "data": {"source": "data/raw/tiny.tsv", "positive_label": "fault"}}
    code = (
        "from faultwatch.serve.store import import_model; "
        f"print(import_model({str(folders['forest'])!r}, {THRESHOLD}, metadata={meta!r}))"
    )
    tag = run([sys.executable, "-c", code], root, **home).stdout.strip().splitlines()[-1]
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports/register.json").write_text(json.dumps({"model_tag": tag}))
    run([str(VENV_BIN / "faultwatch"), "package"], root, **home)
    record = json.loads((root / "reports/package.json").read_text())
    name, version = record["bento_tag"].split(":")
    bento = yaml.safe_load((root / ".bentoml/bentos" / name / version / "bento.yaml").read_text())
    assert record["model_tag"] == tag
    assert bento["labels"]["family"] == record["labels"]["family"] == "classical"
    assert [m["tag"] for m in bento["services"][0]["models"]] == [tag]
