"""Readers: each returns a frame indexed by source row with columns id, label, values.

`values` holds one float64 numpy array per signal (lengths may differ): 1-D for a univariate
source; for a multichannel one (faultwatch.data.channels), 2-D (channels, samples) with the
channel names in `df.attrs["channels"]`. Rows are numbered as a user would find them: the line
number in a text file, the 0-based row in Parquet. Delimited text (.tsv, .csv) is read by
faultwatch.data.delimited, sktime's .ts by faultwatch.data.ts_format, Parquet by
faultwatch.data.parquet_format; the bundled set and the choice of reader here.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pandas as pd

from faultwatch.data.delimited import read_csv, read_ucr_tsv
from faultwatch.data.params import BUNDLED
from faultwatch.data.parquet_format import read_parquet
from faultwatch.data.ts_format import read_sktime_ts
from faultwatch.errors import DataError
from faultwatch.paths import display_path, resolve


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
