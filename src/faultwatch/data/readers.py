"""Readers: each returns a frame indexed by source row with columns id, label, values.

`values` holds one float64 numpy array per signal (lengths may differ). Rows are numbered
as a user would find them: the line number in a text file, the 0-based row in Parquet.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.data.params import BUNDLED
from faultwatch.errors import DataError

COLUMNS = ["id", "label", "values"]


def _frame(records: Iterable[tuple[int, str, str, np.ndarray]]) -> pd.DataFrame:
    rows = list(records)
    df = pd.DataFrame(
        [(i, lab, v) for _, i, lab, v in rows], columns=COLUMNS, index=[r for r, *_ in rows]
    )
    df.index.name = "row"
    return df


MISSING_TOKENS = frozenset({"", "?", "na", "nan", "null"})  # a missing sample (NaN)
ID_NAMES = ("id", "signal_id", "series_id", "signal", "series")
LABEL_NAMES = ("label", "class")
VALUE_NAMES = ("value",)
TIME_NAMES = ("time", "timestamp", "t")


def _number(token: str) -> float | None:
    """The float a value field holds (NaN for a missing marker), or None if it is text."""
    t = token.strip()
    if t.lower() in MISSING_TOKENS:
        return np.nan
    try:
        return float(t)
    except ValueError:
        return None


def _floats(text: list[str], file: str, row: int, hint: str = "") -> np.ndarray:
    out = np.empty(len(text), dtype="float64")
    for j, token in enumerate(text):
        x = _number(token)
        if x is None:
            bad = token.strip()
            bad = bad if len(bad) <= 30 else bad[:27] + "..."
            raise DataError(
                file, "values_numeric", f"value {j + 1} ('{bad}') is not a number{hint}", [row]
            )
        out[j] = x
    return out


def _text_lines(path: Path, file: str | None = None) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8-sig", errors="strict")
    if not text.strip():
        raise DataError(file or str(path), "not_empty", "the file is empty")
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _rows(path: Path, file: str, sep: str, quoting: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line."""
    lines = _text_lines(path, file)
    reader = csv.reader((line for _, line in lines), delimiter=sep, quoting=quoting)
    try:
        return [(n, fields) for (n, _), fields in zip(lines, reader, strict=True)]
    except (csv.Error, ValueError) as e:
        raise DataError(file, "csv_readable", f"not readable as delimited text ({e})") from None


def _is_name(token: str) -> bool:
    return _number(token) is None


def _looks_like_header(fields: list[str], labels: set[str]) -> bool:
    """Line 1 is a header row when every column after the first holds a name (`t1`, `v_3`),
    or when at least 3 columns after a first field that is no label of the other lines are
    numbered 0..n-1 or 1..n (`class,0,1,2,...`). One stray word among numbers is a data row
    with a typo, and stays an error."""
    first, rest = fields[0].strip(), [f.strip() for f in fields[1:]]
    if not rest:
        return False
    if all(_is_name(t) or t.lower() in MISSING_TOKENS for t in rest) and any(map(_is_name, rest)):
        return True
    if len(rest) >= 3 and first not in labels and all(t.isdigit() for t in rest):
        start = int(rest[0])
        return start in (0, 1) and [int(t) for t in rest] == list(range(start, start + len(rest)))
    return False


def _one_column(file: str, row: int, line: str, sep: str) -> DataError:
    """Every line is one field: the separator is not the one the extension promises."""
    name = {"\t": "tab", ",": "comma", ";": "semicolon"}[sep]
    hint = ""
    if sep != "\t" and "\t" in line:
        hint = f" (line {row} holds tabs: a tab-separated file belongs in a .tsv)"
    elif sep == "\t" and ("," in line or ";" in line):
        found = "','" if "," in line else "';'"
        hint = f" (line {row} holds {found}: a comma-separated file belongs in a .csv)"
    detail = f"one column found: is the file {name}-separated?{hint}"
    return DataError(file, "columns_found", detail, [row])


def _drop_padding(values: np.ndarray) -> np.ndarray:
    """Variable-length UCR sets pad with trailing NaN (or empty fields): not part of the signal."""
    last = len(values)
    while last and np.isnan(values[last - 1]):
        last -= 1
    return values[:last]


def _read_wide(path: Path, file: str, sep: str, quoting: int) -> pd.DataFrame:
    """The UCR layout: label first, then the values; an optional header row."""
    rows = _rows(path, file, sep, quoting)
    if all(len(f) == 1 for _, f in rows):
        raise _one_column(file, rows[0][0], rows[0][1][0], sep)
    first_row, names = rows[0]
    if _header_names(names, LABEL_NAMES) and _header_names(names, VALUE_NAMES):
        return _read_long(rows[1:], names, file)
    header = _looks_like_header(names, {f[0].strip() for _, f in rows[1:]})
    with_id = header and names[0].strip().lower() in ID_NAMES and len(names) > 2
    with_id = with_id and names[1].strip().lower() in LABEL_NAMES
    hint = ""
    if not header and any(_is_name(t) for t in names[1:]):
        hint = (
            f"; line {first_row} looks like a header row: a header is recognised when every "
            "column after the label has a name, or the columns are numbered 0.. or 1.."
        )

    def records():
        for n, fields in rows[1:] if header else rows:
            if with_id:
                ident, fields = fields[0].strip(), fields[1:]
            else:
                ident = f"{path.stem}:{n}"
            label = fields[0].strip()
            if not label or label.lower() == "nan":
                raise DataError(file, "label_present", "column 1 (the label) is empty", [n])
            values = _floats(fields[1:], file, n, hint if n == first_row else "")
            yield n, ident, label, _drop_padding(values)

    df = _frame(records())
    if df.empty:
        raise DataError(file, "not_empty", "a header row and no signals")
    return df


def _header_names(names: list[str], wanted: tuple[str, ...]) -> list[int]:
    return [i for i, n in enumerate(names) if n.strip().lower() in wanted]


def _read_long(rows: list[tuple[int, list[str]]], names: list[str], file: str) -> pd.DataFrame:
    """The long layout: one sample per row, columns id, label, value and optionally time."""
    cols = {}
    for role, wanted in (("id", ID_NAMES), ("label", LABEL_NAMES), ("value", VALUE_NAMES)):
        found = _header_names(names, wanted)
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise DataError(
                file,
                "long_layout",
                f"{what} {role} column ({' or '.join(wanted)}) in the header; the long layout "
                "has columns id, label, value and optionally time",
                [1],
            )
        cols[role] = found[0]
    times = _header_names(names, TIME_NAMES)
    if len(times) > 1:
        raise DataError(file, "long_layout", "more than one time column in the header", [1])
    if times:
        cols["time"] = times[0]
    extra = [n for i, n in enumerate(names) if i not in cols.values()]
    if extra:
        shown = ", ".join(repr(x[:24]) for x in extra[:5])
        raise DataError(
            file,
            "long_layout",
            f"unexpected column(s) {shown}; the long layout has columns id, label, value "
            "and optionally time",
            [1],
        )
    if not rows:
        raise DataError(file, "not_empty", "a header row and no samples")
    signals: dict[str, dict] = {}
    for n, fields in rows:
        if len(fields) != len(names):
            raise DataError(
                file,
                "column_count",
                f"{len(fields)} fields where the header has {len(names)}",
                [n],
            )
        ident, label = fields[cols["id"]].strip(), fields[cols["label"]].strip()
        if not ident:
            raise DataError(file, "id_present", "the id is empty", [n])
        if not label or label.lower() == "nan":
            raise DataError(file, "label_present", "the label is empty", [n])
        s = signals.setdefault(ident, {"row": n, "label": label, "rows": [], "time": []})
        if label != s["label"]:
            raise DataError(
                file,
                "label_constant",
                f"signal '{ident[:24]}' has label '{s['label'][:24]}' at row {s['row']} "
                f"and '{label[:24]}' here: one label per signal",
                [n],
            )
        s["rows"].append((n, fields[cols["value"]]))
        if "time" in cols:
            s["time"].append(fields[cols["time"]].strip())

    def records():
        for ident, s in signals.items():
            values = np.array([_one_float(tok, file, n) for n, tok in s["rows"]], dtype="float64")
            if "time" in cols:
                order = _time_order(s, file)
                values = values[order]
            yield s["row"], ident, s["label"], values

    return _frame(records())


def _one_float(token: str, file: str, row: int) -> float:
    x = _number(token)
    if x is None:
        bad = token.strip()[:30]
        raise DataError(file, "values_numeric", f"value '{bad}' is not a number", [row])
    return x


def _time_order(signal: dict, file: str) -> np.ndarray:
    """Sample order by the time column (numbers, or ISO 8601 timestamps); no repeated time."""
    rows = [n for n, _ in signal["rows"]]
    text = signal["time"]
    numbers = [_number(t) for t in text]
    if all(x is not None and np.isfinite(x) for x in numbers):
        keys = np.asarray(numbers, dtype="float64")
    else:
        try:
            keys = pd.to_datetime(pd.Series(text), format="ISO8601").to_numpy().astype("int64")
        except (ValueError, TypeError):
            bad = next(i for i, x in enumerate(numbers) if x is None or not np.isfinite(x))
            raise DataError(
                file,
                "time_readable",
                f"time '{text[bad][:30]}' is neither a number nor an ISO 8601 timestamp",
                [rows[bad]],
            ) from None
    order = np.argsort(keys, kind="stable")
    repeated = np.flatnonzero(np.diff(keys[order]) == 0)
    if len(repeated):
        dup = sorted({rows[order[i]] for i in repeated} | {rows[order[i + 1]] for i in repeated})
        raise DataError(file, "time_unique", "the same time twice in one signal", dup)
    return order


def read_ucr_tsv(path: Path, file: str | None = None) -> pd.DataFrame:
    """UCR 2018 format: label in column 1, values after, tab separated; an optional header row.

    Variable-length UCR sets pad with trailing NaN; that padding is dropped. A NaN inside a
    signal stays: `data.missing` decides.
    """
    return _read_wide(path, file or str(path), "\t", csv.QUOTE_NONE)


def read_csv(path: Path, file: str | None = None) -> pd.DataFrame:
    """CSV (`,`, or `;` when line 1 holds no comma): the UCR layout (label, then values; an
    optional header row) or, with a header naming them, the long layout (id, label, value
    and optionally time: one sample per row)."""
    file = file or str(path)
    first = _text_lines(path, file)[0][1]
    sep = ";" if "," not in first and ";" in first else ","
    return _read_wide(path, file, sep, csv.QUOTE_MINIMAL)


def _multivariate(file: str, what: str, row: int) -> DataError:
    """A multivariate `.ts` file: how many dimensions, and that only one is read today."""
    return DataError(
        file,
        "univariate",
        f"the file {what}: a multivariate signal set; only univariate signals (one dimension, "
        "`@univariate true`) are read today: keep one dimension per signal (one file per "
        "sensor channel)",
        [row],
    )


def read_sktime_ts(
    path: Path, file: str | None = None, id_prefix: str | None = None
) -> pd.DataFrame:
    """sktime/UEA `.ts`: header lines (`#`, `@`), then `v1,v2,...:label` per signal."""
    file, prefix = file or str(path), id_prefix or path.stem
    lines = _text_lines(path, file)
    in_data, has_labels = False, True

    def records():
        nonlocal in_data, has_labels
        for n, line in lines:
            s = line.strip()
            if s.startswith("#"):
                continue
            if s.startswith("@"):
                key, *rest = s.split()
                key = key.lower()
                if key == "@classlabel" and rest[:1] == ["false"]:
                    has_labels = False
                if key == "@dimensions" and rest[:1] != ["1"]:
                    raise _multivariate(file, f"has @dimensions {' '.join(rest)}", n)
                in_data = in_data or key == "@data"
                continue
            if not in_data:
                raise DataError(file, "ts_header", "data before the @data line", [n])
            parts = s.split(":")
            if not has_labels:
                raise DataError(file, "label_present", "@classLabel is false: no labels")
            if len(parts) > 2:
                raise _multivariate(file, f"has {len(parts) - 1} dimensions in a row", n)
            if len(parts) != 2:
                raise DataError(
                    file, "univariate", f"expected 'values:label', found {len(parts)} fields", [n]
                )
            label = parts[1].strip()
            if not label:
                raise DataError(file, "label_present", "the label after ':' is empty", [n])
            yield n, f"{prefix}:{n}", label, _floats(parts[0].split(","), file, n)

    df = _frame(records())
    if df.empty:
        raise DataError(file, "not_empty", "no signals after the @data line")
    return df


def read_parquet(path: Path, file: str | None = None) -> pd.DataFrame:
    """Parquet with a `label` column and one list column of values (`values` if present)."""
    file = file or str(path)
    try:
        # no Arrow thread pools: a pool thread still alive at interpreter exit can abort the
        # process after its work is done (SIGABRT, "terminate called without an active
        # exception", apache/arrow#34314), which turned a clean exit 1 into -6 once in CI
        raw = pd.read_parquet(path, use_threads=False, pre_buffer=False)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(file, "parquet_readable", f"not a readable Parquet file ({e})") from None
    if raw.empty:
        raise DataError(file, "not_empty", "the table has no rows")
    if "label" not in raw.columns:
        raise DataError(
            file, "label_present", f"no 'label' column (columns: {', '.join(raw.columns)})"
        )
    list_cols = [
        c for c in raw.columns if len(raw) and isinstance(raw[c].iloc[0], list | np.ndarray)
    ]
    col = "values" if "values" in raw.columns else (list_cols[0] if list_cols else None)
    if col is None:
        raise DataError(file, "values_present", "no list column of signal values")
    ids = raw["id"].astype(str) if "id" in raw.columns else [f"{path.stem}:{i}" for i in raw.index]
    labels = raw["label"]
    missing = [int(i) for i in np.flatnonzero(labels.isna().to_numpy())]
    if missing:
        raise DataError(file, "label_present", "the label is missing", missing)

    def records():
        for i, (ident, label, vals) in enumerate(zip(ids, labels, raw[col], strict=True)):
            try:
                arr = np.asarray(vals if vals is not None else [], dtype="float64")
            except (TypeError, ValueError) as e:
                raise DataError(file, "values_numeric", str(e), [i]) from None
            yield i, str(ident), str(label), arr

    return _frame(records())


def bundled_plaid() -> pd.DataFrame:
    """PLAID from the data files inside the installed sktime wheel (no import, no network)."""
    try:
        dist = metadata.distribution("sktime")
    except metadata.PackageNotFoundError:
        raise DataError(BUNDLED, "bundled_available", "sktime is not installed") from None
    folder = Path(dist.locate_file("sktime/datasets/data/PLAID"))
    parts = [
        read_sktime_ts(folder / f"PLAID_{s}.ts", id_prefix=f"PLAID_{s}") for s in ("TRAIN", "TEST")
    ]
    df = pd.concat(parts)
    df.index = pd.RangeIndex(len(df), name="row")
    return df


READERS: dict[str, Callable[..., pd.DataFrame]] = {
    ".tsv": read_ucr_tsv,
    ".csv": read_csv,
    ".ts": read_sktime_ts,
    ".parquet": read_parquet,
    ".pq": read_parquet,
}


def read_source(source: str, root: Path | None = None) -> pd.DataFrame:
    """Read `params.yaml:data.source`: `bundled:PLAID` or a path to .tsv, .csv, .ts or .parquet.

    Messages name the file relative to the project root (as given when it lies outside)."""
    if source == BUNDLED:
        df = bundled_plaid()
        df.attrs["source"] = source
        return df
    from faultwatch.paths import display_path, resolve

    path = resolve(source, root)
    file = display_path(path, root)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise DataError(
            file, "known_format", f"unknown extension '{path.suffix}'; expected one of {known}"
        )
    if not path.is_file():
        raise DataError(file, "file_exists", "no such file")
    if path.stat().st_size == 0:
        raise DataError(file, "not_empty", "the file is empty")
    df = reader(path, file=file)
    df.attrs["source"] = file
    return df
