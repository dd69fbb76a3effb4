"""The augment stage: pure augmentations, rebalancing, the written file, the notebook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers.signals import FAULT_LABEL, make_split

from faultwatch.augment import (
    COLUMNS,
    AugmentParams,
    add_noise,
    augment_signal,
    augment_train,
    case_control,
    class_counts,
    copies_of,
    n_copies_for_ratio,
    random_crop,
    read_train,
    scale_amplitude,
    time_shift,
    write_augmented,
)
from faultwatch.errors import DataError, ParamsError
from faultwatch.params import section


@pytest.fixture
def train_df() -> pd.DataFrame:
    return make_split(40, 6, seed=0, prefix="train")


@pytest.mark.parametrize("shift", [-3, 0, 2, 7])
@pytest.mark.parametrize("mode", ["pad", "roll"])
def test_time_shift_keeps_length(shift, mode):
    x = np.arange(10.0)
    out = time_shift(x, shift, mode)
    assert out.shape == x.shape
    if mode == "roll":
        np.testing.assert_array_equal(out, np.roll(x, shift))


def test_time_shift_pad_repeats_the_edge():
    x = np.arange(1.0, 6.0)
    np.testing.assert_array_equal(time_shift(x, 2, "pad"), [1, 1, 1, 2, 3])
    np.testing.assert_array_equal(time_shift(x, -2, "pad"), [3, 4, 5, 5, 5])
    np.testing.assert_array_equal(time_shift(x, 99, "pad"), [1, 1, 1, 1, 1])


def test_random_crop_keeps_a_contiguous_window():
    x = np.arange(100.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = random_crop(x, rng, 0.3)
        assert 70 <= len(out) <= 100
        np.testing.assert_array_equal(out, np.arange(out[0], out[0] + len(out)))
    np.testing.assert_array_equal(random_crop(x, rng, 0.0), x)


def test_scale_and_noise():
    x = np.sin(np.linspace(0, 10, 500))
    np.testing.assert_allclose(scale_amplitude(x, 2.0), 2 * x)
    noisy = add_noise(x, np.random.default_rng(0), 0.1)
    assert noisy.shape == x.shape
    assert 0.05 < np.std(noisy - x) / np.std(x) < 0.15
    np.testing.assert_array_equal(add_noise(x, np.random.default_rng(0), 0.0), x)


def test_augment_signal_is_seeded():
    x = np.sin(np.linspace(0, 10, 80))
    p = AugmentParams()
    a = augment_signal(x, np.random.default_rng(1), p)
    b = augment_signal(x, np.random.default_rng(1), p)
    c = augment_signal(x, np.random.default_rng(2), p)
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("healthy", "fault", "ratio", "extra"), [(34, 6, 0.3, 9), (10, 10, 0.3, 0), (90, 1, 0.5, 89)]
)
def test_n_copies_for_ratio(healthy, fault, ratio, extra):
    assert n_copies_for_ratio(healthy, fault, ratio) == extra
    assert (fault + extra) / (healthy + fault + extra) >= ratio - 1e-9


def test_oversample_reaches_the_ratio_and_keeps_labels(train_df):
    p = AugmentParams(rebalance="oversample", target_fault_ratio=0.4, seed=3)
    out = augment_train(train_df, p)
    assert list(out.columns) == COLUMNS
    pd.testing.assert_frame_equal(out.iloc[: len(train_df)], train_df[COLUMNS])
    added = out.iloc[len(train_df) :]
    assert (added["y"] == 1).all() and (added["label"] == FAULT_LABEL).all()
    assert added["id"].str.contains("#aug").all() and out["id"].is_unique
    assert (added["length"] == added["values"].map(len)).all()
    counts = class_counts(train_df, out)
    assert counts["fault_ratio_after"] >= 0.4
    assert counts["n_train_before"] == 40 and counts["n_fault_before"] == 6
    # a copy keeps its original's length and provenance
    src = train_df[train_df.y == 1].iloc[0]
    copies = copies_of(out, src["id"])
    assert len(copies) >= 1
    assert (copies["length"] == src["length"]).all() and (
        copies["source_row"] == src["source_row"]
    ).all()


def test_cropped_copies_record_their_length(train_df):
    out = augment_train(train_df, AugmentParams(max_crop=0.4))
    added = out[out["id"].str.contains("#aug")]
    assert (added["length"] == added["values"].map(len)).all()
    assert (
        added["length"]
        < train_df.set_index("id").loc[added["id"].str.split("#").str[0], "length"].to_numpy()
    ).any()


def test_augment_is_deterministic_for_a_seed(train_df):
    p = AugmentParams(seed=7)
    a, b = augment_train(train_df, p), augment_train(train_df, p)
    pd.testing.assert_frame_equal(a, b)
    c = augment_train(train_df, p.model_copy(update={"seed": 8}))
    assert not all(np.array_equal(x, y) for x, y in zip(a["values"], c["values"], strict=True))


def test_case_control_keeps_cases_and_k_controls(train_df):
    out = case_control(train_df, controls_per_case=2, seed=0)
    assert out["y"].sum() == 6 and (out["y"] == 0).sum() == 12
    assert set(train_df.loc[train_df.y == 1, "id"]) <= set(out["id"])
    assert set(out["id"]) <= set(train_df["id"])  # nothing invented
    order = train_df.reset_index().set_index("id").loc[out["id"], "index"]
    assert order.is_monotonic_increasing
    again = augment_train(train_df, AugmentParams(rebalance="case_control", controls_per_case=2))
    pd.testing.assert_frame_equal(out, again)


def test_case_control_with_few_controls_keeps_them_all(train_df):
    out = case_control(train_df, controls_per_case=100, seed=0)
    assert len(out) == len(train_df)


def test_none_returns_the_split(train_df):
    pd.testing.assert_frame_equal(
        augment_train(train_df, AugmentParams(rebalance="none")), train_df[COLUMNS]
    )


def test_no_fault_is_an_error(train_df):
    healthy = train_df[train_df.y == 0]
    with pytest.raises(DataError, match="fault_present"):
        augment_train(healthy, AugmentParams())
    with pytest.raises(DataError, match="fault_present"):
        augment_train(healthy, AugmentParams(rebalance="case_control"))


def test_params_name_the_bad_key():
    with pytest.raises(ParamsError, match=r"augment\.target_fault_ratio"):
        section("augment", {"augment": {"target_fault_ratio": 1.5}})
    with pytest.raises(ParamsError, match=r"augment\.typo"):
        section("augment", {"augment": {"typo": 1}})


def test_written_file_has_the_split_schema_and_same_bytes(tmp_path, train_df):
    import pyarrow.parquet as pq

    from faultwatch.data.prepare import SCHEMA

    out = augment_train(train_df, AugmentParams())
    path = write_augmented(out, tmp_path / "a")
    first = path.read_bytes()
    write_augmented(augment_train(train_df, AugmentParams()), tmp_path / "a")
    assert path.read_bytes() == first
    assert pq.read_schema(path).equals(SCHEMA)
    back = pd.read_parquet(path)
    assert list(back.columns) == COLUMNS and len(back) == len(out)
    np.testing.assert_array_equal(back["values"].iloc[-1], out["values"].iloc[-1])


def test_read_train_names_the_missing_file(tmp_path):
    with pytest.raises(DataError, match="train.parquet"):
        read_train(tmp_path)
