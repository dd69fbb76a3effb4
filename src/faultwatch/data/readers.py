"""Readers: each returns a frame indexed by source row with columns id, label, values.

`values` holds one float64 numpy array per signal (lengths may differ). Rows are numbered
as a user would find them: the line number in a text file, the 0-based row in Parquet.
"""

from __future__ import annotations

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


def _floats(text: list[str], file: str, row: int) -> np.ndarray:
    try:
        return np.asarray([float(t) if t.strip() not in ("?", "") else np.nan for t in text])
    except ValueError as e:
        raise DataError(file, "values_numeric", f"a value is not a number ({e})", [row]) from None


def _text_lines(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8-sig", errors="strict")
    if not text.strip():
        raise DataError(str(path), "not_empty", "the file is empty")
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_ucr_tsv(path: Path) -> pd.DataFrame:
    """UCR 2018 format: label in column 0, values after, tab separated.

    Variable-length UCR sets pad with trailing NaN; that padding is dropped. A NaN inside a
    signal stays and fails validation.
    """
    file = str(path)

    def records():
        for n, line in _text_lines(path):
            fields = line.rstrip("\n").split("\t")
            label = fields[0].strip()
            if not label or label.lower() == "nan":
                raise DataError(file, "label_present", "column 0 (the label) is empty", [n])
            values = _floats(fields[1:], file, n)
            last = len(values)
            while last and np.isnan(values[last - 1]):
                last -= 1
            yield n, f"{path.stem}:{n}", label, values[:last]

    return _frame(records())


def read_sktime_ts(path: Path, id_prefix: str | None = None) -> pd.DataFrame:
    """sktime/UEA `.ts`: header lines (`#`, `@`), then `v1,v2,...:label` per signal."""
    file, prefix = str(path), id_prefix or path.stem
    lines = _text_lines(path)
    in_data, has_labels = False, True

    def records():
        nonlocal in_data, has_labels
        for n, line in lines:
            s = line.strip()
            if s.startswith("#"):
                continue
            if s.startswith("@"):
                key = s.split()[0].lower()
                if key == "@classlabel" and s.split()[1:2] == ["false"]:
                    has_labels = False
                in_data = in_data or key == "@data"
                continue
            if not in_data:
                raise DataError(file, "ts_header", "data before the @data line", [n])
            parts = s.split(":")
            if not has_labels:
                raise DataError(file, "label_present", "@classLabel is false: no labels")
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


def read_parquet(path: Path) -> pd.DataFrame:
    """Parquet with a `label` column and one list column of values (`values` if present)."""
    file = str(path)
    try:
        raw = pd.read_parquet(path)
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


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".tsv": read_ucr_tsv,
    ".ts": read_sktime_ts,
    ".parquet": read_parquet,
    ".pq": read_parquet,
}


def read_source(source: str, root: Path | None = None) -> pd.DataFrame:
    """Read `params.yaml:data.source`: `bundled:PLAID` or a path to .tsv, .ts or .parquet."""
    if source == BUNDLED:
        return bundled_plaid()
    from faultwatch.paths import resolve

    path = resolve(source, root)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise DataError(
            source, "known_format", f"unknown extension '{path.suffix}'; expected one of {known}"
        )
    if not path.is_file():
        raise DataError(source, "file_exists", "no such file")
    if path.stat().st_size == 0:
        raise DataError(source, "not_empty", "the file is empty")
    df = reader(path)
    df.attrs["source"] = source
    return df
