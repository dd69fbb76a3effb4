"""Multichannel signals in the data stage: every format read into (channels, samples) arrays with
the channel names, `data.channels` selecting and ordering them, a named error for each bad
case (file, row, channel, rule), and the prepared splits' round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.datafiles import (
    write_long_channels,
    write_parquet_columns,
    write_parquet_nested,
    write_ts,
    write_ts_channels,
)
from helpers.signals import AXES, make_signals, three_axis_signals

from faultwatch.data.channels import CHANNELS_KEY
from faultwatch.data.params import DataParams, SplitParams
from faultwatch.data.prepare import SCHEMA, load_splits, prepare, read_split, to_table
from faultwatch.data.readers import read_source
from faultwatch.data.validate import validate_signals
from faultwatch.errors import DataError

SPLIT = SplitParams(seed=3, val_fraction=0.25, test_fraction=0.25)
DIMS = ("dim_0", "dim_1", "dim_2")


def params(source: str, **kw) -> DataParams:
    return DataParams(
        **{
            "source": source,
            "positive_label": "fault",
            "min_positive": 4,
            "min_length": 16,
            "production_dir": None,
            **kw,
        }
    )


@pytest.fixture
def axes() -> pd.DataFrame:
    return three_axis_signals()


def write(kind: str, df: pd.DataFrame, folder) -> tuple[str, tuple[str, ...]]:
    """`df` written in one of the multichannel layouts: (file name, the names it reads as)."""
    if kind == "ts":
        return write_ts_channels(df, folder / "a.ts").name, DIMS
    if kind == "long":
        return write_long_channels(df, folder / "a.csv", AXES).name, AXES
    if kind == "long_untimed":
        return write_long_channels(df, folder / "a.csv", AXES, with_time=False).name, AXES
    if kind == "nested":
        return write_parquet_nested(df, folder / "a.parquet").name, DIMS
    if kind == "nested_other_name":
        return write_parquet_nested(df, folder / "a.parquet", "signal").name, DIMS
    assert kind == "columns"
    return write_parquet_columns(df, folder / "a.parquet", AXES).name, AXES


def error(tmp_path, name: str, text: str, **kw) -> DataError:
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError) as e:
        load_splits(params(name, **kw), SPLIT, tmp_path)
    return e.value


# --- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["ts", "long", "long_untimed", "nested", "nested_other_name", "columns"]
)
def test_every_layout_reads_channels_by_samples_arrays_and_the_names(tmp_path, axes, kind):
    name, names = write(kind, axes, tmp_path)
    df = read_source(name, tmp_path)
    assert list(df.columns) == ["id", "label", "values"]
    assert df.attrs["channels"] == names
    assert df["label"].tolist() == axes["label"].tolist()
    for got, want in zip(df["values"], axes["values"], strict=True):
        assert got.dtype == np.float64 and got.shape == want.shape  # (3, samples), lengths vary
        np.testing.assert_allclose(got, want)
    validate_signals(df, params(name))


def test_a_ts_file_with_equal_lengths_and_no_dimensions_line(tmp_path):
    rows = ["1,2,3,4:5,6,7,8:fault", "4,3,2,1:8,7,6,5:ok"]
    (tmp_path / "two.ts").write_text("@classLabel true fault ok\n@data\n" + "\n".join(rows))
    df = read_source("two.ts", tmp_path)
    assert df.attrs["channels"] == ("dim_0", "dim_1") and df.index.tolist() == [3, 4]
    np.testing.assert_array_equal(df["values"].iloc[1], [[4, 3, 2, 1], [8, 7, 6, 5]])


def test_long_layout_orders_each_channel_by_time_and_names_channels_first_seen(tmp_path):
    text = "id,label,sensor,value,time\n" + "\n".join(
        ["a,f,current,1,1", "a,f,vib,10,0", "a,f,current,0,0", "a,f,vib,11,1"]
    )
    (tmp_path / "l.csv").write_text(text + "\n")
    df = read_source("l.csv", tmp_path)
    assert df.attrs["channels"] == ("current", "vib")
    np.testing.assert_array_equal(df["values"].iloc[0], [[0, 1], [10, 11]])


def test_univariate_sources_have_one_dimensional_values_and_no_channels(tmp_path):
    df = read_source(write_ts(make_signals(), tmp_path / "u.ts").name, tmp_path)
    assert "channels" not in df.attrs and all(np.ndim(v) == 1 for v in df["values"])


# --- data.channels -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["long", "columns"])
def test_data_channels_selects_and_orders_the_channels(tmp_path, axes, kind):
    name, _ = write(kind, axes, tmp_path)
    tables, _ = load_splits(params(name, channels=["z", "x"]), SPLIT, tmp_path)
    meta = tables["train"].schema.metadata
    assert json.loads(meta[CHANNELS_KEY]) == ["z", "x"]
    by_id = axes.set_index("id")["values"]
    for row in tables["train"].to_pylist():
        want = by_id[row["id"]]
        np.testing.assert_allclose(row["values"], want[[2, 0]])
        assert row["length"] == want.shape[1]


def test_data_channels_naming_an_unknown_channel(tmp_path, axes):
    name, _ = write("columns", axes, tmp_path)
    with pytest.raises(DataError) as e:
        load_splits(params(name, channels=["x", "w"]), SPLIT, tmp_path)
    assert e.value.rule == "channels_known" and e.value.file == "a.parquet"
    assert "data.channels names 'w', no channel of the file; its channels: 'x', 'y', 'z'" in str(
        e.value
    )


def test_data_channels_on_a_univariate_file(tmp_path):
    write_ts(make_signals(), tmp_path / "u.ts")
    with pytest.raises(DataError) as e:
        load_splits(params("u.ts", channels=["x"]), SPLIT, tmp_path)
    assert e.value.rule == "channels_known" and e.value.file == "u.ts"
    assert "data.channels is ['x'] but the file holds univariate signals" in str(e.value)


# --- bad files ---------------------------------------------------------------------------------


def test_a_ts_row_with_fewer_dimensions_than_the_header_says(tmp_path):
    body = ["1,2:3,4:5,6:fault", "1,2:3,4:ok", "1,2:3,4:5,6:ok"]
    text = "@univariate false\n@dimensions 3\n@classLabel true fault ok\n@data\n"
    err = error(tmp_path, "m.ts", text + "\n".join(body) + "\n")
    assert err.rule == "channels_match" and err.rows == [6] and err.file == "m.ts"
    assert (
        "channels found: 2 channel(s); every signal must have the channels 'dim_0', 'dim_1', "
        "'dim_2' (from @dimensions 3): 2 where 3 are expected"
    ) in str(err)


def test_a_long_csv_signal_without_one_channel(tmp_path, axes):
    write_long_channels(axes, tmp_path / "a.csv", AXES)
    lines = (tmp_path / "a.csv").read_text().splitlines()
    # signal m1 loses its z channel: its first line is the first line naming m1
    kept = [ln for ln in lines if not ln.startswith("m1,ok,z,")]
    first = next(n for n, ln in enumerate(kept, start=1) if ln.startswith("m1,"))
    err = error(tmp_path, "a.csv", "\n".join(kept) + "\n")
    assert err.rule == "channels_match" and err.rows == [first], err
    assert "signal 'm1': channels found: 'x', 'y'; every signal must have the channels " in str(err)
    assert "'x', 'y', 'z' (from the whole file): missing 'z'" in str(err)


def test_parquet_rows_with_another_channel_count(tmp_path, axes):
    df = axes.copy()
    df.at[2, "values"] = df.at[2, "values"][:2]
    write_parquet_nested(df, tmp_path / "n.parquet")
    with pytest.raises(DataError) as e:
        read_source("n.parquet", tmp_path)
    assert e.value.rule == "channels_match" and e.value.rows == [2]
    assert "2 channel(s)" in str(e.value) and "'dim_0', 'dim_1', 'dim_2' (from row 0" in str(
        e.value
    )


@pytest.mark.parametrize("kind", ["ts", "columns", "long_untimed"])
def test_channels_of_unequal_length_within_a_signal(tmp_path, axes, kind):
    df = axes.copy()
    v = df.at[5, "values"]
    df.at[5, "values"] = [v[0], v[1], v[2][:-3]]  # z lost its last 3 samples
    n = v.shape[1]
    if kind == "ts":
        name, row = write_ts_channels(df, tmp_path / "u.ts").name, 7 + 5 + 1
    elif kind == "columns":
        name, row = write_parquet_columns(df, tmp_path / "u.parquet", AXES).name, 5
    else:
        df.at[5, "values"] = np.stack([v[0], v[1], np.r_[v[2][:-3], [np.nan] * 3]])
        path = write_long_channels(df, tmp_path / "u.csv", AXES, with_time=False)
        lines = path.read_text().splitlines()
        kept = [ln for ln in lines if not (ln.startswith("m5,ok,z,") and ln.endswith("nan"))]
        path.write_text("\n".join(kept) + "\n")
        name = path.name
        row = next(i for i, ln in enumerate(kept, start=1) if ln.startswith("m5,"))
    with pytest.raises(DataError) as e:
        read_source(name, tmp_path)
    names = DIMS if kind == "ts" else AXES
    assert e.value.rule == "channels_equal_length" and e.value.rows == [row], e.value
    assert e.value.file == name
    assert f"({names[0]}={n}, {names[1]}={n}, {names[2]}={n - 3})" in str(e.value)


def test_long_channels_sampled_at_other_times(tmp_path):
    text = "id,label,channel,value,time\n" + "\n".join(
        ["a,f,x,1,0", "a,f,x,2,1", "a,f,y,3,0", "a,f,y,4,2"]
    )
    (tmp_path / "t.csv").write_text(text + "\n")
    with pytest.raises(DataError) as e:
        read_source("t.csv", tmp_path)
    assert e.value.rule == "channels_same_times" and e.value.rows == [4]
    assert "channel 'y' is sampled at other times than channel 'x'" in str(e.value)


@pytest.mark.parametrize("kind", ["ts", "columns"])
def test_a_nan_in_one_channel_names_the_channel(tmp_path, axes, kind):
    df = axes.copy()
    df.at[4, "values"] = df.at[4, "values"].copy()
    df.at[4, "values"][1, 10] = np.nan
    name, names = write(kind, df, tmp_path)
    with pytest.raises(DataError) as e:
        load_splits(params(name), SPLIT, tmp_path)
    row = 7 + 4 + 1 if kind == "ts" else 4
    assert e.value.rule == "values_finite" and e.value.rows == [row] and e.value.file == name
    assert f"channel '{names[1]}': values must be finite numbers: 1 signal(s) hold NaN" in str(
        e.value
    )


def test_a_too_short_signal_names_its_channels_and_row(tmp_path, axes):
    df = axes.copy()
    df.at[3, "values"] = df.at[3, "values"][:, :8]
    name, _ = write("columns", df, tmp_path)
    with pytest.raises(DataError) as e:
        load_splits(params(name), SPLIT, tmp_path)
    assert e.value.rule == "length_within_bounds" and e.value.rows == [3]
    assert "channels 'x', 'y', 'z': signal length must be in [16, 100000]; found [8]" in str(
        e.value
    )


def test_crop_length_longer_than_a_signal_names_the_channels(tmp_path, axes):
    name, _ = write("long", axes, tmp_path)
    shortest = min(v.shape[1] for v in axes["values"])
    with pytest.raises(DataError) as e:
        load_splits(params(name, crop_length=shortest + 1), SPLIT, tmp_path)
    assert e.value.rule == "length_at_least_crop_length"
    assert f"channels 'x', 'y', 'z': data.crop_length={shortest + 1}" in str(e.value)


# --- gaps and crop -----------------------------------------------------------------------------


def test_interpolate_fills_each_channel_and_trims_all_channels_alike(tmp_path, axes):
    df = axes.copy()
    v = df.at[0, "values"].copy()
    v[0, 5] = np.nan  # an inner gap on x: filled
    v[2, :2] = np.nan  # z starts late: the first 2 samples go, from every channel
    df.at[0, "values"] = v
    name, _ = write("columns", df, tmp_path)
    tables, summary = load_splits(params(name, missing="interpolate"), SPLIT, tmp_path)
    got = next(
        np.array(r["values"]) for t in tables.values() for r in t.to_pylist() if r["id"] == "m0"
    )
    assert got.shape == (3, v.shape[1] - 2)
    np.testing.assert_allclose(got[0, 3], (v[0, 4] + v[0, 6]) / 2)
    np.testing.assert_allclose(got[1:], v[1:, 2:])
    assert summary["missing"] == {
        "signals_interpolated": 1,
        "samples_filled": 1,
        "samples_trimmed": 6,
        "signals_dropped": 0,
    }


def test_drop_removes_a_signal_with_a_gap_in_any_channel(tmp_path, axes):
    df = axes.copy()
    df.at[1, "values"] = df.at[1, "values"].copy()
    df.at[1, "values"][2, 7] = np.nan
    name, _ = write("nested", df, tmp_path)
    tables, summary = load_splits(params(name, missing="drop"), SPLIT, tmp_path)
    assert summary["missing"]["signals_dropped"] == 1
    assert "m1" not in {i for t in tables.values() for i in t.column("id").to_pylist()}


def test_crop_length_crops_every_channel(tmp_path, axes):
    name, _ = write("ts", axes, tmp_path)
    tables, _ = load_splits(params(name, crop_length=32), SPLIT, tmp_path)
    for t in tables.values():
        assert set(t.column("length").to_pylist()) == {32}
        assert all(np.shape(v) == (3, 32) for v in t.column("values").to_pylist())


# --- the prepared splits -----------------------------------------------------------------------


def test_prepared_splits_round_trip(tmp_path, axes):
    name, _ = write("columns", axes, tmp_path)
    prepare(params(name), SPLIT, tmp_path)
    by_id = axes.set_index("id")["values"]
    seen = 0
    for split in ("train", "val", "test"):
        path = tmp_path / "data" / "prepared" / f"{split}.parquet"
        schema = pq.read_schema(path)
        assert schema.field("values").type == pa.list_(pa.list_(pa.float64()))
        assert json.loads(schema.metadata[CHANNELS_KEY]) == list(AXES)
        df = read_split(path)
        assert df.attrs["channels"] == AXES
        for ident, values, length in zip(df["id"], df["values"], df["length"], strict=True):
            assert values.dtype == np.float64 and values.shape == (3, length)
            np.testing.assert_array_equal(values, by_id[ident])
            seen += 1
        assert "channels" in read_split(path, columns=["id", "y"]).attrs
        # a split is a source too: its channel names come from the schema metadata
        again = read_source(str(path.relative_to(tmp_path)), tmp_path)
        assert again.attrs["channels"] == AXES
    assert seen == len(axes)


def test_univariate_splits_keep_the_schema_and_read_as_before(tmp_path):
    path = write_ts(make_signals(), tmp_path / "u.ts")
    prepare(params(path.name, positive_label="fault"), SPLIT, tmp_path)
    train = tmp_path / "data" / "prepared" / "train.parquet"
    assert pq.read_schema(train).remove_metadata() == SCHEMA
    assert CHANNELS_KEY not in (pq.read_schema(train).metadata or {})
    got, want = read_split(train), pd.read_parquet(train)
    pd.testing.assert_frame_equal(got, want)
    assert "channels" not in got.attrs


def test_to_table_without_channels_is_the_univariate_schema():
    df = make_signals().set_index(pd.RangeIndex(52))
    y = pd.Series(0, index=df.index, dtype="int8")
    assert to_table(df, y).schema == SCHEMA


def test_production_batches_must_have_the_sources_channels(tmp_path, axes):
    name, _ = write("columns", axes, tmp_path)
    batch = axes.head(4).assign(id=lambda d: "b" + d["id"])
    two = write_parquet_columns(batch, tmp_path / "batch.parquet", ("x", "y", "w"))
    with pytest.raises(DataError) as e:
        load_splits(params(name), SPLIT, tmp_path, extra=[two])
    assert e.value.rule == "channels_match" and e.value.file == "batch.parquet"
    assert e.value.rows == [0, 1, 2, 3]
    assert "missing 'z'; unexpected 'w'" in str(e.value)
    # a batch with the channels in another order is put in the source's order
    write_parquet_columns(
        batch.assign(values=batch["values"].map(lambda v: v[::-1])),
        tmp_path / "rev.parquet",
        AXES[::-1],
    )
    tables, summary = load_splits(params(name), SPLIT, tmp_path, extra=[tmp_path / "rev.parquet"])
    assert summary["production"]["n_signals"] == 4
    added = {r["id"]: r["values"] for r in tables["train"].to_pylist() if "/" in r["id"]}
    np.testing.assert_array_equal(added["rev/bm0"], axes.at[0, "values"])


# --- a real multivariate set inside the sktime wheel ------------------------------------------


def test_bundled_basicmotions_is_read_with_its_six_channels():
    from faultwatch.data.readers import read_source

    df = read_source("bundled:BasicMotions")
    assert df.attrs["channels"] == tuple(f"dim_{k}" for k in range(6))
    assert len(df) == 80 and {np.shape(v) for v in df["values"]} == {(6, 100)}
    assert df["label"].value_counts().to_dict() == {
        "Standing": 20,
        "Running": 20,
        "Walking": 20,
        "Badminton": 20,
    }
    assert df["id"].iloc[0].startswith("BasicMotions_TRAIN") and df.index.is_unique


def test_an_unknown_bundled_set_lists_the_known_ones():
    from faultwatch.data.readers import read_source

    with pytest.raises(DataError) as e:
        read_source("bundled:BasicMotion")
    msg = str(e.value)
    assert "bundled:BasicMotion: rule 'bundled_available' failed" in msg
    assert "bundled:BasicMotions" in msg and "bundled:PLAID" in msg
