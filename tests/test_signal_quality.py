"""Sensor quality (issue 19): a dead sensor is not a machine fault, and a bad request is one
log line.

The rules of faultwatch.signal_quality on tiny signals; then real `bentoml serve` processes:
the `quality` of every answer, a bad-quality signal answered "unscored" unless the entry was
registered with `score_bad_signals: true`, the column in the prediction log, the counter at
/metrics, a /readyz with a body, and one log line (no traceback) per refused request. Then the
register stage's thresholds, the monitor's shares and the real EDA notebook's counts.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import httpx
import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.cli import run
from helpers.datafiles import write_tsv
from helpers.monitor_synthetic import window
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.processes import started
from helpers.ready import wait_ready
from helpers.serving import THRESHOLD, save_tiny_model, serve_cmd, server_env
from helpers.signals import make_signals

from faultwatch.serve.predlog import InputSummary, LoggedPrediction, open_log, read_predictions
from faultwatch.signal_quality import (
    UNSCORED,
    QualityParams,
    QualityThresholds,
    learn_channel_thresholds,
    learn_thresholds,
    quality_of,
    rule_counts,
)

N = 64
T = np.linspace(0, 6 * np.pi, N)
NORMAL = np.sin(T) + 0.05 * np.cos(7 * T)
ZERO = np.zeros(N)
CLIPPED = np.clip(1.6 * np.sin(T), -1.0, 1.0)  # a third of the samples at +-1
STUCK = NORMAL.copy()
STUCK[20:34] = STUCK[20]  # 14 equal readings in a row
DEFAULTS = QualityThresholds()


# ---------------------------------------------------------------- the rules
@pytest.mark.parametrize(
    ("signal", "expected"),
    [
        (NORMAL, "ok"),
        (ZERO, "flat_line"),
        (ZERO + 3.2, "flat_line"),
        (CLIPPED, "clipping"),
        (STUCK, "stuck"),
        (np.r_[NORMAL[:-2], 1.05, 1.05], "ok"),
    ],  # fmt: skip
    ids=["normal", "all_zero", "constant", "clipped", "stuck", "two_equal_maxima"],
)
def test_each_rule_flags_its_sensor_fault(signal, expected):
    assert quality_of(signal, DEFAULTS) == expected


def test_thresholds_are_learnt_from_the_training_signals_and_one_bad_one_does_not_move_them():
    train = [v for v in make_signals()["values"]]
    learnt = learn_thresholds(train, QualityParams())
    assert 0 < learnt.flat_line_ptp < min(np.ptp(v) for v in train)
    assert (learnt.clipping_share, learnt.stuck_run) == (0.1, 10)  # the floors: no train signal
    assert not any(quality_of(v, learnt) != "ok" for v in train)
    # a dead and a clipped signal among them change nothing (the quantile is "lower")
    spoilt = learn_thresholds([*train, ZERO, CLIPPED], QualityParams())
    assert (spoilt.clipping_share, spoilt.stuck_run) == (0.1, 10)
    assert (quality_of(ZERO, spoilt), quality_of(CLIPPED, spoilt)) == ("flat_line", "clipping")
    # training signals that legitimately repeat values raise the stuck threshold past them
    repeating = [np.repeat(v[::4], 4) for v in train]
    raised = learn_thresholds(repeating, QualityParams())
    assert raised.stuck_run >= 8 and all(quality_of(v, raised) == "ok" for v in repeating)
    assert QualityThresholds.from_metadata({"signal_quality": learnt.as_metadata()}) == learnt


def test_each_channel_has_its_own_thresholds_and_the_rule_names_the_channel():
    """Per channel: a channel of small amplitude is not flat by another channel's threshold;
    the quality names the rule and the channel; the metadata round-trips, and a univariate
    entry's metadata keeps its keys."""
    train = [np.stack([NORMAL * (1 + 0.1 * k), 1e-3 * NORMAL, NORMAL]) for k in range(8)]
    learnt = learn_channel_thresholds(train, QualityParams(), ("x", "y", "z"))
    x, y = learnt.for_channel("x"), learnt.for_channel("y")
    assert y.flat_line_ptp < 1e-3 < x.flat_line_ptp  # y's own scale
    assert learnt.flat_line_ptp == y.flat_line_ptp  # the loosest at the top
    assert all(quality_of(v, learnt) == "ok" for v in train)
    dead_z = np.stack([NORMAL, 1e-3 * NORMAL, ZERO])
    assert quality_of(dead_z, learnt, ("x", "y", "z")) == "flat_line[z]"
    # rule by rule over the channels: a flat line anywhere comes before a clipped channel
    assert quality_of(np.stack([CLIPPED, 1e-3 * NORMAL, ZERO]), learnt) == "flat_line[z]"
    assert quality_of(np.stack([CLIPPED, 1e-3 * NORMAL, STUCK]), learnt) == "clipping[x]"
    assert quality_of(np.stack([NORMAL, ZERO]), DEFAULTS) == "flat_line[dim_1]"
    meta = {"signal_quality": learnt.as_metadata()}
    assert list(meta["signal_quality"]["channels"]) == ["x", "y", "z"]
    assert QualityThresholds.from_metadata(meta) == learnt
    assert set(DEFAULTS.as_metadata()) == {
        "flat_line_ptp",
        "clipping_share",
        "stuck_run",
        "score_bad_signals",
    }
    bad = {"signal_quality": {**learnt.as_metadata(), "channels": {"x": {"stuck_run": 1}}}}
    with pytest.raises(ValueError, match=r"signal_quality.channels.x: thresholds out of range"):
        QualityThresholds.from_metadata(bad)


def test_rule_counts_give_every_rule_and_its_share():
    counts = rule_counts(["ok", "ok", "flat_line", "clipping", None])
    assert counts["n"] == 4 and counts["bad_share"] == 0.5
    assert counts["by_rule"]["flat_line"] == {"n": 1, "share": 0.25}
    assert counts["by_rule"]["stuck"] == {"n": 0, "share": 0.0}


def test_an_old_log_gains_the_quality_column_and_stays_readable(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the predictions table before the quality column
        conn.execute(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY, time REAL NOT NULL, endpoint TEXT"
            " NOT NULL, model_version TEXT NOT NULL, n INTEGER NOT NULL, mean REAL, std REAL,"
            " min REAL, max REAL, n_nonfinite INTEGER NOT NULL, probability REAL NOT NULL,"
            " label TEXT NOT NULL, is_fault INTEGER NOT NULL, threshold REAL NOT NULL,"
            " latency_ms REAL NOT NULL, batch_size INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO predictions (time, endpoint, model_version, n, n_nonfinite, probability,"
            " label, is_fault, threshold, latency_ms, batch_size)"
            " VALUES (1, 'predict', 'v0', 8, 0, 0.1, 'healthy', 0, 0.5, 1.0, 1)"
        )
    log = open_log(path)
    log.append(
        [
            LoggedPrediction(
                "predict",
                "v1",
                InputSummary.of(ZERO),
                0.9,
                UNSCORED,
                False,
                0.5,
                1.0,
                1,
                prediction_id=uuid.uuid4().hex,
                quality="flat_line",
            )
        ]  # fmt: skip
    )
    log.close()
    df = read_predictions(path, roles=None)
    assert df["quality"].isna().tolist() == [True, False] and df["quality"].iloc[1] == "flat_line"
    assert df["label"].tolist() == ["healthy", UNSCORED]


# ---------------------------------------------------------------- real servers
@pytest.fixture(scope="module")
def quality_store(tmp_path_factory):
    """(BENTOML_HOME, model folder, tag scoring bad signals off, tag scoring them): one tiny
    model registered twice, with thresholds learnt as the register stage does."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from faultwatch.serve.store import import_model

    tmp = tmp_path_factory.mktemp("quality-store")
    home = tmp / "bentoml"
    (home / "models").mkdir(parents=True)
    model_dir = save_tiny_model(tmp / "model")
    learnt = learn_thresholds(list(make_signals()["values"]), QualityParams())
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        tags = [
            str(
                import_model(
                    model_dir,
                    THRESHOLD,
                    metadata={
                        "input_schema": {"min_length": 16, "max_length": 2000},
                        "signal_quality": {**learnt.as_metadata(), "score_bad_signals": score},
                    },
                )
            )
            for score in (False, True)
        ]
        yield home, model_dir, *tags
    finally:
        BentoMLContainer.model_store.reset()


@pytest.fixture(scope="module")
def servers(quality_store, tmp_path_factory):
    """{"unscored": (url, log, server output), "scored": ...}: both started at once."""
    home, _, unscored, scored = quality_store
    tmp = tmp_path_factory.mktemp("quality-servers")
    out = {}
    with (
        started(serve_cmd(p1 := free_port()), REPO,
                server_env(home, unscored, tmp / "u.sqlite"), tmp / "u.log") as a,
        started(serve_cmd(p2 := free_port()), REPO,
                server_env(home, scored, tmp / "s.sqlite"), tmp / "s.log") as b,
    ):  # fmt: skip
        for name, port, proc, stem in (("unscored", p1, a, "u"), ("scored", p2, b, "s")):
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, proc, tmp / f"{stem}.log")
            out[name] = (url, tmp / f"{stem}.sqlite", tmp / f"{stem}.log")
        yield out


def post(url: str, path: str, body: dict | bytes, **headers: str):
    if isinstance(body, dict):
        return httpx.post(url + path, json=body, headers=headers, timeout=30)
    return httpx.post(url + path, content=body, headers=headers, timeout=30)


@pytest.mark.slow
def test_every_answer_has_a_quality_and_a_dead_sensor_is_not_scored(servers, quality_store):
    from faultwatch.model.io import load_model

    url, log_path, _ = servers["unscored"]
    one = post(url, "/predict", {"signal": ZERO.tolist()})
    assert one.status_code == 200, one.text
    assert one.json() | {"prediction_id": "-", "model_version": "-"} == {
        "probability": None, "is_fault": None, "label": UNSCORED, "quality": "flat_line",
        "threshold": THRESHOLD, "prediction_id": "-", "model_version": "-",
    }  # fmt: skip
    batch = [NORMAL, CLIPPED, STUCK, ZERO, NORMAL[::-1]]
    r = post(url, "/predict_batch", {"signals": [s.tolist() for s in batch]})
    assert r.status_code == 200, r.text
    answers = r.json()["predictions"]
    assert [a["quality"] for a in answers] == ["ok", "clipping", "stuck", "flat_line", "ok"]
    # an ok signal's answer is the model's, as before the checks
    expected = load_model(quality_store[1]).predict_proba([NORMAL, NORMAL[::-1]])
    ok = [a for a in answers if a["quality"] == "ok"]
    np.testing.assert_allclose([a["probability"] for a in ok], expected, atol=1e-6)
    assert all(a["label"] in ("fault", "healthy") and isinstance(a["is_fault"], bool) for a in ok)
    assert all(a["probability"] is None and a["label"] == UNSCORED for a in answers[1:4])

    # the log: the quality column; the model's probability kept, the answer's label
    with sqlite3.connect(log_path) as conn:
        rows = conn.execute(
            "SELECT quality, label, is_fault, probability FROM predictions ORDER BY id"
        ).fetchall()
    assert [q for q, *_ in rows] == ["flat_line", "ok", "clipping", "stuck", "flat_line", "ok"]
    assert all(lab == UNSCORED and f == 0 and 0 <= p <= 1 for q, lab, f, p in rows if q != "ok")

    text = httpx.get(url + "/metrics", timeout=30).text
    for rule, n in (("ok", 2), ("flat_line", 2), ("clipping", 1), ("stuck", 1)):
        assert f'faultwatch_signal_quality_total{{rule="{rule}"}} {n}.0' in text, text[-2000:]
    assert 'faultwatch_predictions_total{label="unscored"' in text


@pytest.mark.slow
def test_score_bad_signals_true_scores_them_and_still_names_the_rule(servers):
    url = servers["scored"][0]
    r = post(url, "/predict_batch", {"signals": [ZERO.tolist(), CLIPPED.tolist()]})
    assert r.status_code == 200, r.text
    for a, rule in zip(r.json()["predictions"], ("flat_line", "clipping"), strict=True):
        assert a["quality"] == rule
        assert 0 <= a["probability"] <= 1 and a["label"] in ("fault", "healthy")
        assert a["is_fault"] == (a["probability"] >= THRESHOLD)


@pytest.mark.slow
def test_readyz_says_ready_and_names_the_model(servers, quality_store):
    r = httpx.get(servers["unscored"][0] + "/readyz", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "model_tag": quality_store[2]}


BAD = [
    ("/predict", ('{"signal": [' + ", ".join(["NaN"] * 200) + "]}").encode(), "application/json"),
    ("/predict", json.dumps({"signal": [1.0, 2.0]}).encode(), "application/json"),
    ("/predict", b'{"signal": [1.0, 2', "application/json"),
    ("/predict", json.dumps({"signal": NORMAL.tolist()}).encode(), "text/plain"),
    ("/predict_batch", b'{"signals": [[' + b"0.5, " * 40 + b"Infinity]]}", "application/json"),
    ("/predict", b"{}", "application/json"),
]


@pytest.mark.slow
def test_a_bad_request_is_one_log_line_naming_the_rule_field_and_request_id(servers):
    """Today: ~600 lines of traceback for a signal of 200 NaN; now one line per request."""
    url, _, server_log = servers["unscored"]
    before = server_log.read_text().splitlines()
    ids = [f"bad-request-{i}" for i in range(len(BAD))]
    for rid, (path, body, ctype) in zip(ids, BAD, strict=True):
        r = post(url, path, body, **{"content-type": ctype, "x-request-id": rid})
        assert 400 <= r.status_code < 500, r.text
    time.sleep(1.0)  # the worker's log lines reach the file
    new = server_log.read_text().splitlines()[len(before) :]
    assert "Traceback" not in "\n".join(new)
    assert len(new) == len(BAD), "\n".join(new)
    for rid, line in zip(ids, new, strict=True):
        assert line.endswith(f"request_id={rid}"), line
    assert "(finite_number) signal.0:" in new[0] and "(too_short) signal:" in new[1]
    assert "(unsupported_media_type)" in new[3] and "signals.0.40" in new[4]


# ---------------------------------------------------------------- register, monitor, EDA
def test_register_learns_the_thresholds_from_the_training_split(tmp_path):
    from faultwatch.register import quality_thresholds

    (tmp_path / "data/prepared").mkdir(parents=True)
    train = make_signals().assign(values=lambda d: d["values"].map(list))
    train.to_parquet(tmp_path / "data/prepared/train.parquet")
    got = quality_thresholds(tmp_path, {"quality": {"score_bad_signals": True, "stuck_run": 7}})
    want = learn_thresholds(
        list(make_signals()["values"]), QualityParams(score_bad_signals=True, stuck_run=7)
    )
    assert got == want.as_metadata() and got["stuck_run"] == 7


def test_the_monitor_reports_the_share_of_each_rule_and_leaves_unscored_rows_out():
    from helpers.monitor_synthetic import reference_split

    from faultwatch.monitor.params import MonitorParams
    from faultwatch.monitor.reference import reference_frame
    from faultwatch.monitor.report import Reference, monitor_report

    frame = window(400, seed=3)
    frame["quality"] = "ok"
    frame.loc[frame.index[:20], ["quality", "label", "is_fault"]] = ["flat_line", UNSCORED, 0]
    frame.loc[frame.index[20:30], "quality"] = "clipping"  # scored (score_bad_signals: true)
    ref = Reference(reference_frame(reference_split(300, 0.04)))
    result = monitor_report(
        frame, None, ref, MonitorParams(), (None, frame["time"].max()), None, None
    )
    q = result["signal_quality"]
    assert q["n"] == 400 and q["n_unscored"] == 20 and q["bad_share"] == pytest.approx(30 / 400)
    assert q["by_rule"]["flat_line"] == {"n": 20, "share": 0.05}
    assert q["by_rule"]["clipping"]["n"] == 10 and q["by_rule"]["stuck"]["n"] == 0
    assert result["versions"]["v1"]["n"] == 380  # the unscored rows have no verdict to judge
    json.dumps(result)  # monitor.json


@pytest.mark.slow
def test_the_eda_notebook_counts_the_training_signals_each_rule_flags(project):
    """Two dead sensors, one clipped and one stuck signal in the raw data; params.yaml
    `quality.stuck_run: 5` reaches the notebook (a run of 6 is flagged, the default 10 would
    not)."""
    df = make_signals()
    healthy = df.index[df["label"] != "fault"]
    t = np.linspace(0, 4 * np.pi, 60)
    stuck = np.sin(t) + 0.01 * np.cos(9 * t)
    stuck[10:16] = stuck[10]
    bad = [np.zeros(60), np.zeros(70), np.clip(1.5 * np.sin(t), -1, 1), stuck]
    for i, v in zip(healthy[:4], bad, strict=True):
        df.at[i, "values"] = v
    write_tsv(df, project / "data/raw/tiny.tsv")
    p = yaml.safe_load((project / "params.yaml").read_text())
    p.setdefault("quality", {})["stuck_run"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["faultwatch", "prepare"], project)
    run(["faultwatch", "nb", "run", "notebooks/01_eda.ipynb", "--no-html"], project)
    m = json.loads((project / "reports/metrics/eda.json").read_text())
    counts = pd.DataFrame(m["sensor_quality"]).T  # split x quality
    assert counts.sum().to_dict() == {"ok": 48, "flat_line": 2, "clipping": 1, "stuck": 1}
    assert set(counts.index) == {"train", "val", "test"}
    nb = nbformat.read(project / "reports/notebooks/01_eda.ipynb", 4)
    shown = [o for c in nb.cells if "eda.sensor_quality" in c.source for o in c.outputs]
    assert any("flat_line" in str(o.get("data", o.get("text", ""))) for o in shown)
    assert m["quality"]["n_constant_signals"] == 2  # the older value check, unchanged


def test_a_notebook_gets_another_section_its_parameters_cell_names(tmp_path):
    """01_eda's parameters cell names `quality`: the runner injects params.yaml's section."""
    from faultwatch.notebook import stage_parameters

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"eda": {"shortcut_auc": 0.9}, "quality": {"stuck_run": 4}}))
    nb = nbformat.read(REPO / "notebooks/01_eda.ipynb", 4)
    got = stage_parameters("eda", nb, params)
    assert got["shortcut_auc"] == 0.9
    assert got["quality"] == QualityParams(stuck_run=4).model_dump()


def test_the_params_yaml_section_is_the_models_defaults():
    """params.yaml `quality` holds QualityParams' defaults; serving's fallback matches them."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert QualityParams.model_validate(raw["quality"]) == QualityParams()
    p = QualityParams()
    assert (DEFAULTS.clipping_share, DEFAULTS.stuck_run) == (p.clipping_share, p.stuck_run)
    assert DEFAULTS.score_bad_signals == p.score_bad_signals
