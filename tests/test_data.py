"""Readers, schema rules, the stratified split: every bad input gets its own clear error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.datafiles import write_parquet, write_ts, write_tsv
from helpers.paths import REPO

from faultwatch.data.params import DataParams, SplitParams
from faultwatch.data.prepare import fault_target, prepare
from faultwatch.data.readers import read_source
from faultwatch.data.split import split_stratified
from faultwatch.data.validate import validate_signals
from faultwatch.errors import DataError, ParamsError
from faultwatch.params import section

P = DataParams(source="x", positive_label="fault", min_positive=5, min_length=16, max_length=1000)


@pytest.mark.parametrize(
    "writer,suffix", [(write_tsv, ".tsv"), (write_ts, ".ts"), (write_parquet, ".parquet")]
)
def test_every_format_reads_the_same_signals(tmp_path, signals, writer, suffix):
    df = read_source(str(writer(signals, tmp_path / f"s{suffix}")))
    assert list(df.columns) == ["id", "label", "values"]
    assert df["label"].tolist() == signals["label"].tolist()
    for got, want in zip(df["values"], signals["values"], strict=True):
        np.testing.assert_allclose(got, want)
    validate_signals(df, P)


def test_bundled_plaid_is_read_from_the_sktime_wheel_without_importing_it():
    import sys

    df = read_source("bundled:PLAID")
    assert "sktime" not in sys.modules
    assert len(df) == 1074 and df["label"].nunique() == 11
    assert df["id"].is_unique
    # the fault class params.yaml names (PLAID 9, vacuum): 38 of 1074 signals
    fault = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["positive_label"]
    y = fault_target(df, fault)
    assert int(y.sum()) == 38
    # every one of them exactly 200 samples long: the length shortcut 01_eda.ipynb checks for
    assert set(df.loc[y == 1, "values"].map(len)) == {200}


def test_ucr_trailing_nan_padding_is_dropped(tmp_path):
    f = tmp_path / "pad.tsv"
    f.write_text("a\t1.0\t2.0\t3.0\tNaN\tNaN\nb\t1.0\t2.0\t3.0\t4.0\t5.0\n")
    df = read_source(str(f))
    assert [len(v) for v in df["values"]] == [3, 5]


def _error(tmp_path: Path, name: str, text: str | bytes | None = None, df=None) -> DataError:
    path = tmp_path / name
    if df is not None:
        df.to_parquet(path, index=False)
    elif isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(DataError) as e:
        validate_signals(read_source(str(path)), P, file=str(path))
    return e.value


def test_nan_inside_a_signal_names_file_row_and_rule(tmp_path, signals):
    lines = write_tsv(signals, tmp_path / "ok.tsv").read_text().splitlines()
    fields = lines[4].split("\t")
    fields[10] = "NaN"
    lines[4] = "\t".join(fields)
    err = _error(tmp_path, "nan.tsv", "\n".join(lines))
    assert err.rule == "values_finite" and err.rows == [5]
    assert "nan.tsv: row 5: rule 'values_finite'" in str(err)


def test_missing_label_column(tmp_path, signals):
    df = signals.drop(columns="label").assign(values=signals["values"].map(list))
    err = _error(tmp_path, "nolabel.parquet", df=df)
    assert err.rule == "label_present" and "no 'label' column" in str(err)


def test_one_class_only(tmp_path, signals):
    one = signals[signals.label == "fault"]
    err = _error(tmp_path, "one.ts", write_ts(one, tmp_path / "one.ts").read_text())
    assert "at_least_two_classes" in str(err)


def test_too_few_fault_examples(tmp_path, signals):
    few = pd.concat([signals[signals.label != "fault"], signals[signals.label == "fault"].head(2)])
    err = _error(tmp_path, "few.tsv", write_tsv(few, tmp_path / "few.tsv").read_text())
    assert err.rule == "min_fault_examples" and "found 2" in str(err)


def test_a_ts_without_a_dimensions_line_takes_the_first_rows_dimensions(tmp_path):
    """Multichannel .ts files are read (tests/test_data_multichannel.py); a row with another
    number of dimensions than the first is named."""
    rows = ["1,2,3:4,5,6:7,8,9:fault", "1,2,3:4,5,6:ok"]
    text = "@problemName three\n@classLabel true fault ok\n@data\n" + "\n".join(rows) + "\n"
    err = _error(tmp_path, "three.ts", text)
    assert err.rule == "channels_match" and err.rows == [5], err
    assert (
        "2 channel(s); every signal must have the channels 'dim_0', 'dim_1', 'dim_2' (from "
        "row 4, the first)"
    ) in str(err)


def test_unknown_extension(tmp_path):
    err = _error(tmp_path, "data.xlsx", "a,1,2\n")
    assert err.rule == "known_format" and "'.xlsx'" in str(err) and ".csv" in str(err)


@pytest.mark.parametrize("name", ["empty.tsv", "empty.ts", "empty.parquet"])
def test_empty_file(tmp_path, name):
    err = _error(tmp_path, name, "")
    assert err.rule == "not_empty" and name in str(err)


def test_duplicate_ids(tmp_path, signals):
    df = signals.assign(values=signals["values"].map(list))
    df.loc[3, "id"] = df.loc[2, "id"]
    err = _error(tmp_path, "dup.parquet", df=df)
    assert err.rule == "unique_id" and err.rows == [2, 3]


def test_too_short_signal(tmp_path, signals):
    signals.at[7, "values"] = signals.at[7, "values"][:5]
    err = _error(tmp_path, "short.tsv", write_tsv(signals, tmp_path / "short.tsv").read_text())
    assert err.rule == "length_within_bounds" and err.rows == [8]


def test_non_numeric_value(tmp_path):
    err = _error(tmp_path, "text.tsv", "a\t1.0\tfoo\t3.0\n")
    assert err.rule == "values_numeric" and err.rows == [1]


def test_split_is_stratified_disjoint_and_deterministic(tmp_path, signals):
    df = signals.set_index(pd.RangeIndex(len(signals)))
    y = fault_target(df, "fault")
    parts = split_stratified(df, y, 0.25, 0.25, seed=3)
    ids = [set(p["id"]) for p in parts.values()]
    assert sum(map(len, ids)) == len(df) and not (
        ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]
    )
    # 52 signals, 12 fault: each part keeps the 23 % fault share as closely as whole signals can
    sizes = {k: (len(p), int(y.loc[p.index].sum())) for k, p in parts.items()}
    assert sizes == {"train": (26, 6), "val": (13, 3), "test": (13, 3)}
    again = split_stratified(df, y, 0.25, 0.25, seed=3)
    assert all(parts[k]["id"].tolist() == again[k]["id"].tolist() for k in parts)


def test_same_params_give_byte_identical_parquet(tmp_path, signals):
    write_tsv(signals, tmp_path / "s.tsv")
    data = DataParams(source="s.tsv", positive_label="fault", min_positive=5)
    digests = []
    for _ in range(2):
        prepare(data, SplitParams(seed=1), tmp_path)
        digests.append(
            {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in (tmp_path / "data/prepared").glob("*.parquet")
            }
        )
    assert len(digests[0]) == 3 and digests[0] == digests[1]


def test_bad_params_name_the_key():
    with pytest.raises(
        ParamsError, match=r"params.yaml: data.min_positive: Input should be greater"
    ):
        section("data", {"data": {"min_positive": 0}})
    with pytest.raises(ParamsError, match=r"split.seeed: Extra inputs are not permitted"):
        section("split", {"split": {"seeed": 1}})
    with pytest.raises(ParamsError, match=r"val_fraction \+ test_fraction must be below 1"):
        section("split", {"split": {"val_fraction": 0.5, "test_fraction": 0.5}})
