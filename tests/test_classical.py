"""The classical model family's saved form (faultwatch.model.classical): the evaluate stage's
random forest, saved as arrays (no pickle), loaded by load_model with its sha256 checked, and
scoring exactly as scikit-learn does."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.signals import make_signals, three_axis_signals

from faultwatch.evaluate.baselines import classical_baseline, fault_probability
from faultwatch.model import classical
from faultwatch.model.io import ModelError, WeightsTampered, load_model

ARGS = {"n_estimators": 25, "feature_length": 64, "fft_bands": 4, "seed": 3}


def labels(df) -> np.ndarray:
    return (df["label"] == "fault").to_numpy().astype(int)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    train, test = make_signals(40, 12, seed=1), make_signals(30, 10, seed=2)
    fitted = classical.fit_classical(list(train["values"]), labels(train), **ARGS)
    folder = tmp_path_factory.mktemp("classical") / "model"
    classical.save_classical(folder, fitted, {"positive_label": "fault", "threshold": 0.4})
    return folder, fitted, train, test


def test_the_saved_forest_scores_as_the_evaluate_stages_baseline_bit_for_bit(saved):
    folder, fitted, train, test = saved
    baseline = classical_baseline(
        "random_forest", ARGS["n_estimators"], ARGS["feature_length"], ARGS["fft_bands"],
        ARGS["seed"],
    )  # fmt: skip
    baseline.fit(list(train["values"]), labels(train))
    expected = fault_probability(baseline, test["values"])
    model = load_model(folder)
    assert model.family == "classical" and model.network is None
    got = model.predict_proba(list(test["values"]))
    assert got.dtype == np.float64 and np.array_equal(got, expected), np.abs(got - expected).max()
    assert 0 <= expected.min() < expected.max() <= 1  # both classes scored, not a constant
    # features in, the same figures
    assert np.array_equal(model.predict_proba(model.preprocess(test["values"]), True), got)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["family"] == "classical" and meta["threshold"] == 0.4
    assert meta["class_names"] == ["healthy", "fault"] and len(meta["feature_names"]) == 21


def test_a_multichannel_forest_reads_every_channels_features(tmp_path):
    df = three_axis_signals(20, 8, seed=4)
    y = (df["label"] == "fault").to_numpy().astype(int)
    fitted = classical.fit_classical(list(df["values"]), y, **ARGS)
    classical.save_classical(
        tmp_path, fitted, {"positive_label": "fault", "channels": ["x", "y", "z"]}
    )
    model = load_model(tmp_path)
    assert model.channels == ("x", "y", "z") and model.input_shape == (63,)
    baseline = classical_baseline("random_forest", 25, 64, 4, 3).fit(list(df["values"]), y)
    expected = fault_probability(baseline, df["values"])
    assert np.array_equal(model.predict_proba(list(df["values"])), expected)
    with pytest.raises(ValueError, match=r"expected shape \(3, samples\)"):
        model.predict_proba([np.ones(50)])


def test_changed_weights_or_a_bad_description_are_refused_naming_the_file(saved, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(saved[0], folder)
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsTampered, match="weights.safetensors: sha256 .* does not match"):
        load_model(folder)
    shutil.copy(saved[0] / "weights.safetensors", weights)
    meta = json.loads((folder / "model.json").read_text())
    meta["feature_names"] = meta["feature_names"][:-1]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="model.json: feature_names are not the ones"):
        load_model(folder)
    # arrays that point outside the forest, re-hashed: refused before a walk reads them
    from safetensors.numpy import load, save

    arrays = load((saved[0] / "weights.safetensors").read_bytes())
    arrays["left"] = arrays["left"].copy()
    arrays["left"][0] = len(arrays["left"]) + 5
    data = save(arrays)
    weights.write_bytes(data)
    meta = json.loads((saved[0] / "model.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="left points outside the"):
        load_model(folder)
