"""A fault that lives only in the relation between two axes (y leads x when healthy, lags it in
a fault) is learnt by the multichannel model and missed by models fed the same signals one
channel at a time or as the channels' mean: the reason channels are read together at all.

Real prepare and train on tiny data (phase_relation_signals: 135 signals of 3 x 128); the
single-channel projects select their channel with `data.channels`, the mean project is a
univariate file of the same signals in the same order, so every model sees the same split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.datafiles import write_parquet, write_parquet_nested
from helpers.signals import phase_relation_signals
from sklearn.metrics import average_precision_score, f1_score

from faultwatch.data.params import DataParams, SplitParams
from faultwatch.data.prepare import prepare
from faultwatch.model.io import load_model
from faultwatch.model.params import TrainParams
from faultwatch.splits import read_split
from faultwatch.train import train

pytestmark = pytest.mark.timeout(600)

SPLIT = SplitParams(seed=3, val_fraction=0.25, test_fraction=0.25)
TRAIN = {
    "train_path": "data/prepared/train.parquet",
    "length": 128,
    "channels": [16, 32],
    "kernel_size": 7,
    "batch_size": 16,
    "max_epochs": 15,
    "wandb": False,
    "accelerator": "cpu",
    "model_dir": "models/m",
}


def fit_and_score(root: Path, source: Path, channels: list[str] | None = None) -> dict:
    """prepare -> train -> the test split's AP and F1 (threshold 0.5) of the kept model."""
    root.mkdir()
    (root / "params.yaml").write_text("{}\n")
    data = DataParams(
        source=str(source),
        positive_label="fault",
        min_positive=4,
        min_length=16,
        production_dir=None,
        channels=channels,
    )
    prepare(data, SPLIT, root)
    train(TrainParams(**TRAIN), root)
    model = load_model(root / "models/m")
    test = read_split(root / "data/prepared/test.parquet")
    p = model.predict_proba(list(test["values"]))
    y = test["y"].to_numpy()
    return {
        "ids": list(test["id"]),
        "channels": model.channels,
        "ap": average_precision_score(y, p),
        "f1": f1_score(y, p >= 0.5, zero_division=0),
    }


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("phase")
    df = phase_relation_signals(90, 45, seed=1)
    multi = write_parquet_nested(df, tmp / "three_axis.parquet")
    mean = df.assign(values=df["values"].map(lambda v: v.mean(axis=0)))
    single = write_parquet(mean, tmp / "mean.parquet")
    out = {"xyz": fit_and_score(tmp / "xyz", multi)}
    for name in ("dim_0", "dim_1", "dim_2"):
        out[name] = fit_and_score(tmp / name, multi, channels=[name])
    out["mean"] = fit_and_score(tmp / "mean", single)
    return out


def test_every_model_is_scored_on_the_same_test_signals(scores):
    ids = {name: tuple(s["ids"]) for name, s in scores.items()}
    assert len(set(ids.values())) == 1, ids
    assert scores["xyz"]["channels"] == ("dim_0", "dim_1", "dim_2")
    assert scores["dim_1"]["channels"] == ("dim_1",)
    assert scores["mean"]["channels"] is None


def test_the_multichannel_model_learns_the_phase_relation(scores):
    assert scores["xyz"]["ap"] >= 0.95, scores["xyz"]
    assert scores["xyz"]["f1"] >= 0.9, scores["xyz"]


@pytest.mark.parametrize("name", ["dim_0", "dim_1", "dim_2", "mean"])
def test_one_channel_at_a_time_or_the_mean_misses_it(scores, name):
    # chance: the test split's fault share (1/3); a model that learnt nothing ranks at random
    got = scores[name]
    assert got["ap"] <= 0.65, got
    assert got["ap"] < scores["xyz"]["ap"] - 0.3
    assert got["f1"] <= 0.65, got


def test_chance_level_is_what_the_single_channel_models_reach(scores):
    aps = np.array([scores[n]["ap"] for n in ("dim_0", "dim_1", "dim_2", "mean")])
    assert aps.mean() < 0.6, aps
