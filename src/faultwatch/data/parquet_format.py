"""Parquet sources: a `label` column, an optional `id` column, and the signals in list columns.

Which columns hold the signal (Arrow's types decide, not the first row):
- a `values` column: the signal. A list of numbers is univariate; a list of lists is
  multichannel (channels x samples), its channels named by the schema metadata key
  `faultwatch.channels` (a JSON list, as the prepared splits write it), else dim_0, dim_1...;
- no `values` column: one list-of-lists column is multichannel as above; two or more list
  columns of numbers are one channel each (`acc_x`, `acc_y`, `acc_z`: the column name is the
  channel's, in the file's column order; `data.channels` selects among them); a single list
  column is univariate. Other columns (numbers, text) are ignored.

Rows are numbered from 0, as in the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from faultwatch.data.channels import (
    CHANNELS_KEY,
    channels_mismatch,
    default_names,
    quote,
    stack_channels,
)
from faultwatch.data.text import signal_frame
from faultwatch.errors import DataError

NOT_CHANNELS = ("id", "label")


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def channel_layout(schema: pa.Schema, file: str) -> tuple[str, list[str]] | None:
    """How a multichannel file holds its channels: ("nested", [column]) or ("columns",
    [one column a channel]); None for a univariate file."""
    lists = {f.name: f.type for f in schema if _is_list(f.type)}
    nested = [c for c, t in lists.items() if _is_list(t.value_type)]
    if "values" in schema.names:
        return ("nested", ["values"]) if "values" in nested else None
    if len(nested) > 1:
        raise DataError(
            file,
            "values_present",
            f"more than one list-of-lists column ({quote(nested)}): name the signal's `values`",
        )
    if nested:
        return "nested", nested
    flat = [c for c in lists if c not in NOT_CHANNELS]
    return ("columns", flat) if len(flat) >= 2 else None


def _numbers(vals: object, file: str, row: int, channel: str | None = None) -> np.ndarray:
    try:
        return np.asarray(vals if vals is not None else [], dtype="float64")
    except (TypeError, ValueError) as e:
        where = f"channel {channel!r}: " if channel else ""
        raise DataError(file, "values_numeric", f"{where}{e}", [row]) from None


def _metadata_names(schema: pa.Schema) -> tuple[str, ...] | None:
    raw = (schema.metadata or {}).get(CHANNELS_KEY)
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        return None
    return tuple(map(str, names)) if isinstance(names, list) else None


def _nested_signals(
    cells: pd.Series, names: tuple[str, ...] | None, file: str
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """One (channels, samples) array a row from a list<list<number>> column."""
    if names is None:
        filled = ((i, c) for i, c in enumerate(cells) if c is not None and len(c))
        first, chans = next(filled, (0, []))
        names, source = default_names(len(chans)), f"row {first}, the first"
        if not names:
            raise DataError(file, "values_present", "the list-of-lists column holds no channel")
    else:
        source = f"the schema metadata {CHANNELS_KEY.decode()}"
    out = []
    for i, cell in enumerate(cells):
        chans = list(cell) if cell is not None else []
        if len(chans) != len(names):
            raise channels_mismatch(file, [i], len(chans), names, source)
        arrays = [_numbers(c, file, i, n) for n, c in zip(names, chans, strict=True)]
        out.append(stack_channels(arrays, names, file, i))
    return out, names


def _column_signals(raw: pd.DataFrame, columns: list[str], file: str) -> list[np.ndarray]:
    """One (channels, samples) array a row from one list column a channel."""
    out = []
    for i, row in enumerate(zip(*(raw[c] for c in columns), strict=True)):
        arrays = [_numbers(v, file, i, c) for c, v in zip(columns, row, strict=True)]
        out.append(stack_channels(arrays, columns, file, i))
    return out


def _univariate_column(raw: pd.DataFrame, file: str) -> str:
    """The column of a univariate file: `values`, else the first list column."""
    list_cols = [
        c for c in raw.columns if len(raw) and isinstance(raw[c].iloc[0], list | np.ndarray)
    ]
    col = "values" if "values" in raw.columns else (list_cols[0] if list_cols else None)
    if col is None:
        raise DataError(file, "values_present", "no list column of signal values")
    return col


def _where(raw: pd.DataFrame, where: dict[str, object], file: str) -> np.ndarray:
    """Which rows hold the filter's values in their columns (compared as text)."""
    unknown = sorted(set(where) - set(raw.columns))
    if unknown:
        raise DataError(
            file,
            "filter_column",
            f"data.filter names {', '.join(unknown)}: no such column "
            f"(columns: {', '.join(map(str, raw.columns))})",
        )
    keep = pd.Series(True, index=raw.index)
    for col, values in where.items():
        wanted = {str(v) for v in (values if isinstance(values, list) else [values])}
        keep &= raw[col].astype(str).isin(wanted)
    if not keep.any():
        shown = ", ".join(f"{k}={v}" for k, v in where.items())
        raise DataError(file, "filter_matches", f"no row matches data.filter ({shown})")
    return keep.to_numpy()


def read_parquet(
    path: Path, file: str | None = None, where: dict[str, object] | None = None
) -> pd.DataFrame:
    """Parquet with a `label` column and the signals in list columns (see the module's text);
    `where` keeps the rows whose other columns hold given values (data.filter)."""
    file = file or str(path)
    try:
        # no Arrow thread pools: a pool thread still alive at interpreter exit can abort the
        # process after its work is done (SIGABRT, "terminate called without an active
        # exception", apache/arrow#34314), which turned a clean exit 1 into -6 once in CI
        raw = pd.read_parquet(path, use_threads=False, pre_buffer=False)
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(file, "parquet_readable", f"not a readable Parquet file ({e})") from None
    if raw.empty:
        raise DataError(file, "not_empty", "the table has no rows")
    if "label" not in raw.columns:
        raise DataError(
            file, "label_present", f"no 'label' column (columns: {', '.join(raw.columns)})"
        )
    # the filter is checked first (a named column, some row), applied last: every row of the
    # shared file is read and checked, and rows keep their numbers in messages
    keep = _where(raw, where, file) if where else None
    layout = channel_layout(schema, file)
    col = _univariate_column(raw, file) if layout is None else None
    ids = raw["id"].astype(str) if "id" in raw.columns else [f"{path.stem}:{i}" for i in raw.index]
    labels = raw["label"]
    missing = [int(i) for i in np.flatnonzero(labels.isna().to_numpy())]
    if missing:
        raise DataError(file, "label_present", "the label is missing", missing)
    names: tuple[str, ...] | None = None
    if layout is None:
        signals = [_numbers(v, file, i) for i, v in enumerate(raw[col])]
    elif layout[0] == "nested":
        signals, names = _nested_signals(raw[layout[1][0]], _metadata_names(schema), file)
    else:
        names = tuple(layout[1])
        signals = _column_signals(raw, layout[1], file)
    df = signal_frame(
        (i, str(ident), str(label), v)
        for i, (ident, label, v) in enumerate(zip(ids, labels, signals, strict=True))
    )
    if keep is not None:
        df = df[keep]
    if names is not None:
        df.attrs["channels"] = names
    return df
