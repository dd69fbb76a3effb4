"""Serving a multichannel model (issue 21, point 4): a real `bentoml serve` of a tiny
three-axis model registered the way the register stage does it (input schema with channels,
per-channel quality thresholds, a golden set from a multichannel test split).

Both request forms (channels first, by name) answer what the model answers in-process; every
bad form is a 422 naming the expected channels and writes no prediction; the log rows carry the
channels and the per-channel features, and the sampled raw signals read back as (channels,
samples); the OpenAPI schema shows the forms; the smoke test and simulate-traffic send
multichannel signals. The univariate endpoints are tests/test_serve.py's, unchanged.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.processes import started
from helpers.projects import prepare_three_axis
from helpers.ready import wait_ready
from helpers.serving import AXES, THRESHOLD, save_tiny_multichannel_model, serve_cmd, server_env

TEST_SPLIT = "data/prepared/test.parquet"


@pytest.fixture(scope="module")
def mc_store(tmp_path_factory):
    """(project root with multichannel splits, BENTOML_HOME, model folder, store tag): the
    model imported with the register stage's input schema, quality thresholds and golden set."""
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from faultwatch.register import ensure_golden, quality_thresholds
    from faultwatch.serve.schema import input_schema
    from faultwatch.serve.store import import_model

    tmp = tmp_path_factory.mktemp("mc")
    root = tmp / "proj"
    root.mkdir()
    (root / "params.yaml").write_text("{}\n")
    prepare_three_axis(root)
    home = tmp / "bentoml"
    (home / "models").mkdir(parents=True)
    model_dir = save_tiny_multichannel_model(tmp / "model")
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        model_json = json.loads((model_dir / "model.json").read_text())
        metadata = {
            "input_schema": input_schema({"min_length": 16, "max_length": 2000}, model_json),
            "signal_quality": quality_thresholds(root, {}),
        }
        tag = import_model(model_dir, THRESHOLD, metadata=metadata)
        ensure_golden(root, bentoml.models.get(tag))
        yield root, home, model_dir, str(tag)
    finally:
        BentoMLContainer.model_store.reset()


@pytest.fixture(scope="module")
def mc_server(mc_store, tmp_path_factory):
    """A `bentoml serve` of the multichannel entry, logging every raw signal: (url, log)."""
    _, home, _, tag = mc_store
    tmp = tmp_path_factory.mktemp("mc_server")
    log, port = tmp / "predictions.sqlite", free_port()
    env = server_env(home, tag, log, FAULTWATCH_LOG_SIGNALS="1")
    env["FAULTWATCH_MAX_BATCH"] = "16"  # the golden set's size (the smoke test sends it whole)
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), REPO, env, tmp / "server.log") as proc:
        wait_ready(url, proc, tmp / "server.log")
        yield url, log


@pytest.fixture(scope="module")
def mc_client(mc_server):
    import httpx

    with httpx.Client(base_url=mc_server[0], timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def test_signals(mc_store) -> list[np.ndarray]:
    from faultwatch.splits import read_split

    df = read_split(mc_store[0] / TEST_SPLIT)
    assert df.attrs["channels"] == AXES
    return list(df["values"])


def count(log, table: str = "predictions") -> int:
    with sqlite3.connect(log) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def by_name(v: np.ndarray) -> dict[str, list[float]]:
    return {c: row.tolist() for c, row in zip(AXES, v, strict=True)}


# ---------------------------------------------------------------- registration
def test_the_entry_records_channels_quality_and_a_multichannel_golden_set(mc_store):
    import bentoml

    from faultwatch.serve.golden import load_golden
    from faultwatch.signal_quality import QualityThresholds

    root, home, _, tag = mc_store
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        entry = bentoml.models.get(tag)
    finally:
        BentoMLContainer.model_store.reset()
    schema = entry.info.metadata["input_schema"]
    assert schema["channels"] == list(AXES)
    assert schema["normalisation"] == "zscore_per_channel"
    quality = QualityThresholds.from_metadata(entry.info.metadata)
    assert [name for name, _ in quality.channels] == list(AXES)
    golden = load_golden(entry.path)
    assert golden.signals and all(np.asarray(s).shape[0] == 3 for s in golden.signals)


# ---------------------------------------------------------------- answers
@pytest.mark.slow
def test_both_forms_answer_what_the_model_answers(mc_client, mc_store, test_signals):
    from faultwatch.model.io import load_model

    signals = test_signals[:6]
    expected = load_model(mc_store[2]).predict_proba(signals)
    first = [mc_client.post("/predict", json={"signal": v.tolist()}) for v in signals]
    named = [mc_client.post("/predict", json={"channels": by_name(v)}) for v in signals]
    for r in first + named:
        assert r.status_code == 200, r.text
    np.testing.assert_allclose([r.json()["probability"] for r in first], expected, atol=1e-6)
    np.testing.assert_allclose([r.json()["probability"] for r in named], expected, atol=1e-6)
    # a batch may mix the two forms, item by item
    items = [v.tolist() if i % 2 else by_name(v) for i, v in enumerate(signals)]
    r = mc_client.post("/predict_batch", json={"signals": items})
    assert r.status_code == 200, r.text
    got = [p["probability"] for p in r.json()["predictions"]]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _bad_cases(v: np.ndarray) -> dict[str, tuple[str, dict, str, list]]:
    """name -> (path, body, rule, loc) of a request in a bad multichannel form."""
    x, y, z = (row.tolist() for row in v)
    return {
        "two_channels": ("/predict", {"signal": [x, y]}, "channel_count", ["signal"]),
        "four_channels": ("/predict", {"signal": [x, y, z, z]}, "channel_count", ["signal"]),
        # the univariate form, a list of numbers, is one channel: not a 400 for every sample
        "univariate_form": ("/predict", {"signal": x}, "channel_count", ["signal"]),
        "unknown_name": (
            "/predict",
            {"channels": {"x": x, "y": y, "z": z, "w": z}},
            "unknown_channel",
            ["channels", "w"],
        ),
        "missing_name": (
            "/predict",
            {"channels": {"x": x, "z": z}},
            "missing_channel",
            ["channels", "y"],
        ),
        "unequal_lengths": ("/predict", {"signal": [x, y, z[:-3]]}, "channel_lengths", ["signal"]),
        "both_forms": (
            "/predict",
            {"signal": [x, y, z], "channels": by_name(v)},
            "one_form",
            ["body"],
        ),
        "no_form": ("/predict", {}, "one_form", ["body"]),
        "batch_item": (
            "/predict_batch",
            {"signals": [[x, y, z], {"x": x, "z": z}]},
            "missing_channel",
            ["signals", 1, "y"],
        ),
        "batch_count": ("/predict_batch", {"signals": [[x, y]]}, "channel_count", ["signals", 0]),
        "batch_univariate": ("/predict_batch", {"signals": [x]}, "channel_count", ["signals", 0]),
    }


@pytest.mark.slow
def test_bad_forms_are_a_422_naming_the_channels_and_log_no_prediction(
    mc_client, mc_server, test_signals
):
    log = mc_server[1]
    before, rejected = count(log), count(log, "rejected")
    cases = _bad_cases(test_signals[0])
    for name, (path, body, rule, loc) in cases.items():
        r = mc_client.post(path, json=body)
        assert r.status_code == 422, (name, r.text)
        detail = r.json()["detail"][0]
        assert (detail["type"], detail["loc"]) == (rule, loc), name
        assert "x, y, z" in r.json()["error"], name
    assert count(log) == before  # no prediction of a refused request
    assert count(log, "rejected") == rejected + len(cases)


@pytest.mark.slow
def test_bad_values_name_the_channel(mc_client, mc_server, test_signals):
    v = test_signals[0]
    x, y, z = (row.tolist() for row in v)
    before = count(mc_server[1])
    r = mc_client.post(
        "/predict",
        content=json.dumps({"signal": [x, y, z]}).replace(str(z[4]), "NaN", 1),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["type"] == "finite_number"
    assert "channel z" in r.json()["error"] and r.json()["detail"][0]["loc"][:2] == ["signal", 2]
    r = mc_client.post("/predict", json={"channels": {"x": x[:5], "y": y[:5], "z": z[:5]}})
    assert r.status_code == 400 and r.json()["detail"][0]["type"] == "too_short", r.text
    assert r.json()["detail"][0]["loc"] == ["channels", "x"] and "channel x" in r.json()["error"]
    assert count(mc_server[1]) == before


NPY = {"content-type": "application/x-npy"}


@pytest.mark.slow
def test_an_npy_body_is_answered_as_its_json_form_and_refused_by_its_rules(
    mc_client, mc_server, test_signals
):
    """Binary signals (faultwatch.serve.binary): a (channels, samples) array to /predict and a
    (signals, channels, samples) one to /predict_batch, float32 as a sensor sends it, give the
    JSON form's answers and rows; a wrong count of channels, a NaN, an int dtype, a truncated
    body are refused with the JSON form's statuses, rules and key paths, logged as rejected."""
    from faultwatch.serve.binary import npy_body

    log = mc_server[1]
    # one array holds a batch: signals of one length (the shortest of these four)
    length = min(v.shape[1] for v in test_signals[:4])
    signals = [v[:, :length].astype("float32") for v in test_signals[:4]]
    as_json = [mc_client.post("/predict", json={"signal": v.tolist()}).json() for v in signals]
    before, rejected = count(log), count(log, "rejected")
    one = [mc_client.post("/predict", content=npy_body(v), headers=NPY) for v in signals]
    batch = mc_client.post("/predict_batch", content=npy_body(np.stack(signals)), headers=NPY)
    for r in [*one, batch]:
        assert r.status_code == 200, r.text
    same = ("probability", "label", "is_fault", "quality")
    for j, r, b in zip(as_json, one, batch.json()["predictions"], strict=True):
        assert {k: r.json()[k] for k in same} == {k: j[k] for k in same} == {k: b[k] for k in same}
    assert count(log) == before + 2 * len(signals)  # a row for each answer, as for JSON

    v = signals[0].copy()
    v[2, 17] = np.nan
    cases = {
        "two channels": ("/predict", npy_body(v[:2]), 422, "channel_count", ["signal"]),
        "a NaN": ("/predict", npy_body(v), 400, "finite_number", ["signal", 2, 17]),
        "a batch's NaN": (
            "/predict_batch",
            npy_body(np.stack([signals[1], v])),
            400,
            "finite_number",
            ["signals", 1, 2, 17],
        ),
        "ints": ("/predict", npy_body(signals[1].astype("int16")), 400, "dtype", ["body"]),
        "cut short": ("/predict", npy_body(signals[1])[:-4], 400, "npy_size", ["body"]),
        "one axis": ("/predict", npy_body(signals[1][0]), 422, "shape", ["body"]),
    }
    for name, (path, body, status, rule, loc) in cases.items():
        r = mc_client.post(path, content=body, headers=NPY)
        assert r.status_code == status, (name, r.text)
        detail = r.json()["detail"][0]
        assert (detail["type"], detail["loc"]) == (rule, loc), (name, r.text)
    assert count(log) == before + 2 * len(signals)  # no prediction of a refused request
    assert count(log, "rejected") == rejected + len(cases)
    # /feedback stays JSON: an .npy body there is the 415 of any other type
    r = mc_client.post("/feedback", content=npy_body(signals[0]), headers=NPY)
    assert r.status_code == 415, r.text


@pytest.mark.slow
def test_quality_is_checked_per_channel(mc_client, test_signals):
    v = test_signals[0].copy()
    v[2] = 0.0  # a dead z sensor
    r = mc_client.post("/predict", json={"signal": v.tolist()})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["quality"], answer["label"], answer["probability"]) == (
        "flat_line[z]",
        "unscored",
        None,
    )


# ---------------------------------------------------------------- the log
@pytest.mark.slow
def test_log_rows_carry_channels_features_and_raw_signals(mc_client, mc_server, test_signals):
    from faultwatch.features import features_dict
    from faultwatch.serve.predlog import features_frame, read_predictions, read_signals

    v = test_signals[1]
    r = mc_client.post("/predict", json={"channels": by_name(v)})
    assert r.status_code == 200, r.text
    pid = r.json()["prediction_id"]
    df = read_predictions(str(mc_server[1]))
    row = df.set_index("prediction_id").loc[pid]
    assert json.loads(row["channels"]) == list(AXES)
    assert row["n"] == v.shape[1] and row["n_nonfinite"] == 0
    assert row["mean"] == pytest.approx(v.mean()) and row["max"] == pytest.approx(v.max())
    assert np.isnan(row["rms"])  # the univariate columns stay empty
    logged = json.loads(row["channel_features"])
    want = features_dict(v, AXES)
    assert list(logged) == list(want)
    assert logged == pytest.approx(want)
    wide = features_frame(df).loc[df["prediction_id"] == pid].iloc[0]
    assert wide["rms[z]"] == pytest.approx(want["rms[z]"])
    assert "rms" not in wide.index  # every row of this log is multichannel
    signals = read_signals(str(mc_server[1])).set_index("prediction_id")
    raw = signals.loc[pid, "values"]
    assert raw.shape == v.shape
    np.testing.assert_allclose(raw, v.astype("float32"))


# ---------------------------------------------------------------- schema, smoke test, traffic
@pytest.mark.slow
def test_openapi_shows_the_multichannel_forms(mc_client):
    spec = mc_client.get("/docs.json").json()
    text = json.dumps(spec["paths"]["/predict"]) + json.dumps(spec.get("components", {}))
    assert "channels first, in this order: x, y, z" in text
    assert "by channel name: x, y, z" in text
    batch = json.dumps(spec["paths"]["/predict_batch"]) + json.dumps(spec.get("components", {}))
    assert '"required": ["x", "y", "z"]' in batch


@pytest.mark.slow
def test_the_golden_set_passes_the_smoke_test(mc_store, mc_server):
    from faultwatch.serve.golden import load_golden, smoke_test

    _, home, _, tag = mc_store
    entry = home / "models" / tag.replace(":", "/")
    result = smoke_test(mc_server[0], load_golden(entry))
    assert result.passed, result.message


@pytest.mark.slow
def test_simulate_traffic_sends_multichannel_signals_drifted_on_one_channel(mc_store, mc_server):
    from faultwatch import traffic
    from faultwatch.serve.predlog import read_predictions

    url, log = mc_server
    signals = traffic.read_signals_file(mc_store[0] / TEST_SPLIT)
    assert signals.channels == AXES and signals.values[0].shape[0] == 3
    plan = traffic.Plan(url=url, rate=50, count=3, batch_size=2, concurrency=1)
    summary = traffic.replay(plan, signals, traffic.Drift(offset=5.0, channel="z"))
    assert (summary.answered, summary.signals_answered) == (3, 6), summary.to_dict()
    df = read_predictions(str(log)).set_index("prediction_id").loc[summary.prediction_ids]
    assert (df["channels"] == json.dumps(list(AXES))).all()


# ---------------------------------------------------------------- limits and the input schema
def test_the_body_limit_counts_every_channel_and_univariate_schemas_stay_as_they_were():
    from faultwatch.serve.schema import ServingLimits, input_schema

    one = ServingLimits.resolve({"input_schema": {"min_length": 16}})
    three = ServingLimits.resolve({"input_schema": {"min_length": 16, "channels": list(AXES)}})
    assert three.max_body_bytes == 3 * one.max_body_bytes == 3 * ServingLimits.max_body_bytes
    given = {"input_schema": {"channels": list(AXES), "max_body_bytes": 1000}}
    assert ServingLimits.resolve(given).max_body_bytes == 1000
    assert ServingLimits.resolve({}, AXES).max_body_bytes == three.max_body_bytes
    data = {"min_length": 16, "max_length": 2000}
    assert input_schema(data, {"input_length": 64}) == {
        "type": "array of finite numbers (one signal)",
        "min_length": 16,
        "max_length": 2000,
        "resampled_to": 64,
    }
    multi = {
        "input_length": 64,
        "channels": list(AXES),
        "preprocessing": {"resample": "linear", "normalise": "zscore_per_channel"},
    }
    schema = input_schema({}, multi)
    assert (schema["channels"], schema["normalisation"]) == (list(AXES), "zscore_per_channel")
    assert (schema["min_length"], schema["max_length"]) == (16, 100_000)
