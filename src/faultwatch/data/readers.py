"""Readers: each returns a frame indexed by source row with columns id, label, values.

`values` holds one float64 numpy array per signal (lengths may differ). Rows are numbered
as a user would find them: the line number in a text file, the 0-based row in Parquet.
Delimited text (.tsv, .csv) is read by faultwatch.data.delimited; sktime's .ts and Parquet here.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.data.delimited import read_csv, read_ucr_tsv
from faultwatch.data.params import BUNDLED
from faultwatch.data.text import floats, signal_frame, text_lines
from faultwatch.errors import DataError
from faultwatch.paths import display_path, resolve


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
    lines = text_lines(path, file)
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
            yield n, f"{prefix}:{n}", label, floats(parts[0].split(","), file, n)

    df = signal_frame(records())
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

    return signal_frame(records())


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
