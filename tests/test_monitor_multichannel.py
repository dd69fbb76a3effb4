"""The monitor on a multichannel model (issue 21, point 5): the reference's features per
channel (`rms[x]` ... `band_3[z]`), the log's `channel_features` expanded into the same
columns, and a drift injected into one channel of the traffic reported on that channel only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.monitor_synthetic import (
    channel_reference,
    channel_signals,
    channel_window,
    logged_window,
    write_log,
)

from faultwatch.features import FEATURES, channel_feature_names
from faultwatch.monitor.channels import by_channel, describe_columns, feature_channel
from faultwatch.monitor.params import MonitorParams
from faultwatch.monitor.reference import drift_columns, reference_frame
from faultwatch.monitor.report import Reference, monitor_report
from faultwatch.monitor.source import (
    expand_channel_features,
    load_reference,
    production_eda_frame,
    read_window,
)

AXES = ("x", "y", "z")


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(reference_frame(channel_reference(700, 0.04)))


def check(frame: pd.DataFrame, reference: Reference) -> dict:
    rows = expand_channel_features(frame)
    return monitor_report(rows, None, reference, MonitorParams(), (None, rows["time"].max()))


def test_the_reference_has_the_features_of_every_channel(reference):
    names = channel_feature_names(FEATURES, AXES)
    assert reference.channels == AXES
    assert reference.columns == tuple(names) == drift_columns(AXES)
    assert names[:2] == ["rms[x]", "crest[x]"] and names[-1] == "band_3[z]"
    assert set(names) <= set(reference.frame.columns)
    assert drift_columns(None) == ("mean", "std", *FEATURES)  # univariate: as before
    assert [feature_channel(c) for c in ("rms[z]", "band_2[x y]", "rms", "mean")] == [
        "z",
        "x y",
        None,
        None,
    ]


def test_a_drift_in_one_channel_is_reported_on_that_channel_only(reference):
    calm = check(channel_window(600, seed=5), reference)
    assert calm["reasons"] == [] and not calm["retrain_needed"]

    result = check(channel_window(600, seed=7, drift={"z": {"noise": 0.3}}), reference)
    assert result["retrain_needed"]
    drifted = [r for r in result["reasons"] if r["kind"] == "input_drift"]
    assert {"rms[z]", "kurtosis[z]"} <= {r["feature"] for r in drifted}
    assert all(r["feature"].endswith("[z]") and r["channel"] == "z" for r in drifted)
    text = json.dumps(result["reasons"])
    assert "[x]" not in text and "[y]" not in text
    columns = result["versions"]["v1"]["input_drift"]["columns"]
    assert set(columns) == set(reference.columns)
    assert all(
        e["verdict"] in ("none", "untested") for c, e in columns.items() if not c.endswith("[z]")
    )
    assert result["reference"]["channels"] == list(AXES)


def test_a_gain_on_x_is_named_on_x():
    """The same on another channel, with another drift: the reasons follow the channel."""
    reference = Reference(reference_frame(channel_reference(400, 0.04, seed=2)))
    result = check(channel_window(400, seed=9, drift={"x": {"gain": 1.2}}), reference)
    features = {r["feature"] for r in result["reasons"] if r["kind"] == "input_drift"}
    assert "rms[x]" in features and all(f.endswith("[x]") for f in features)


def test_channel_features_expand_into_columns_and_univariate_rows_stay_as_they_are():
    frame = pd.DataFrame(
        {
            "prediction_id": ["a", "b", "c"],
            "rms": [1.0, np.nan, np.nan],
            "channels": [None, '["x", "z"]', '["x", "z"]'],
            "channel_features": [None, '{"rms[x]": 1.5, "rms[z]": 2.0}', '{"rms[x]": 0.5}'],
        }
    )
    out = expand_channel_features(frame)
    assert "channel_features" not in out.columns
    assert out["rms[x]"].tolist() == [pytest.approx(v, nan_ok=True) for v in (np.nan, 1.5, 0.5)]
    assert out["rms[z]"].isna().tolist() == [True, False, True]
    assert out["rms"].iloc[0] == 1.0 and list(out.index) == list(frame.index)
    univariate = frame.iloc[:1]
    assert expand_channel_features(univariate) is univariate
    no_column = frame.drop(columns=["channel_features"])
    assert expand_channel_features(no_column) is no_column


def test_a_drift_written_through_the_prediction_log_is_read_back_per_channel(reference, tmp_path):
    """The window through the real log (predlog's channels and channel_features columns, its
    sampled (channels, samples) signals) and read_window: the reasons name z only."""
    signals, y, rng = channel_signals(500, seed=11, drift={"z": {"gain": 1.2}})
    frame = logged_window(signals, y, rng, label_share=0.5)
    target = write_log(tmp_path / "log.sqlite", frame, signals, None)
    window = read_window(MonitorParams(log=target, last="1h"))
    assert {"rms[x]", "band_3[z]"} <= set(window.predictions.columns)
    assert window.predictions["rms"].isna().all()  # a multichannel row's fixed columns: NULL
    result = monitor_report(
        window.predictions, window.rejected, reference, MonitorParams(), (window.start, window.end)
    )
    features = {r["feature"] for r in result["reasons"] if r["kind"] == "input_drift"}
    assert "rms[z]" in features and all(f.endswith("[z]") for f in features)

    prod = production_eda_frame(window.signals(), window.predictions)
    assert len(prod) == 100 and prod.attrs["channels"] == AXES
    assert {np.shape(v)[0] for v in prod["values"]} == {3}
    assert prod["length"].tolist() == [np.shape(v)[1] for v in prod["values"]]
    assert set(prod["split"]) == {"labelled", "predicted"}


def test_load_reference_reads_the_split_through_read_split(tmp_path):
    from faultwatch.data.prepare import to_table

    split = channel_reference(60, 0.1, seed=3)
    pq.write_table(to_table(split, split["y"], AXES), tmp_path / "train.parquet")
    params = MonitorParams(
        reference_path=str(tmp_path / "train.parquet"),
        prepare_metrics=str(tmp_path / "none.json"),
    )
    reference = load_reference(params, tmp_path)
    assert reference.channels == AXES and len(reference.frame) == 60
    expected = reference_frame(split)[list(reference.columns)]
    pd.testing.assert_frame_equal(reference.frame[list(reference.columns)], expected)


def test_tables_figures_and_the_page_group_the_features_by_channel(reference):
    from faultwatch.monitor import plots
    from faultwatch.report_page.monitor_html import monitor_section

    assert describe_columns(["rms[z]", "crest[z]", "rms[x]"]) == "z: rms, crest; x: rms"
    assert describe_columns(["mean", "band_0"]) == "mean, band_0"  # univariate: as before
    assert list(by_channel(reference.columns)) == list(AXES)
    result = check(channel_window(600, seed=7, drift={"z": {"noise": 0.3}}), reference)
    cell = plots.version_table(result).loc["v1", "input_drift"]
    assert cell.startswith("z: rms, crest, kurtosis") and "[" not in cell
    table = plots.drift_table(result)
    assert table["channel"].tolist() == [c for c in AXES for _ in FEATURES]
    assert table["feature"].tolist() == list(reference.columns)
    fig = plots.plot_drift_scores(result)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [f"v1 {c}: psi drift score" for c in AXES]
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()] == list(FEATURES)
    html = monitor_section({"report": result, "pages": [], "notebook": False})
    assert "z: rms, crest, kurtosis" in html and "<td>rms[z]</td>" in html
    assert "[x]" not in html and "[y]" not in html


def tiny_channel_model(model_dir):
    """An untrained three-channel FaultCNN saved as the pipeline saves one."""
    import torch

    from faultwatch.model.io import load_model, save_model
    from faultwatch.model.network import FaultCNN

    torch.manual_seed(0)
    network = FaultCNN(channels=[4, 8], kernel_size=5, in_channels=len(AXES))
    meta = {"input_length": 64, "positive_label": "F", "channels": list(AXES)}
    save_model(model_dir, network, meta)
    return load_model(model_dir)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_notebook_monitors_a_multichannel_log(tmp_path):
    """05_monitor through the real runner on a three-axis model's log with a drift on z: the
    reasons name z only, the embedding drift is computed in the model's own space, and the
    sampled signals come back per channel."""
    import shutil

    import yaml
    from helpers.paths import REPO

    from faultwatch.data.prepare import to_table
    from faultwatch.monitor.reference import model_embeddings
    from faultwatch.notebook import run_notebook
    from faultwatch.paths import write_text_atomic

    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks/05_monitor.ipynb", root / "notebooks")
    train = channel_reference(400, 0.05, seed=1)
    (root / "data/prepared").mkdir(parents=True)
    pq.write_table(to_table(train, train["y"], AXES), root / "data/prepared/train.parquet")
    model = tiny_channel_model(root / "models/fault_cnn")
    record = {"model_tag": "fault_cnn:v1", "weights_sha256": model.meta["weights_sha256"]}
    write_text_atomic(root / "reports/register.json", json.dumps(record))
    signals, y, rng = channel_signals(400, seed=13, drift={"z": {"noise": 0.4}})
    frame = logged_window(signals, y, rng, label_share=0.5)
    target = write_log(root / "log.sqlite", frame, signals, model_embeddings(model, signals))
    params = {"log": target, "last": "1h", "min_rows": 50, "embedding_sample": 200}
    (root / "params.yaml").write_text(yaml.safe_dump({"monitor": params}))

    run = run_notebook("notebooks/05_monitor.ipynb", root)

    metrics = json.loads((root / "reports/metrics/monitor.json").read_text())
    assert metrics["retrain_needed"] and metrics["reference"]["channels"] == list(AXES)
    drifted = [r for r in metrics["reasons"] if r["kind"] == "input_drift"]
    assert drifted and all(r["channel"] == "z" for r in drifted)
    assert "[x]" not in json.dumps(metrics["reasons"])
    v1 = metrics["versions"]["v1"]
    assert set(v1["input_drift"]["columns"]) == set(channel_feature_names(FEATURES, AXES))
    assert v1["embedding_drift"]["reference"] == str(root / "models/fault_cnn")
    assert v1["embedding_drift"]["verdict"] != "untested"
    assert metrics["production_signals"]["n"] == 80
    assert run.html.is_file()
