"""The monitor: drift on the logged features names the drifted feature, 20 undrifted windows
raise no alarm, more faults alone is output drift (not input drift), CBPE lands near the
realised scores on calibrated data, bad params name their key, and notebooks/05_monitor.ipynb
runs through the real runner on a small logged window."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.monitor_synthetic import (
    FAULT,
    HEALTHY,
    logged_window,
    reference_split,
    window,
    write_log,
)
from helpers.paths import REPO
from helpers.signals import drifting_signals

from faultwatch.errors import ParamsError
from faultwatch.monitor.params import MonitorParams, parse_duration, parse_time
from faultwatch.monitor.performance import (
    calibrator,
    estimate_performance,
    performance_figures,
    realised_performance,
    true_fault,
)
from faultwatch.monitor.reference import reference_frame
from faultwatch.monitor.report import Reference, monitor_report, output_drift, verdict
from faultwatch.params import section


@pytest.fixture(scope="module")
def reference() -> Reference:
    """700 training signals with 4 % faults, as the PLAID split's size and fault ratio."""
    return Reference(reference_frame(reference_split(700, 0.04)))


def check(frame: pd.DataFrame, reference: Reference, html_dir: Path | None = None, **params):
    return monitor_report(
        frame, None, reference, MonitorParams(**params), (None, frame["time"].max()), None, html_dir
    )


def kinds(result) -> list[tuple[str, str]]:
    return [(r["kind"], r["feature"]) for r in result["reasons"]]


def test_drifted_features_set_retrain_needed_and_name_the_feature(reference, tmp_path):
    offset = check(window(1000, seed=7, offset=0.2), reference, html_dir=tmp_path)
    assert offset["retrain_needed"]
    assert ("input_drift", "mean") in kinds(offset)
    reason = next(r for r in offset["reasons"] if r["feature"] == "mean")
    assert reason["model_version"] == "v1" and reason["score"] >= reason["threshold"] == 0.2
    assert offset["versions"]["v1"]["input_drift"]["columns"]["mean"]["verdict"] == "drift"
    # Evidently's reports, all rows and the predicted-healthy subset
    assert {p.name for p in tmp_path.iterdir()} == {"drift_v1.html", "drift_v1_healthy.html"}
    assert (tmp_path / "drift_v1.html").stat().st_size > 10_000

    gain = check(window(1000, seed=8, gain=1.15), reference)
    assert {"std", "rms"} <= {f for k, f in kinds(gain) if k == "input_drift"}
    assert "mean" not in {f for _, f in kinds(gain)}
    # the drift score does not depend on the threshold, the decision does
    loose = check(window(1000, seed=8, gain=1.15), reference, drift_threshold=100.0)
    assert not loose["retrain_needed"]


def test_twenty_undrifted_windows_raise_no_alarm(reference):
    """Each window is drawn from the reference's own distribution (1000 rows, 4 % faults):
    0 false alarms over 20 windows x 10 features x 2 subsets, with the configured test."""
    alarms = []
    for seed in range(20):
        result = check(window(1000, seed=100 + seed), reference)
        alarms += result["reasons"]
        assert result["versions"]["v1"]["input_drift"]["drifted"] == []
    assert alarms == []


def test_a_rise_in_the_fault_rate_alone_is_output_drift_not_input_drift(reference):
    result = check(window(1000, seed=9, fault_rate=0.2), reference)
    assert result["retrain_needed"]
    assert kinds(result) == [("output_drift", "fault_rate")]
    out = result["versions"]["v1"]["output_drift"]
    assert out["drifted"] and out["fault_rate"] > 0.15 and out["z"] > 4
    # the all-rows test did move: the class mix explains it, the healthy subset did not move
    drift = result["versions"]["v1"]["input_drift"]
    assert drift["class_mix"] and drift["drifted"] == []
    assert all(drift["columns"][c]["verdict"] == "class_mix" for c in drift["class_mix"])


def test_healthy_rows_are_compared_with_the_healthy_training_rows():
    """Training with 30 % faults, production with the usual 4 %: the predicted-healthy rows
    look like the healthy training rows, so no feature drifts (against all training rows,
    faults included, eight features would be called drifted)."""
    reference = Reference(reference_frame(reference_split(700, 0.30)))
    result = check(window(1000, seed=21), reference)
    assert kinds(result) == [("output_drift", "fault_rate")], kinds(result)
    columns = result["versions"]["v1"]["input_drift"]["columns"]
    assert {c["verdict"] for c in columns.values()} <= {"none", "class_mix"}


def test_output_drift_needs_both_the_delta_and_the_standard_errors(reference):
    """A few rows far off (20 rows, 4 faults: +16 points, z under 4) and many rows a little
    off (20 000 rows, +1.2 points, z about 8) are not output drift; 1 000 rows at +8 points
    are (z about 13)."""
    p0 = reference.fault_rate
    params = MonitorParams()  # max_fault_rate_delta 0.05, fault_rate_z 4

    def rows(n: int, rate: float) -> pd.DataFrame:
        return pd.DataFrame({"is_fault": (np.arange(n) < round(n * rate)).astype(int)})

    few = output_drift(rows(20, 0.2), reference, params)
    assert few["delta"] >= 0.05 and abs(few["z"]) < 4 and not few["drifted"], few
    many = output_drift(rows(20_000, p0 + 0.012), reference, params)
    assert many["delta"] < 0.05 and many["z"] >= 4 and not many["drifted"], many
    both = output_drift(rows(1000, p0 + 0.08), reference, params)
    assert both["delta"] >= 0.05 and both["z"] >= 4 and both["drifted"], both


def test_the_estimate_is_calibrated_on_the_labelled_rows_before_it_is_trusted():
    """Over-confident scores (the square root of calibrated ones): the estimate for the rows
    waiting for a label, calibrated on the labelled half, lands on their realised F1 (taking
    the raw scores as probabilities would say 0.58 for 0.82)."""
    frame = window(4000, seed=5, fault_rate=0.1, label_share=1.0)
    frame["probability"] = np.sqrt(frame["probability"])
    frame["is_fault"] = (frame["probability"] >= 0.7).astype(int)
    frame["label"] = np.where(frame["is_fault"] == 1, FAULT, HEALTHY)
    truth = true_fault(frame)
    waiting = frame.index >= 2000
    frame.loc[waiting, "true_label"] = None
    perf = performance_figures(frame, MonitorParams(label_delay=1), frame["time"].max())
    real = realised_performance(
        truth[waiting].to_numpy(), frame.loc[waiting, "is_fault"].to_numpy()
    )
    est = perf["estimated"]
    assert est["calibrated"] and est["n"] == 2000
    assert abs(est["f1"] - real["f1"]) < 0.05, (est["f1"], real["f1"])


def test_the_decision_rule():
    assert verdict(True, True) == "drift"
    assert verdict(True, False) == "class_mix"
    assert verdict(True, None) == "unconfirmed"  # too few predicted healthy rows to confirm
    assert verdict(False, True) == "healthy_only"
    assert verdict(None, None) == "untested"


def test_too_few_rows_are_not_tested(reference):
    result = check(window(100, seed=3, offset=1.0), reference, min_rows=200)
    assert result["versions"]["v1"]["input_drift"]["columns"]["mean"]["verdict"] == "untested"
    assert not any(k == "input_drift" for k, _ in kinds(result))


def calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities with 5 % faults on average, and classes drawn from them."""
    rng = np.random.default_rng(seed)
    fault = rng.random(n) < 0.05
    p = np.where(fault, rng.beta(5, 2, n), rng.beta(1, 25, n))
    return p, (rng.random(n) < p).astype(int)


def test_cbpe_is_within_a_tolerance_of_the_realised_scores_on_calibrated_data():
    for seed in range(3):
        p, y = calibrated(20_000, seed)
        pred = p >= 0.5
        est, real = estimate_performance(p, pred), realised_performance(y, pred)
        for k in ("precision", "recall", "f1"):
            assert abs(est[k] - real[k]) < 0.03, (seed, k, est[k], real[k])


def test_cbpe_calibrates_overconfident_scores_on_the_labelled_rows():
    """Scores pushed towards 1 (as a model trained on oversampled faults gives): the raw
    estimate is off, the one calibrated on labelled rows lands near the realised scores."""
    p, y = calibrated(40_000, seed=5)
    score = np.sqrt(p)  # monotone, not calibrated
    pred = score >= 0.7
    labelled, waiting = slice(0, 20_000), slice(20_000, None)
    real = realised_performance(y[waiting], pred[waiting])
    raw = estimate_performance(score[waiting], pred[waiting])
    cal = estimate_performance(
        score[waiting], pred[waiting], calibrator(score[labelled], y[labelled])
    )
    assert abs(raw["f1"] - real["f1"]) > 0.05
    assert abs(cal["f1"] - real["f1"]) < 0.03


def test_realised_performance_uses_the_labels_and_reports_their_coverage(reference):
    frame = window(1000, seed=11, label_share=0.6)
    labelled = frame["true_label"].notna()
    result = check(frame, reference, label_delay="10m", min_labels=50)
    perf = result["versions"]["v1"]["performance"]
    real = perf["realised"]
    assert real["n"] == labelled.sum()
    matured = frame["time"] <= frame["time"].max() - 600
    assert real["n_matured"] == matured.sum()
    assert real["coverage"] == pytest.approx((labelled & matured).sum() / matured.sum(), abs=1e-6)
    assert 0.5 < real["f1"] < 1  # the synthetic model: good, not perfect
    assert perf["estimated"]["n"] == (~labelled).sum() and perf["estimated"]["calibrated"]
    assert abs(perf["estimated"]["f1"] - real["f1"]) < 0.15


def test_durations_and_times():
    assert parse_duration("24h") == 86400 and parse_duration("90") == 90
    assert parse_duration("1.5d") == 1.5 * 86400
    assert parse_time("2026-11-23T00:00:00") == parse_time("2026-11-23T01:00:00+01:00")
    assert parse_time(1_700_000_000) == 1_700_000_000.0
    p = MonitorParams(last="1h", until=7200)
    assert p.window(now=99_999) == (3600.0, 7200.0)
    assert MonitorParams(since=100, last=None).window(now=200) == (100.0, 200.0)
    with pytest.raises(ParamsError, match="monitor.since"):
        MonitorParams(since=300, until=200).window(now=400)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"drift_threshold": -0.1}, "monitor.drift_threshold: Input should be greater than 0"),
        ({"stattest": "ks"}, "monitor.stattest: Value error, unknown stattest 'ks'"),
        ({"last": "yesterday"}, "monitor.last: Value error, 'yesterday' is not a duration"),
        ({"embedding_auc": 0.4}, "monitor.embedding_auc: Input should be greater than 0.5"),
        ({"thresold": 0.2}, "monitor.thresold: Extra inputs are not permitted"),
    ],
)
def test_a_bad_param_is_an_error_naming_the_key(bad, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(")):
        section("monitor", {"monitor": bad})


def test_the_cli_refuses_a_bad_window_before_running_anything(capsys, monkeypatch):
    from faultwatch.cli import main

    monkeypatch.chdir(REPO)
    assert main(["monitor", "--last", "yesterday"]) == 1
    assert "monitor.last: Value error, 'yesterday' is not a duration" in capsys.readouterr().err


def test_no_log_yet_is_an_empty_window_that_says_so_and_the_cli_refuses_it(
    tmp_path, capsys, monkeypatch
):
    from faultwatch.cli import main
    from faultwatch.monitor.source import read_window

    # the notebook (in JupyterLab on a fresh project) gets an empty window and what to do
    missing = tmp_path / "none.sqlite"
    window = read_window(MonitorParams(log=str(missing)))
    assert window.predictions.empty and window.rejected.empty and window.signals().empty
    assert {"model_version", "is_fault", "label", "time"} <= set(window.predictions.columns)
    assert window.note.startswith(f"monitor.log: {missing}: no prediction log there yet")
    # `faultwatch monitor` (the on-demand stage) refuses it before running any cell
    (tmp_path / "params.yaml").write_text("monitor: {}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["monitor", "--log", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"error: monitor.log: {missing}: no prediction log there yet. Serve a model" in err
    assert not missing.exists() and not (tmp_path / "reports").exists()


def test_embedding_drift_detects_a_shift_and_not_noise():
    from faultwatch.monitor.drift import embedding_drift

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(700, 64))
    same = embedding_drift(rng.normal(size=(5000, 64)), ref, sample=500)
    shifted = rng.normal(size=(5000, 64))
    shifted[:, :8] += 0.5
    moved = embedding_drift(shifted, ref, sample=500)
    assert same["n"] == moved["n"] == 500
    assert same["auc"] < 0.6 < 0.7 < moved["auc"]


# --- the notebook, through the real runner (papermill) ---------------------------------------


def tiny_model(model_dir: Path):
    """An untrained FaultCNN saved as the pipeline saves one: its embeddings are as good as a
    trained one's for telling two distributions apart."""
    import torch

    from faultwatch.model.io import load_model, save_model
    from faultwatch.model.network import FaultCNN

    torch.manual_seed(0)
    save_model(
        model_dir,
        FaultCNN(channels=[4, 8], kernel_size=5),
        {"input_length": 64, "positive_label": FAULT},
    )
    return load_model(model_dir)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_notebook_runs_through_the_runner_and_writes_monitor_json(tmp_path):
    from faultwatch.monitor.reference import model_embeddings
    from faultwatch.notebook import run_notebook
    from faultwatch.paths import write_text_atomic

    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks/05_monitor.ipynb", root / "notebooks")
    train = reference_split(300, 0.05, seed=1)
    (root / "data/prepared").mkdir(parents=True)
    train.assign(values=train["values"].map(list)).to_parquet(root / "data/prepared/train.parquet")
    model = tiny_model(root / "models/fault_cnn")
    write_text_atomic(
        root / "reports/register.json",
        json.dumps({"model_tag": "fault_cnn:v1", "weights_sha256": model.meta["weights_sha256"]}),
    )
    # a drifted window: noisier signals, 60 % of them labelled
    rng = np.random.default_rng(4)
    signals, y = drifting_signals(400, 0.05, rng, noise=0.6)
    frame = logged_window(signals, y, rng, label_share=0.6)
    target = write_log(root / "log.sqlite", frame, signals, model_embeddings(model, signals))
    # the log stamps rows with the time of writing: the last hour holds them all
    params = {
        "monitor": {
            "log": target,
            "last": "1h",
            "min_rows": 50,
            "embedding_sample": 200,
            "label_delay": "5m",
        }
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))

    run = run_notebook("notebooks/05_monitor.ipynb", root)

    metrics = json.loads((root / "reports/metrics/monitor.json").read_text())
    assert metrics["retrain_needed"] is True
    features = {r["feature"] for r in metrics["reasons"] if r["kind"] == "input_drift"}
    assert {"band_0", "band_1"} <= features
    assert {"kind", "feature", "score", "threshold", "model_version"} == set(metrics["reasons"][0])
    assert metrics["window"]["n_predictions"] == 400
    v1 = metrics["versions"]["v1"]
    assert v1["n"] == 400 and v1["latency_ms"]["p99"] >= v1["latency_ms"]["p50"] > 0
    assert v1["embedding_drift"]["reference"] == str(root / "models/fault_cnn")
    assert v1["embedding_drift"]["verdict"] == "drift"  # noise moves the embedding too
    assert v1["performance"]["realised"]["n"] == frame["true_label"].notna().sum()
    assert metrics["malformed"] == {
        "n": 1,
        "by_reason": {"finite_number": 1},
        "by_status": {"422": 1},
    }
    assert metrics["production_signals"]["n"] == 80
    assert (root / "reports/monitor/drift_v1.html").is_file()
    assert (root / "reports/monitor/drift_v1_healthy.html").is_file()
    assert run.html.is_file() and run.notebook.is_file()
    assert not list((root / ".faultwatch/staging").iterdir())  # staged outputs moved into place


def evidently_scores(current: pd.DataFrame, reference: pd.DataFrame, method: str) -> dict:
    """The per-column drift scores of Evidently's own DataDriftPreset report."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = list(current.columns)
    definition = DataDefinition(numerical_columns=cols)
    snapshot = Report([DataDriftPreset(columns=cols, method=method, threshold=0.2)]).run(
        Dataset.from_pandas(current.astype("float64"), data_definition=definition),
        Dataset.from_pandas(reference.astype("float64"), data_definition=definition),
    )
    return {
        m["config"]["column"]: m["value"]
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }


@pytest.mark.parametrize("method", ["psi", "wasserstein"])
def test_the_scores_are_those_of_evidentlys_drift_report(reference, method):
    """column_drift computes, without Evidently, the scores Evidently's DataDriftPreset
    reports: on the monitor's features, and on columns that take each branch of its tests (few
    distinct values, binned by value; a bin empty on one side; a tiny spread)."""
    from faultwatch.monitor.drift import column_drift
    from faultwatch.monitor.reference import DRIFT_COLUMNS

    cols = list(DRIFT_COLUMNS)
    current = window(1000, seed=3, noise=0.05)
    ours = column_drift(current, reference.frame, cols, method, 0.2)["score"]
    assert ours.to_dict() == pytest.approx(
        evidently_scores(current[cols], reference.frame[cols], method), rel=1e-9, abs=1e-12
    )
    rng = np.random.default_rng(5)
    ref = pd.DataFrame(
        {
            "few": rng.integers(0, 5, 700),  # 5 values: a bin per value
            "few_new": rng.integers(0, 3, 700),  # current has values the reference lacks
            "skewed": rng.lognormal(0, 2, 700),  # sturges bins, most of them empty on a side
            "narrow": 1.0 + rng.normal(0, 1e-5, 700),  # the spread below 0.001
        }
    )
    cur = pd.DataFrame(
        {
            "few": rng.integers(1, 5, 300),
            "few_new": rng.integers(1, 6, 300),
            "skewed": rng.lognormal(1, 1, 300),
            "narrow": 1.0 + rng.normal(2e-5, 1e-5, 300),
        }
    )
    ours = column_drift(cur, ref, list(ref.columns), method, 0.2)["score"]
    assert ours.to_dict() == pytest.approx(evidently_scores(cur, ref, method), rel=1e-9, abs=1e-12)


def test_the_monitor_imports_evidently_only_for_its_pages(reference, tmp_path):
    """Evidently (seconds of import) is needed for its HTML pages alone: a monitor run without
    them never imports it; with them, the pages are Evidently's."""
    import subprocess
    import sys

    frame = window(400, seed=1)
    frame.to_parquet(tmp_path / "window.parquet")
    reference.frame.to_parquet(tmp_path / "reference.parquet")
    code = """
import sys
import pandas as pd
from pathlib import Path
from faultwatch.monitor.params import MonitorParams
from faultwatch.monitor.report import Reference, monitor_report
frame = pd.read_parquet(sys.argv[1])
ref = Reference(pd.read_parquet(sys.argv[2]))
pages = Path(sys.argv[3]) if len(sys.argv) > 3 else None
out = monitor_report(frame, None, ref, MonitorParams(), (None, frame["time"].max()), None, pages)
print(sorted(out["versions"]["v1"]["input_drift"]["columns"]), "evidently" in sys.modules)
"""
    args = [
        sys.executable,
        "-c",
        code,
        str(tmp_path / "window.parquet"),
        str(tmp_path / "reference.parquet"),
    ]
    without = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert without.strip().endswith("False"), without
    pages = tmp_path / "pages"
    with_pages = subprocess.run(args + [str(pages)], capture_output=True, text=True, check=True)
    assert with_pages.stdout.strip().endswith("True"), with_pages.stdout
    assert without.split("]")[0] == with_pages.stdout.split("]")[0]
    assert sorted(p.name for p in pages.iterdir()) == ["drift_v1.html", "drift_v1_healthy.html"]


def test_the_monitor_is_no_dvc_stage(tmp_path):
    """No dvc.yaml of the project declares the monitor: its input, the prediction log, is not
    DVC's, and as a stage (`always_changed`, `frozen` or neither) it would keep a plain
    `dvc status` from being clean (dvc.yaml says why). `faultwatch monitor` runs it."""
    from helpers.cli import run
    from helpers.projects import copy_project

    project = copy_project(tmp_path / "proj")
    every = run(["dvc", "stage", "list", "--all"], project).stdout
    assert every.startswith("prepare") and "monitor" not in every
    assert "faultwatch monitor" in (project / "dvc.yaml").read_text()
