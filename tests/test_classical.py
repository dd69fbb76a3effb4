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


# ------------------------------------------------------------ the train stage's family choice
def prepared(df, prefix: str):
    """A frame of id/label/values in the prepare stage's split schema (fault: y 1)."""
    return df.assign(
        id=[f"{prefix}:{i}" for i in df["id"]],
        y=(df["label"] == "fault").astype(int),
        length=[len(v) for v in df["values"]],
        source_row=range(len(df)),
    )[["id", "label", "y", "length", "source_row", "values"]]


def family_params(root, family: str):
    from faultwatch.model.params import TrainParams

    return TrainParams(
        family=family,
        classical={"n_estimators": 20, "feature_length": 32, "fft_bands": 4},
        train_path="data/prepared/train.parquet",
        model_dir=f"models/{family}",
        report_dir=f"reports/{family}",
        checkpoint_root=str(root / "checkpoints"),
        length=64, channels=[4, 8], kernel_size=5, batch_size=16, max_epochs=3, patience=3,
        lr=0.01, accelerator="cpu", wandb=False,
    )  # fmt: skip


def write_prepared(root, make) -> None:
    from faultwatch.augment import to_arrow
    from faultwatch.data.prepare import write_parquet_atomic

    splits = {"train": make(40, 12, 1), "val": make(24, 8, 2), "test": make(24, 8, 3)}
    tables = {n: to_arrow(prepared(df, n)) for n, df in splits.items()}
    write_parquet_atomic(tables, root / "data" / "prepared")


def test_best_keeps_the_cnn_where_it_wins_and_nothing_changes(tmp_path):
    """Sawtooths whose fault runs backwards: the CNN reads the shape, the forest's features
    cannot. `best` keeps the CNN, and its model folder is byte for byte what `cnn` writes."""
    from helpers.signals import sawtooth_signals

    from faultwatch.train.family import FAMILY_FILE, train_family, write_family_record

    write_prepared(tmp_path, lambda h, f, s: sawtooth_signals(h, f, seed=s))
    runs = {}
    for family in ("cnn", "best"):
        runs[family] = train_family(family_params(tmp_path, family), tmp_path)
        write_family_record(runs[family], tmp_path / "reports" / family)
    best = runs["best"].decision
    print(best)
    assert best["family"] == "cnn" and best["requested"] == "best"
    v = best["validation"]
    assert v["cnn"]["pr_auc"] > v["classical"]["pr_auc"], v
    assert best["reason"].startswith("cnn: validation pr_auc")
    for f in ("weights.safetensors", "model.json"):
        assert (tmp_path / "models/best" / f).read_bytes() == (
            tmp_path / "models/cnn" / f
        ).read_bytes()
    assert "family" not in json.loads((tmp_path / "models/best/model.json").read_text())
    assert set(best["train_seconds"]) == {"cnn", "classical"}
    on_disk = json.loads((tmp_path / "reports/best" / FAMILY_FILE).read_text())
    assert on_disk == best
    assert runs["cnn"].decision["validation"] == {}  # cnn asked for: nothing compared


def test_best_keeps_the_forest_where_it_wins_and_classical_alone_skips_the_cnn(tmp_path):
    """Faults that are the healthy signal 2.5 times as large: z-scored, the CNN cannot tell
    them apart; the forest's amplitude features can. `best` keeps the forest, and says so."""
    from helpers.signals import amplitude_signals

    from faultwatch.train.family import train_family, write_family_record

    write_prepared(tmp_path, lambda h, f, s: amplitude_signals(h, f, seed=s))
    run = train_family(family_params(tmp_path, "best"), tmp_path)
    d = run.decision
    print(d)
    assert d["family"] == "classical", d
    assert d["validation"]["classical"]["pr_auc"] > d["validation"]["cnn"]["pr_auc"]
    assert d["reason"].startswith("classical: validation pr_auc")
    model = load_model(tmp_path / "models/best")
    assert model.family == "classical" and model.meta["positive_label"] == "fault"
    alone = train_family(family_params(tmp_path, "classical"), tmp_path)
    assert alone.cnn is None and alone.decision["train_seconds"].keys() == {"classical"}
    written = write_family_record(alone, tmp_path / "reports/classical")
    assert sorted(p.name for p in written) == ["family.json", "history.csv", "run.json"]
    for f in ("weights.safetensors", "model.json"):  # the same forest, deterministic
        assert (tmp_path / "models/best" / f).read_bytes() == (
            tmp_path / "models/classical" / f
        ).read_bytes()
