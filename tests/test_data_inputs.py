"""What a user's own file may look like: numeric labels, CSV layouts, gaps in signals, and the
messages a wrong file or a misspelt param gets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.datafiles import write_tsv
from helpers.signals import make_signals

from faultwatch.data.params import DataParams, SplitParams
from faultwatch.data.prepare import fault_target, prepare
from faultwatch.data.readers import read_source
from faultwatch.data.validate import validate_signals
from faultwatch.errors import DataError, ParamsError
from faultwatch.params import section

SPLIT = SplitParams(seed=1, val_fraction=0.25, test_fraction=0.25)


def ucr_lines(labels: list[str], n: int = 20, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["\t".join([lab, *(f"{x:.3f}" for x in rng.normal(size=n))]) for lab in labels]


def data_params(**kw) -> DataParams:
    return DataParams(**{"min_positive": 3, "min_length": 4, **kw})


# --- 1. numeric fault labels ------------------------------------------------------------------


@pytest.mark.parametrize("written", ["-1", "2", '"9"', "1.0"])
def test_positive_label_may_be_a_yaml_number(written):
    p = section("data", yaml.safe_load(f"data:\n  positive_label: {written}\n"))
    assert p.positive_label == yaml.safe_load(written)


def test_yaml_boolean_label_is_refused_with_the_way_out():
    with pytest.raises(ParamsError, match=r"data.positive_label: .*boolean True; quote it"):
        section("data", yaml.safe_load("data:\n  positive_label: yes\n"))


def test_numeric_labels_are_one_class_however_written(tmp_path):
    """A column of numbers is compared as numbers: 1, 1.0, +1 and 01 are one class."""
    labels = ["-1"] * 6 + ["1", "1.0", "+1", "01"] + ["2"] * 4
    (tmp_path / "n.tsv").write_text("\n".join(ucr_lines(labels)) + "\n")
    df = validate_signals(read_source("n.tsv", tmp_path), data_params(positive_label=1))
    assert df["label"].tolist() == ["-1"] * 6 + ["1"] * 4 + ["2"] * 4
    assert fault_target(df, 1).tolist() == [0] * 6 + [1] * 4 + [0] * 4
    assert fault_target(df, "1.0").sum() == 4 and fault_target(df, -1).sum() == 6


def test_negative_numeric_fault_label_through_prepare(tmp_path):
    labels = ["1", "-1"] * 12
    (tmp_path / "ucr.tsv").write_text("\n".join(ucr_lines(labels)) + "\n")
    summary = prepare(data_params(source="ucr.tsv", positive_label=-1), SPLIT, tmp_path)
    assert sum(summary[k]["n_fault"] for k in ("train", "val", "test")) == 12
    test = pd.read_parquet(tmp_path / "data/prepared/test.parquet")
    assert set(zip(test["label"], test["y"], strict=True)) == {("-1", 1), ("1", 0)}


def test_text_labels_are_compared_as_text(tmp_path):
    """One text label makes the column text: the number 2 names '2', not '2.0'."""
    labels = ["2"] * 4 + ["2.0"] * 3 + ["pump"] * 5
    (tmp_path / "t.tsv").write_text("\n".join(ucr_lines(labels)) + "\n")
    df = validate_signals(read_source("t.tsv", tmp_path), data_params(positive_label=2))
    assert fault_target(df, 2).sum() == 4 and df["label"].nunique() == 3


def test_a_label_matching_no_class_lists_the_classes_found(tmp_path):
    (tmp_path / "n.tsv").write_text("\n".join(ucr_lines(["1", "2"] * 5)) + "\n")
    with pytest.raises(DataError) as e:
        validate_signals(read_source("n.tsv", tmp_path), data_params(positive_label=-1))
    assert str(e.value) == (
        "n.tsv: rule 'positive_label_present' failed: data.positive_label=-1 matches no class; "
        "classes found (compared as numbers): '1', '2'"
    )


# --- 2. CSV -----------------------------------------------------------------------------------

SIGNALS = make_signals(n_healthy=8, n_fault=4)


def wide_csv(header: str | None, sep: str = ",") -> str:
    rows = [
        sep.join([lab, *map(repr, v.tolist())])
        for lab, v in zip(SIGNALS.label, SIGNALS["values"], strict=True)
    ]
    width = max(len(v) for v in SIGNALS["values"])
    heads = {
        None: [],
        "names": [sep.join(["label", *(f"t{i}" for i in range(width))])],
        "numbered": [sep.join(["class", *(str(i) for i in range(width))])],
        "id": [],
    }
    return "\n".join(heads[header] + rows) + "\n"


@pytest.mark.parametrize(
    "header,sep,first_row",
    [(None, ",", 1), ("names", ",", 2), ("numbered", ",", 2), ("names", ";", 2)],
)
def test_csv_in_the_ucr_layout_with_or_without_header(tmp_path, header, sep, first_row):
    (tmp_path / "s.csv").write_text(wide_csv(header, sep))
    df = read_source("s.csv", tmp_path)
    assert df["label"].tolist() == SIGNALS["label"].tolist()
    assert df.index[0] == first_row  # rows are line numbers, the header's included
    for got, want in zip(df["values"], SIGNALS["values"], strict=True):
        np.testing.assert_array_equal(got, want)  # ragged rows: no padding kept


def test_csv_ucr_layout_with_an_id_column(tmp_path):
    lines = ["id,label,v1,v2,v3", "a,x,1,2,3", "b,y,4,5,6"]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    df = read_source("s.csv", tmp_path)
    assert df["id"].tolist() == ["a", "b"] and df["label"].tolist() == ["x", "y"]
    np.testing.assert_array_equal(df["values"].iloc[1], [4.0, 5.0, 6.0])


def test_a_data_row_that_counts_up_is_not_taken_for_a_header(tmp_path):
    lines = ["a,0,1,2,3", "a,5,6,7,8", "b,1,1,1,1"]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    assert read_source("s.csv", tmp_path)["label"].tolist() == ["a", "a", "b"]


def test_csv_long_layout_with_time_reorders_and_keeps_gaps(tmp_path):
    text = """signal_id,time,label,value
s1,2,ok,3.0
s1,1,ok,2.0
s2,0.5,bad,7
s2,0.25,bad,
s2,1.0,bad,9
s1,3,ok,4.0
"""
    (tmp_path / "long.csv").write_text(text)
    df = read_source("long.csv", tmp_path)
    assert df["id"].tolist() == ["s1", "s2"] and df["label"].tolist() == ["ok", "bad"]
    assert df.index.tolist() == [2, 4]  # the line of each signal's first sample
    np.testing.assert_array_equal(df["values"].iloc[0], [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(df["values"].iloc[1], [np.nan, 7.0, 9.0])


def test_csv_long_layout_without_time_keeps_file_order(tmp_path):
    text = "ID,Label,Value\na,x,1\nb,y,5\na,x,2\n"
    (tmp_path / "long.csv").write_text(text)
    df = read_source("long.csv", tmp_path)
    np.testing.assert_array_equal(df["values"].iloc[0], [1.0, 2.0])


@pytest.mark.parametrize(
    "text,rule,rows,detail",
    [
        ("id,label,value\na,x,1\na,y,2\n", "label_constant", [3], "one label per signal"),
        ("id,label,value,unit\na,x,1,A\n", "long_layout", [1], "unexpected column(s) 'unit'"),
        ("label,value\nx,1\n", "long_layout", [1], "no id column"),
        ("id,label,value,time\na,x,1,0\na,x,2,0\n", "time_unique", [2, 3], "same time twice"),
        ("id,label,value,time\na,x,1,noon\n", "time_readable", [2], "neither a number"),
        ("id,label,value\na,x,one\n", "values_numeric", [2], "'one' is not a number"),
    ],
)
def test_csv_long_layout_errors(tmp_path, text, rule, rows, detail):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError) as e:
        read_source("bad.csv", tmp_path)
    assert (e.value.rule, e.value.rows) == (rule, rows) and detail in str(e.value)


def test_prepare_reads_a_csv_end_to_end(tmp_path):
    sig = make_signals()
    rows = [
        ",".join([lab, *map(repr, v.tolist())])
        for lab, v in zip(sig.label, sig["values"], strict=True)
    ]
    (tmp_path / "pumps.csv").write_text(
        "label," + ",".join(f"t{i}" for i in range(80)) + "\n" + "\n".join(rows)
    )
    summary = prepare(
        DataParams(source="pumps.csv", positive_label="fault", min_positive=5), SPLIT, tmp_path
    )
    assert sum(summary[k]["n_signals"] for k in ("train", "val", "test")) == 52


# --- 3. gaps inside signals -------------------------------------------------------------------


def gappy_file(tmp_path: Path, extra: str = "") -> Path:
    """12 healthy and 6 fault signals of 20 samples; row 2 has an inner gap of two samples,
    row 3 a leading and an inner gap; row 20 (`extra`) may add anything."""
    lines = ucr_lines(["ok"] * 12 + ["bad"] * 6)
    f = lines[1].split("\t")
    f[1:4] = ["1.0", "2.0", "3.0"]
    f[4], f[5] = "NaN", ""  # samples 3 and 4, between 3.0 and 6.0
    f[6] = "6.0"
    lines[1] = "\t".join(f)
    f = lines[2].split("\t")
    f[1], f[10] = "?", "nan"
    lines[2] = "\t".join(f)
    (tmp_path / "gaps.tsv").write_text("\n".join(lines + ([extra] if extra else [])) + "\n")
    return tmp_path / "gaps.tsv"


def test_gaps_are_an_error_by_default_with_the_way_out(tmp_path):
    gappy_file(tmp_path)
    with pytest.raises(DataError) as e:
        prepare(data_params(source="gaps.tsv", positive_label="bad"), SPLIT, tmp_path)
    assert e.value.rule == "values_finite" and e.value.rows == [2, 3]
    assert "set data.missing: interpolate or drop" in str(e.value)
    assert not (tmp_path / "data").exists()


def test_interpolate_fills_inner_gaps_linearly_and_trims_edges(tmp_path):
    src = gappy_file(tmp_path)
    summary = prepare(
        data_params(source="gaps.tsv", positive_label="bad", missing="interpolate"), SPLIT, tmp_path
    )
    assert summary["missing"] == {
        "signals_interpolated": 2,
        "samples_filled": 3,
        "samples_trimmed": 1,
        "signals_dropped": 0,
    }
    written = json.loads((tmp_path / "reports/metrics/prepare.json").read_text())
    assert written["missing"] == summary["missing"]
    parts = pd.concat(
        pd.read_parquet(tmp_path / f"data/prepared/{s}.parquet") for s in ("train", "val", "test")
    )
    by_row = parts.set_index("source_row")["values"]
    np.testing.assert_allclose(by_row[2][:6], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert len(by_row[3]) == 19  # the leading gap trimmed, not invented
    raw = src.read_text().splitlines()[2].split("\t")
    np.testing.assert_allclose(by_row[3][8], (float(raw[9]) + float(raw[11])) / 2)


def test_drop_removes_the_signals_with_gaps(tmp_path):
    gappy_file(tmp_path)
    summary = prepare(
        data_params(source="gaps.tsv", positive_label="bad", missing="drop"), SPLIT, tmp_path
    )
    assert summary["missing"]["signals_dropped"] == 2
    assert sum(summary[k]["n_signals"] for k in ("train", "val", "test")) == 16


@pytest.mark.parametrize("mode", ["error", "interpolate", "drop"])
def test_infinite_values_are_an_error_in_every_mode(tmp_path, mode):
    gappy_file(tmp_path, extra="\t".join(["ok", "1.0", "inf", "nan", *["2.0"] * 20]))
    params = data_params(source="gaps.tsv", positive_label="bad", missing=mode)
    with pytest.raises(DataError) as e:
        prepare(params, SPLIT, tmp_path)
    assert e.value.rule == "values_finite" and 19 in e.value.rows
    assert "1 signal(s) hold an infinite value (an error in every data.missing mode)" in str(
        e.value
    )


def test_missing_mode_is_validated():
    with pytest.raises(
        ParamsError, match=r"data.missing: Input should be 'error', 'interpolate' or 'drop'"
    ):
        section("data", {"data": {"missing": "zero"}})


# --- 4. messages ------------------------------------------------------------------------------


def test_tsv_with_a_header_row_is_read(tmp_path):
    head = "\t".join(["label", *(f"t{i}" for i in range(20))])
    (tmp_path / "h.tsv").write_text("\n".join([head, *ucr_lines(["a", "b"])]) + "\n")
    assert read_source("h.tsv", tmp_path)["label"].tolist() == ["a", "b"]


def test_a_half_header_in_a_tsv_gets_the_header_hint(tmp_path):
    head = "\t".join(["label", "volts", *(str(i) for i in range(2, 21))])
    (tmp_path / "h.tsv").write_text("\n".join([head, *ucr_lines(["a", "b"])]) + "\n")
    with pytest.raises(DataError) as e:
        read_source("h.tsv", tmp_path)
    assert str(e.value) == (
        "h.tsv: row 1: rule 'values_numeric' failed: value 1 ('volts') is not a number; line 1 "
        "looks like a header row: a header is recognised when every column after the label has "
        "a name, or the columns are numbered 0.. or 1.."
    )


def test_comma_separated_tsv_gets_a_short_message(tmp_path):
    rows = [",".join(["pump_a" if i % 2 else "fault", *["0.123456"] * 300]) for i in range(100)]
    (tmp_path / "pumps.tsv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as e:
        validate_signals(read_source("pumps.tsv", tmp_path), data_params(positive_label="fault"))
    assert str(e.value) == (
        "pumps.tsv: row 1: rule 'columns_found' failed: one column found: is the file "
        "tab-separated? (line 1 holds ',': a comma-separated file belongs in a .csv)"
    )


def test_tab_separated_csv_gets_the_mirror_message(tmp_path):
    (tmp_path / "p.csv").write_text("\n".join(ucr_lines(["a", "b"])) + "\n")
    with pytest.raises(
        DataError, match=r"one column found: is the file comma-separated\? \(line 1 holds tabs"
    ):
        read_source("p.csv", tmp_path)


def test_every_data_message_is_bounded(tmp_path):
    """Hundreds of long labels (one class each): the message names some and stays short."""
    labels = [f"appliance_{'x' * 60}_{i}" for i in range(300)]
    (tmp_path / "many.tsv").write_text("\n".join(ucr_lines(labels, n=5)) + "\n")
    with pytest.raises(DataError) as e:
        validate_signals(read_source("many.tsv", tmp_path), data_params(positive_label="fault"))
    assert e.value.rule == "positive_label_present"
    assert len(str(e.value)) <= 400 and str(e.value).endswith(" (+293 more)")


def test_misspelt_params_key_suggests_the_right_one():
    with pytest.raises(ParamsError) as e:
        section("data", {"data": {"positve_label": "9"}})
    assert str(e.value) == (
        "params.yaml: data.positve_label: Extra inputs are not permitted; "
        "did you mean 'positive_label'?"
    )
    with pytest.raises(ParamsError, match=r"train.max_epoch: .*did you mean 'max_epochs'\?"):
        section("train", {"train": {"max_epoch": 3}})
    with pytest.raises(ParamsError, match=r"section 'data' not found; did you mean 'dta'\?"):
        section("data", {"dta": {"positive_label": "9"}})


def test_file_paths_in_messages_are_relative_to_the_project_root(tmp_path):
    """Given absolute or relative, a reader's error and a validation error name the file alike."""
    (tmp_path / "params.yaml").write_text("{}\n")
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "text.tsv").write_text("a\t1.0\tfoo\t3.0\n")
    write_tsv(make_signals().head(3), raw / "nan.tsv")
    (raw / "nan.tsv").write_text((raw / "nan.tsv").read_text().replace("\t", "\tNaN\t", 1))
    messages = []
    for name in ("text.tsv", "nan.tsv"):
        for source in (f"data/raw/{name}", str(raw / name)):
            with pytest.raises(DataError) as e:
                prepare(data_params(source=source, positive_label="pump_a"), SPLIT, tmp_path)
            messages.append(str(e.value))
    assert [m.split(":")[0] for m in messages] == ["data/raw/text.tsv"] * 2 + [
        "data/raw/nan.tsv"
    ] * 2


def test_a_data_error_never_quotes_more_than_its_bound():
    """The last guard: whatever a rule's detail quotes (a value, a row), the message stays short."""
    err = DataError("data/raw/x.tsv", "values_numeric", "value 1 ('" + "9," * 5000 + "')", [3])
    assert len(str(err)) < 500 and str(err).endswith(" ... (cut)")
    assert str(err).startswith("data/raw/x.tsv: row 3: rule 'values_numeric' failed: value 1")


# --- 5. equal lengths (removes a length shortcut) ----------------------------------------------


def test_crop_length_gives_every_signal_its_first_n_samples(tmp_path):
    sig = make_signals()  # lengths 48-80
    write_tsv(sig, tmp_path / "s.tsv")
    params = DataParams(source="s.tsv", positive_label="fault", min_positive=5, crop_length=48)
    prepare(params, SPLIT, tmp_path)
    parts = pd.concat(
        pd.read_parquet(tmp_path / f"data/prepared/{s}.parquet") for s in ("train", "val", "test")
    )
    assert set(parts["length"]) == {48} and set(parts["values"].map(len)) == {48}
    first = parts.set_index("source_row")["values"][1]  # line 1 of the file: sig row 0
    np.testing.assert_array_equal(first, sig["values"][0][:48])


def test_a_signal_shorter_than_crop_length_is_an_error_naming_it(tmp_path):
    sig = make_signals()
    sig.at[6, "values"] = sig.at[6, "values"][:30]
    write_tsv(sig, tmp_path / "s.tsv")
    params = DataParams(source="s.tsv", positive_label="fault", min_positive=5, crop_length=40)
    with pytest.raises(DataError) as e:
        prepare(params, SPLIT, tmp_path)
    assert str(e.value) == (
        "s.tsv: row 7: rule 'length_at_least_crop_length' failed: data.crop_length=40 needs "
        "every signal at least that long; the shortest is 30 samples"
    )
    with pytest.raises(ParamsError, match=r"crop_length \(8\) < min_length \(16\)"):
        section("data", {"data": {"crop_length": 8}})
