"""Multichannel signals in the EDA, augmentation and evaluation stages (issue 21, point 3): the
shortcut check per channel and by name, the channel correlation per class, augmentation that
moves a signal's channels together and scales them apart, the classical baseline on every
channel's features, and the 01/02/04 notebooks on a three-axis project."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.cli import run
from helpers.datafiles import write_parquet_columns
from helpers.projects import copy_project
from helpers.signals import AXES, three_axis_signals

from faultwatch import augment, eda
from faultwatch import evaluate as ev
from faultwatch.errors import DataError
from faultwatch.splits import read_split, split_channels


def frame(df: pd.DataFrame, split: str = "train") -> pd.DataFrame:
    """three_axis_signals' rows as a split frame read by read_split: y, length, the names."""
    out = df.assign(
        y=(df["label"] == "fault").astype(int),
        length=df["values"].map(lambda v: v.shape[1]),
        source_row=range(len(df)),
        split=split,
    )
    out.attrs["channels"] = AXES
    return out


@pytest.fixture
def axes() -> pd.DataFrame:
    return frame(three_axis_signals(n_healthy=20, n_fault=10, seed=4))


def level_on_x(offset: float) -> pd.DataFrame:
    """30 signals with no burst at all; the 10 "faults" differ only by `offset` on x."""
    df = frame(three_axis_signals(n_healthy=30, n_fault=0, seed=5))
    fault = np.arange(len(df)) >= 20
    df["y"], df["label"] = fault.astype(int), np.where(fault, "fault", "ok")
    df["values"] = [
        v + np.array([[offset], [0.0], [0.0]]) * f for v, f in zip(df["values"], fault, strict=True)
    ]
    return df


def agg() -> None:
    import matplotlib

    matplotlib.use("Agg")


# --- EDA ---------------------------------------------------------------------------------------


def test_a_level_shortcut_on_one_channel_is_flagged_by_its_name():
    scores = eda.shortcut_scores(level_on_x(3.0), threshold=0.95)
    assert "length" in scores.index and "mean[x]" in scores.index and "mean" not in scores.index
    assert len(scores) == 1 + 3 * (len(eda.PROPERTIES) - 1)  # the length once, the rest per axis
    flagged = eda.shortcut_summary(scores)["flagged"]
    assert "mean[x]" in flagged and all(name.endswith("[x]") for name in flagged)
    assert scores.loc["mean[x]", "fault_side"] == "higher in fault"
    assert eda.shortcut_warning(scores, 0.95).startswith("WARNING: ")
    assert "[x]" in eda.shortcut_warning(scores, 0.95).split(" alone")[0]
    quiet = eda.shortcut_summary(eda.shortcut_scores(level_on_x(0.0), threshold=0.95))
    assert quiet["flagged"] == []


def test_the_burst_on_z_is_a_shortcut_of_z_only(axes):
    flagged = eda.shortcut_summary(eda.shortcut_scores(axes))["flagged"]
    assert "max[z]" in flagged and all(name.endswith("[z]") for name in flagged)


def test_channel_correlation_per_class(axes):
    corr = eda.channel_correlation(axes)
    assert set(corr) == {"healthy", "fault"}
    for name, y in (("healthy", 0), ("fault", 1)):
        m = corr[name]
        assert list(m.index) == list(m.columns) == list(AXES)
        want = np.mean([np.corrcoef(v) for v in axes.loc[axes.y == y, "values"]], axis=0)
        np.testing.assert_allclose(m.to_numpy(), want, atol=1e-12)
    # x and y move together in both classes; the burst on z decorrelates z from x in faults
    assert corr["healthy"].loc["x", "y"] > 0.8 and corr["fault"].loc["x", "y"] > 0.8
    assert corr["fault"].loc["x", "z"] < corr["healthy"].loc["x", "z"] - 0.1
    univariate = axes.assign(values=[v[0] for v in axes["values"]])
    univariate.attrs = {}
    assert eda.channel_correlation(univariate) == {}


def test_a_constant_channel_is_left_out_of_the_mean_correlation(axes):
    values = [v.copy() for v in axes["values"]]
    values[0][2] = 0.0  # one healthy signal's z never moves
    dead = axes.assign(values=values)
    corr = eda.channel_correlation(dead)["healthy"]
    want = np.mean([np.corrcoef(v)[0, 2] for v in axes.loc[1:19, "values"]])
    assert corr.loc["x", "z"] == pytest.approx(want)
    assert eda.value_quality(dead)["n_constant_signals"] == 1


def test_eda_reads_a_multichannel_prepared_project(prepared):
    df = eda.load_splits(prepared / "data/prepared")
    assert df.attrs["channels"] == AXES and set(df["split"]) == {"train", "val", "test"}
    assert all(v.shape == (3, n) for v, n in zip(df["values"], df["length"], strict=True))
    assert eda.value_quality(df) == {
        "n_nonfinite_values": 0,
        "n_empty_signals": 0,
        "n_constant_signals": 0,
    }
    counts, thresholds = eda.sensor_quality(df, {})
    # the thresholds as the store entry records them: each channel's own under `channels`
    assert set(thresholds["channels"]) == set(AXES) and counts.to_numpy().sum() == len(df)
    env = eda.class_envelopes(df, length=32)
    assert env["fault"][0].shape == (3, 32)
    agg()
    fig = eda.plot_envelopes(env, "fault", 12, AXES)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()][:3] == [
        f"fault (fault) [{c}]" for c in AXES
    ]
    fig = eda.plot_examples(eda.examples(df, 2), 12)
    assert len(fig.axes) == 4 and [t.get_text() for t in fig.axes[0].get_legend().texts] == [*AXES]
    assert len(eda.plot_channel_correlation(eda.channel_correlation(df)).axes) == 4  # + colorbar


# --- augmentation ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pad", "roll"])
def test_a_time_shift_moves_every_channel_together(mode):
    same = np.tile(np.sin(np.linspace(0, 6, 50)), (3, 1))
    for shift in (-7, 0, 4):
        out = augment.time_shift(same, shift, mode)
        assert out.shape == same.shape
        assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
        np.testing.assert_array_equal(out[0], augment.time_shift(same[0], shift, mode))


def test_crop_and_shift_keep_identical_channels_identical():
    same = np.tile(np.sin(np.linspace(0, 6, 60)), (3, 1))
    p = augment.AugmentParams(max_crop=0.3, max_shift=0.3, scale_range=0.0, noise_std=0.0)
    for copy in range(5):
        out = augment.augment_signal(same, augment.signal_rng(0, 0, copy), p)
        assert out.shape[0] == 3 and out.shape[1] <= 60
        assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])


def test_scale_and_noise_are_drawn_per_channel():
    same = np.tile(np.sin(np.linspace(0, 6, 60)) + 2.0, (3, 1))
    p = augment.AugmentParams(max_shift=0.0, scale_range=0.5, noise_std=0.0)
    out = augment.augment_signal(same, np.random.default_rng(3), p)
    factors = out[:, 0] / same[:, 0]
    np.testing.assert_allclose(out, same * factors[:, None])
    assert len(set(np.round(factors, 9))) == 3 and ((factors >= 0.5) & (factors <= 1.5)).all()
    loud = np.stack([np.sin(np.linspace(0, 60, 4000)) * g for g in (1.0, 100.0)])
    noise = augment.add_noise(loud, np.random.default_rng(0), 0.1) - loud
    np.testing.assert_allclose(noise.std(axis=1) / loud.std(axis=1), 0.1, rtol=0.1)


def test_univariate_augmentation_draws_what_it_drew_before_channels():
    """The draws of a 1-D signal, in their order: crop, shift, one factor, the noise."""
    x = np.sin(np.linspace(0, 10, 80))
    p = augment.AugmentParams(max_crop=0.2)
    got = augment.augment_signal(x, augment.signal_rng(0, 1, 2), p)
    rng = augment.signal_rng(0, 1, 2)
    keep = max(2, int(round(80 * rng.uniform(0.8, 1))))
    start = int(rng.integers(0, 80 - keep + 1))
    w = x[start : start + keep]
    k = int(0.1 * keep)
    shift = int(rng.integers(-k, k + 1))
    w = augment.time_shift(w, shift, "pad")
    w = w * float(rng.uniform(0.9, 1.1))
    want = w + rng.normal(0.0, 0.02 * float(w.std()), size=len(w))
    np.testing.assert_array_equal(got, want)


def test_augmented_train_keeps_the_channels_and_their_names(tmp_path, axes):
    out = augment.augment_train(axes, augment.AugmentParams(target_fault_ratio=0.5, max_crop=0.2))
    assert out.attrs["channels"] == AXES
    added = augment.copies_of(out, "m20")
    assert len(added) >= 1 and all(v.shape[0] == 3 for v in added["values"])
    assert (out["length"] == out["values"].map(lambda v: v.shape[1])).all()
    path = augment.write_augmented(out, tmp_path)
    assert split_channels(path) == AXES
    back = read_split(path)
    assert back.attrs["channels"] == AXES and len(back) == len(out)
    for a, b in zip(back["values"], out["values"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert (back["length"] == out["length"]).all()
    first = path.read_bytes()
    augment.write_augmented(
        augment.augment_train(axes, augment.AugmentParams(target_fault_ratio=0.5, max_crop=0.2)),
        tmp_path,
    )
    assert path.read_bytes() == first
    case = augment.augment_train(axes, augment.AugmentParams(rebalance="case_control"))
    assert case.attrs["channels"] == AXES
    unnamed = out.copy()
    unnamed.attrs = {}
    with pytest.raises(DataError, match="no channel names"):
        augment.to_arrow(unnamed)


def test_read_train_reads_a_multichannel_split(prepared):
    df = augment.read_train(prepared / "data/prepared")
    assert df.attrs["channels"] == AXES and df["values"].iloc[0].shape[0] == 3


# --- evaluation --------------------------------------------------------------------------------


def test_the_classical_baseline_uses_every_channels_features():
    train, test = (three_axis_signals(24, 10, seed=s) for s in (1, 2))
    y_train, y_test = ((d.label == "fault").astype(int) for d in (train, test))
    model = ev.classical_baseline("random_forest", 30, feature_length=32, fft_bands=4, seed=0)
    features = model.steps[0][1]
    univariate = features.transform([v[2] for v in train["values"]])
    x = features.transform(list(train["values"]))
    assert x.shape == (len(train), 3 * univariate.shape[1])
    assert x.shape[1] == len(ev.feature_names(4, AXES)) == 3 * len(ev.feature_names(4))
    np.testing.assert_array_equal(x[:, 2 * univariate.shape[1] :], univariate)  # z: the last
    model.fit(list(train["values"]), y_train)
    p = ev.fault_probability(model, test["values"])
    assert ev.fault_metrics(y_test, p, 0.5)["f1"] >= 0.9  # the burst on z


def test_load_split_and_the_models_channels(prepared):
    test = ev.load_split(prepared / "data/prepared", "test")
    assert ev.frame_channels(test) == AXES and test["values"].iloc[0].shape[0] == 3
    ev.check_channels(AXES, {"test": test})
    with pytest.raises(DataError, match=r"<test split>.*\['z', 'y', 'x'\]"):
        ev.check_channels(AXES[::-1], {"test": test})
    with pytest.raises(DataError, match="none \\(univariate\\)"):
        ev.check_channels(None, {"test": test})


def test_the_worst_signals_show_every_channel(axes):
    agg()
    p = np.linspace(0, 1, len(axes))
    fig = ev.plot_worst(axes, ev.sorted_by_loss(axes, p), 3)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert len(ax.get_lines()) == 3
        assert [t.get_text() for t in ax.get_legend().texts] == list(AXES)


# --- the notebooks on a three-axis project -----------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A project copy whose data.source is a three-axis Parquet file (a burst on z in faults),
    prepared: data/prepared holds (3, samples) signals named x, y, z."""
    root = copy_project(tmp_path_factory.mktemp("axes") / "proj")
    write_parquet_columns(three_axis_signals(24, 12, seed=6), root / "data/raw/axes.parquet", AXES)
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["data"].update(source="data/raw/axes.parquet", min_positive=4)
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["faultwatch", "prepare"], root)
    return root


def figures(notebook) -> int:
    import nbformat

    nb = nbformat.read(notebook, 4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_the_eda_notebook_on_three_axes(prepared):
    from faultwatch.notebook import run_notebook

    r = run_notebook("notebooks/01_eda.ipynb", prepared, html=False)
    m = json.loads(r.metrics.read_text())
    assert m["channels"] == list(AXES)
    assert {"n_signals", "fault_ratio", "shortcut", "sensor_quality", "quality"} <= set(m)
    assert m["n_signals"] == 36 and "max[z]" in m["shortcut"]["flagged"]
    assert all(name.endswith("[z]") for name in m["shortcut"]["flagged"])
    assert figures(r.notebook) >= 4  # lengths, examples, envelopes, channel correlation


@pytest.mark.slow
def test_the_augment_notebook_on_three_axes(prepared):
    from faultwatch.notebook import run_notebook

    r = run_notebook("notebooks/02_augment.ipynb", prepared, html=False)
    out = prepared / "data/augmented/train.parquet"
    assert split_channels(out) == AXES
    df = read_split(out)
    assert r.scraps["n_train_after"] == len(df) and r.scraps["fault_ratio_after"] >= 0.3
    assert all(v.shape == (3, n) for v, n in zip(df["values"], df["length"], strict=True))
    assert figures(r.notebook) >= 1


@pytest.mark.slow
def test_the_evaluate_notebook_on_three_axes(prepared):
    import torch

    from faultwatch.model.io import save_model
    from faultwatch.model.network import FaultCNN
    from faultwatch.notebook import run_notebook

    torch.manual_seed(0)
    save_model(
        prepared / "models/fault_cnn",
        FaultCNN(channels=(4, 8), in_channels=3),
        {"input_length": 64, "positive_label": "fault", "channels": list(AXES)},
    )
    overrides = {"baseline_n_estimators": 25, "baseline_feature_length": 32, "worst_n": 3}
    r = run_notebook("notebooks/04_evaluate.ipynb", prepared, overrides=overrides, html=False)
    scores = json.loads((prepared / "reports/evaluate/scores.json").read_text())
    assert scores["baseline_classical"]["f1"] >= 0.8  # every channel's features: z's burst
    worst = pd.read_csv(prepared / "reports/evaluate/worst_test.csv")
    assert len(worst) == scores["test"]["n"]
    assert figures(r.notebook) >= 2
