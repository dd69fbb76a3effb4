"""Delimited text files: the UCR layout (label, then the values; an optional header row) in a
.tsv or a .csv, or, when a .csv's header names them, the long layout (faultwatch.data.long_layout).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.data.long_layout import read_long
from faultwatch.data.text import (
    ID_NAMES,
    LABEL_NAMES,
    MISSING_TOKENS,
    VALUE_NAMES,
    delimited_rows,
    floats,
    header_names,
    is_name,
    signal_frame,
    text_lines,
)
from faultwatch.errors import DataError


def _looks_like_header(fields: list[str], labels: set[str]) -> bool:
    """Line 1 is a header row when every column after the first holds a name (`t1`, `v_3`),
    or when at least 3 columns after a first field that is no label of the other lines are
    numbered 0..n-1 or 1..n (`class,0,1,2,...`). One stray word among numbers is a data row
    with a typo, and stays an error."""
    first, rest = fields[0].strip(), [f.strip() for f in fields[1:]]
    if not rest:
        return False
    if all(is_name(t) or t.lower() in MISSING_TOKENS for t in rest) and any(map(is_name, rest)):
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
    rows = delimited_rows(path, file, sep, quoting)
    if all(len(f) == 1 for _, f in rows):
        raise _one_column(file, rows[0][0], rows[0][1][0], sep)
    first_row, names = rows[0]
    if header_names(names, LABEL_NAMES) and header_names(names, VALUE_NAMES):
        return read_long(rows[1:], names, file)
    header = _looks_like_header(names, {f[0].strip() for _, f in rows[1:]})
    with_id = header and names[0].strip().lower() in ID_NAMES and len(names) > 2
    with_id = with_id and names[1].strip().lower() in LABEL_NAMES
    hint = ""
    if not header and any(is_name(t) for t in names[1:]):
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
            values = floats(fields[1:], file, n, hint if n == first_row else "")
            yield n, ident, label, _drop_padding(values)

    df = signal_frame(records())
    if df.empty:
        raise DataError(file, "not_empty", "a header row and no signals")
    return df


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
    first = text_lines(path, file)[0][1]
    sep = ";" if "," not in first and ";" in first else ","
    return _read_wide(path, file, sep, csv.QUOTE_MINIMAL)
