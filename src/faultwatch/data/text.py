"""Delimited text as the readers see it: non-blank numbered lines, fields, numbers (a missing
marker is NaN), the names a header row may give its columns, and the frame every reader returns.

Rows are numbered as a user would find them: the line number in a text file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.errors import DataError

COLUMNS = ["id", "label", "values"]
MISSING_TOKENS = frozenset({"", "?", "na", "nan", "null"})  # a missing sample (NaN)
ID_NAMES = ("id", "signal_id", "series_id", "signal", "series")
LABEL_NAMES = ("label", "class")
VALUE_NAMES = ("value",)
TIME_NAMES = ("time", "timestamp", "t")
# the long layout's channel column (sktime's long format calls it dim_id)
CHANNEL_NAMES = ("channel", "sensor", "axis", "dim_id")


def signal_frame(records: Iterable[tuple[int, str, str, np.ndarray]]) -> pd.DataFrame:
    """(row, id, label, values) records as the readers' frame: indexed by source row."""
    rows = list(records)
    df = pd.DataFrame(
        [(i, lab, v) for _, i, lab, v in rows], columns=COLUMNS, index=[r for r, *_ in rows]
    )
    df.index.name = "row"
    return df


def number(token: str) -> float | None:
    """The float a value field holds (NaN for a missing marker), or None if it is text."""
    t = token.strip()
    if t.lower() in MISSING_TOKENS:
        return np.nan
    try:
        return float(t)
    except ValueError:
        return None


def is_name(token: str) -> bool:
    """A field that is text, not a number nor a missing marker (a header's column name)."""
    return number(token) is None


def floats(text: list[str], file: str, row: int, hint: str = "") -> np.ndarray:
    """The values of one signal; a field that is no number is an error naming it and its row."""
    out = np.empty(len(text), dtype="float64")
    for j, token in enumerate(text):
        x = number(token)
        if x is None:
            bad = token.strip()
            bad = bad if len(bad) <= 30 else bad[:27] + "..."
            raise DataError(
                file, "values_numeric", f"value {j + 1} ('{bad}') is not a number{hint}", [row]
            )
        out[j] = x
    return out


def text_lines(path: Path, file: str | None = None) -> list[tuple[int, str]]:
    """(line number, line) of every non-blank line; an empty file is an error."""
    text = path.read_text(encoding="utf-8-sig", errors="strict")
    if not text.strip():
        raise DataError(file or str(path), "not_empty", "the file is empty")
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def delimited_rows(path: Path, file: str, sep: str, quoting: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line."""
    lines = text_lines(path, file)
    reader = csv.reader((line for _, line in lines), delimiter=sep, quoting=quoting)
    try:
        return [(n, fields) for (n, _), fields in zip(lines, reader, strict=True)]
    except (csv.Error, ValueError) as e:
        raise DataError(file, "csv_readable", f"not readable as delimited text ({e})") from None


def header_names(names: list[str], wanted: tuple[str, ...]) -> list[int]:
    """The positions of the header's columns named one of `wanted` (any case)."""
    return [i for i, n in enumerate(names) if n.strip().lower() in wanted]
