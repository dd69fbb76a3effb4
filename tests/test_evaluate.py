"""Evaluation: metrics on hand-made predictions, the threshold rule, baselines, report formats."""

from __future__ import annotations

import json
import math
import warnings

import nbformat
import numpy as np
import pandas as pd
import pytest
from helpers.cli import run
from helpers.signals import make_signals

from faultwatch import evaluate as ev

# 3 faults, 7 healthy; at 0.5: tp 2 (0.9, 0.6), fn 1 (0.2), fp 1 (0.7), tn 6
Y = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
P = [0.9, 0.6, 0.2, 0.7, 0.1, 0.15, 0.05, 0.3, 0.25, 0.12]


@pytest.fixture(autouse=True)
def _no_warnings(request):
    # an undefined metric must be handled, not warned about (sklearn's UndefinedMetricWarning);
    # the notebook test runs other code (torch, the runner) whose warnings are not ours
    if request.node.get_closest_marker("slow"):
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_fault_metrics_match_hand_computed_values():
    m = ev.fault_metrics(Y, P, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(0.8)
    # ranked: 0.9 (+) P=1 R=1/3, 0.7 (-), 0.6 (+) P=2/3 R=2/3, 0.3 0.25 (-), 0.2 (+) P=3/6 R=1
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    # fault-above-healthy pairs: 0.9 beats 7, 0.6 beats 6, 0.2 beats 4, of 3 * 7
    assert m["roc_auc"] == pytest.approx(17 / 21)
    assert (m["n"], m["n_fault"], m["threshold"]) == (10, 3, 0.5)


def test_threshold_is_inclusive():
    assert ev.fault_metrics([1, 0], [0.5, 0.49], 0.5)["tp"] == 1


def test_all_negative_predictions_give_zero_precision_and_f1():
    m = ev.fault_metrics(Y, [0.01] * len(Y), 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (0, 0, 3, 7)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["accuracy"] == pytest.approx(0.7)
    # constant scores rank nothing: chance ROC-AUC, PR-AUC = the fault ratio
    assert m["roc_auc"] == pytest.approx(0.5)
    assert m["pr_auc"] == pytest.approx(0.3)


def test_always_healthy_is_the_accuracy_trap():
    y = [1] * 4 + [0] * 96
    m = ev.fault_metrics(y, ev.always_healthy_scores(len(y)), ev.FIXED_THRESHOLD)
    assert m["accuracy"] == pytest.approx(0.96)
    assert m["f1"] == 0.0 and m["recall"] == 0.0 and m["precision"] == 0.0
    table = ev.comparison_table(
        {"model": ev.fault_metrics(y, [1.0] * 4 + [0.0] * 96, 0.5), "always healthy": m}
    )
    assert list(table.index) == ["model", "always healthy"]
    assert table.loc["always healthy", "accuracy"] > 0.9 and table.loc["always healthy", "f1"] == 0


def test_one_class_only_leaves_aucs_undefined_not_wrong():
    m = ev.fault_metrics([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert (m["fp"], m["tn"], m["precision"], m["f1"]) == (1, 2, 0.0, 0.0)
    m = ev.fault_metrics([1, 1], [0.9, 0.2], 0.5)
    assert m["roc_auc"] is None and m["pr_auc"] == pytest.approx(1.0)
    assert m["recall"] == 0.5


def test_metrics_are_json_able():
    m = ev.rounded(ev.evaluate_scores(Y, P, Y, P), digits=3)
    assert json.loads(json.dumps(m)) == m
    # F1 2/3 at 0.6 and at 0.2: the higher wins, then the middle of the gap down to 0.3
    assert m["threshold"] == 0.45 and m["test"]["precision"] == 0.667


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        ev.fault_metrics([0, 1, 0], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match="labels must be 0"):
        ev.fault_metrics([0, 0.5], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match="no fault examples"):
        ev.choose_threshold([0, 0, 0], [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("y", "p", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.6, 0.9], 0.5),  # separable: the middle of the gap
        ([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], 0.4),  # best at 0.7 (F1 0.8), midpoint down to 0.1
        # F1 2/3 at 0.9 (tp 1, fn 1) and at 0.6 (tp 2, fp 2): the tie goes to the higher one
        ([1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6], 0.85),
        ([0, 1, 0], [0.3, 0.3, 0.3], 0.3),  # constant scores: all fault beats none
    ],
)
def test_choose_threshold(y, p, expected):
    assert ev.choose_threshold(y, p) == pytest.approx(expected)


def test_chosen_threshold_maximises_validation_f1():
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.1).astype(int)
    p = np.clip(0.35 * y + rng.random(300) * 0.7, 0, 1).round(2)  # overlapping, with ties
    t = ev.choose_threshold(y, p)
    best = max(ev.fault_metrics(y, p, g)["f1"] for g in np.linspace(0, 1, 1001))
    assert ev.fault_metrics(y, p, t)["f1"] == pytest.approx(best)
    order = rng.permutation(300)
    assert ev.choose_threshold(y[order], p[order]) == t  # the order of the rows does not matter


def test_threshold_comes_from_validation_only():
    rng = np.random.default_rng(0)
    y_val = np.array([0] * 40 + [1] * 5)
    p_val = np.where(y_val == 1, 0.6, 0.2) + 0.1 * rng.random(45)
    runs = []
    for seed in range(4):  # very different test sets, including one with no fault at all
        r = np.random.default_rng(seed)
        n = int(r.integers(5, 50))
        y_test = (r.random(n) < 0.3 * (seed != 3)).astype(int)
        runs.append(ev.evaluate_scores(y_val, p_val, y_test, r.random(n)))
    assert {r["threshold"] for r in runs} == {ev.choose_threshold(y_val, p_val)}
    assert all(r["val"] == runs[0]["val"] for r in runs)
    fixed = ev.evaluate_scores(y_val, p_val, [0, 1], [0.3, 0.9], threshold=0.95)
    assert fixed["threshold"] == 0.95 and fixed["test"]["tp"] == 0


def test_per_sample_loss_and_sorting():
    loss = ev.per_sample_loss([1, 0, 1, 0], [0.5, 0.9, 0.0, 0.0])
    assert loss[0] == pytest.approx(math.log(2))
    assert loss[1] == pytest.approx(-math.log(0.1))
    assert math.isfinite(loss[2]) and loss[2] > 10  # p clipped: a confident miss is large, finite
    assert loss[3] == pytest.approx(0, abs=1e-6)
    split = pd.DataFrame(
        {"id": list("abcd"), "label": ["f", "h", "f", "h"], "y": np.int8([1, 0, 1, 0])}
    )
    table = ev.sorted_by_loss(split, [0.5, 0.9, 0.0, 0.0])
    assert list(table.columns) == ["id", "label", "y", "p", "loss"]
    assert list(table["id"]) == ["c", "b", "a", "d"]
    assert table["loss"].is_monotonic_decreasing


def test_signal_features_shape_and_edge_cases():
    signals = [np.sin(np.linspace(0, 9, 80)), np.full(30, 2.0), np.array([1.0, -1.0])]
    x = ev.signal_features(signals, feature_length=32, fft_bands=4)
    assert x.shape == (3, len(ev.feature_names(4)))
    assert np.isfinite(x).all()
    bands = x[:, -4:]
    assert np.allclose(bands[0].sum(), 1) and np.allclose(bands[1], 0)  # constant: no energy
    assert x[0, ev.FEATURE_STATS.index("log_length")] == pytest.approx(math.log(80))


@pytest.mark.parametrize("kind", ["random_forest", "gradient_boosting", "logistic_regression"])
def test_classical_baseline_finds_an_obvious_fault(kind):
    train, test = make_signals(seed=1), make_signals(seed=2)  # the fault: a burst of +3
    y_train, y_test = (train.label == "fault").astype(int), (test.label == "fault").astype(int)
    model = ev.classical_baseline(kind, n_estimators=30, feature_length=64, fft_bands=4, seed=0)
    model.fit(list(train["values"]), y_train)
    p = ev.fault_probability(model, test["values"])
    assert p.shape == (len(test),) and ((p >= 0) & (p <= 1)).all()
    m = ev.fault_metrics(
        y_test, p, ev.choose_threshold(y_train, ev.fault_probability(model, train["values"]))
    )
    assert m["f1"] >= 0.9 and m["pr_auc"] >= 0.9
    again = ev.classical_baseline(kind, n_estimators=30, feature_length=64, fft_bands=4, seed=0)
    assert np.array_equal(
        again.fit(list(train["values"]), y_train).predict_proba(list(test["values"]))[:, 1], p
    )


def test_pr_curve_file_is_a_dvc_json_plot(tmp_path):
    path = ev.write_pr_curve(tmp_path / "out" / "pr_curve.json", Y, P)
    points = json.loads(path.read_text())
    assert isinstance(points, list) and points
    assert all(set(q) == {"precision", "recall"} for q in points)
    assert all(0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1 for q in points)
    assert max(q["recall"] for q in points) == 1.0
    assert any(
        q["precision"] == 1.0 and q["recall"] == pytest.approx(1 / 3, abs=1e-6) for q in points
    )
    assert ev.pr_curve_points([0, 0], [0.1, 0.2]) == []  # no fault: no curve, no warning


def test_confusion_file_is_a_dvc_confusion_plot(tmp_path):
    path = ev.write_confusion(tmp_path / "confusion.csv", Y, P, 0.5)
    df = pd.read_csv(path)
    assert list(df.columns) == ["actual", "predicted"] and len(df) == len(Y)
    counts = df.value_counts().to_dict()
    assert counts == {
        ("fault", "fault"): 2,
        ("healthy", "fault"): 1,
        ("fault", "healthy"): 1,
        ("healthy", "healthy"): 6,
    }


def test_worst_table_and_threshold_files(tmp_path):
    split = pd.DataFrame({"id": ["a", "b"], "label": ["3", "1"], "y": np.int8([1, 0])})
    ev.write_table(tmp_path / "worst_test.csv", ev.sorted_by_loss(split, [0.2, 0.1]))
    df = pd.read_csv(tmp_path / "worst_test.csv", dtype={"label": str})
    assert list(df.columns) == ["id", "label", "y", "p", "loss"] and list(df.id) == ["a", "b"]
    record = ev.threshold_record(ev.evaluate_scores(Y, P, Y, P))
    ev.write_json(tmp_path / "threshold.json", record)
    saved = json.loads((tmp_path / "threshold.json").read_text())
    assert saved["chosen_on"] == "val" and 0 < saved["threshold"] < 1


def test_plots_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    split = make_signals(n_healthy=6, n_fault=2)
    split["y"] = (split.label == "fault").astype(int)
    p = np.linspace(0, 1, len(split))
    fig = ev.plot_worst(split, ev.sorted_by_loss(split, p), 3)
    assert len(fig.axes) == 3
    fig = ev.plot_pr_curves({"a": (split.y, p), "none": (split.y, np.zeros(len(split)))})
    assert fig.axes[0].get_xlabel() == "recall"


def test_importing_evaluate_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, faultwatch.evaluate; print(sorted({'torch', 'sklearn', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_evaluate_notebook_on_tiny_data(project):
    """04_evaluate.ipynb through the runner, on tiny data, with a freshly initialised CNN."""
    import torch

    from faultwatch.model.io import save_model
    from faultwatch.model.network import FaultCNN
    from faultwatch.notebook import run_notebook

    run(["faultwatch", "prepare"], project)
    torch.manual_seed(0)
    save_model(
        project / "models/fault_cnn",
        FaultCNN(channels=(4, 8)),
        {"input_length": 64, "positive_label": "fault"},
    )
    overrides = {"baseline_n_estimators": 25, "baseline_feature_length": 64, "worst_n": 3}
    r = run_notebook("notebooks/04_evaluate.ipynb", project, overrides=overrides, html=False)

    m = json.loads((project / "reports/evaluate/scores.json").read_text())
    assert set(m) == {
        "test",
        "val",
        "threshold",
        "baseline_always_healthy",
        "baseline_classical",
        "family",
    }
    # a CNN candidate: the classical baseline is the other family, on the same split
    classical = {k: v for k, v in m["baseline_classical"].items() if k != "model"}
    assert m["family"] == {
        "candidate": "cnn",
        "test": {"cnn": m["test"], "classical": classical},
        "baseline_classical": "other family",
    }
    from faultwatch.evaluate import headline

    assert json.loads(r.metrics.read_text()) == headline(m)  # the DVC metrics: the headline
    assert m["test"]["threshold"] == m["val"]["threshold"] == m["threshold"]
    n_test = m["test"]["n"]
    healthy = m["baseline_always_healthy"]
    assert healthy["f1"] == 0 and healthy["accuracy"] == pytest.approx(
        1 - healthy["n_fault"] / n_test
    )
    assert m["baseline_classical"]["f1"] >= 0.8  # the tiny fault (a +3 burst) is obvious
    out = project / "reports/evaluate"
    worst = pd.read_csv(out / "worst_test.csv")
    assert len(worst) == n_test and worst["loss"].is_monotonic_decreasing
    confusion = pd.read_csv(out / "confusion.csv")
    assert (confusion.actual == "fault").sum() == m["test"]["n_fault"]
    assert ((confusion.predicted == "fault") & (confusion.actual == "fault")).sum() == m["test"][
        "tp"
    ]
    assert json.loads((out / "threshold.json").read_text())["threshold"] == m["threshold"]
    nb = nbformat.read(r.notebook, 4)
    assert (
        sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])) >= 2
    )

    # the files are what dvc.yaml's plots declare, and DVC renders them
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    rendered = {k: v[0]["content"]["data"]["values"] for k, v in shown.items()}
    assert any(rows and set(rows[0]) >= {"precision", "recall"} for rows in rendered.values())
    assert any(rows and set(rows[0]) >= {"actual", "predicted"} for rows in rendered.values())
    assert not shown.get("errors")
