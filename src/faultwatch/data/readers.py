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
from faultwatch.data.params import BUNDLED, BUNDLED_PREFIX
from faultwatch.data.parquet_format import read_parquet
from faultwatch.data.ts_format import read_sktime_ts
from faultwatch.errors import DataError
from faultwatch.paths import display_path, resolve


def bundled_folder() -> Path:
    """The data sets inside the installed sktime wheel (found without importing sktime)."""
    try:
        dist = metadata.distribution("sktime")
    except metadata.PackageNotFoundError:
        raise DataError(BUNDLED, "bundled_available", "sktime is not installed") from None
    return Path(dist.locate_file("sktime/datasets/data"))


def bundled_names() -> list[str]:
    """The sets `bundled:NAME` can read: folders with NAME_TRAIN.ts and NAME_TEST.ts."""
    folder = bundled_folder()
    return sorted(
        d.name
        for d in folder.iterdir()
        if (d / f"{d.name}_TRAIN.ts").is_file() and (d / f"{d.name}_TEST.ts").is_file()
    )


def bundled_set(source: str = BUNDLED) -> pd.DataFrame:
    """`bundled:NAME` (PLAID; BasicMotions, six channels; ...): NAME's train and test files from
    inside the installed sktime wheel (no import, no network), in that order."""
    name = source.removeprefix(BUNDLED_PREFIX)
    folder = bundled_folder() / name
    if not name or not (folder / f"{name}_TRAIN.ts").is_file():
        known = ", ".join(f"{BUNDLED_PREFIX}{n}" for n in bundled_names())
        raise DataError(source, "bundled_available", f"no such bundled data set; known: {known}")
    parts = [
        read_sktime_ts(folder / f"{name}_{s}.ts", id_prefix=f"{name}_{s}")
        for s in ("TRAIN", "TEST")
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


def _wanted(values: object) -> set[str]:
    """A filter's value(s) as text (numbers as written: 1 and 1.0 are '1' and '1.0')."""
    items = values if isinstance(values, list) else [values]
    return {str(v) for v in items}


def filter_rows(df: pd.DataFrame, where: dict[str, object] | None, file: str) -> pd.DataFrame:
    """The rows of a read source whose `label` matches `where` (the only column every
    reader keeps); a Parquet source's other columns were filtered while it was read."""
    if not where:
        return df
    unknown = sorted(set(where) - {"label"})
    if unknown:
        raise DataError(
            file,
            "filter_column",
            f"data.filter names {', '.join(unknown)}: only a Parquet source keeps columns "
            "besides the signal and its label (this file's columns: label)",
        )
    kept = df[df["label"].astype(str).isin(_wanted(where["label"]))]
    if kept.empty:
        raise DataError(
            file, "filter_matches", f"no row has label in {sorted(_wanted(where['label']))}"
        )
    return kept


def read_source(
    source: str, root: Path | None = None, where: dict[str, object] | None = None
) -> pd.DataFrame:
    """Read `params.yaml:data.source`: `bundled:NAME` (a set inside the sktime wheel, PLAID
    by default) or a path to .tsv, .csv, .ts or .parquet.

    Messages name the file relative to the project root (as given when it lies outside)."""
    if source.startswith(BUNDLED_PREFIX):
        df = filter_rows(bundled_set(source), where, source)
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
    if reader is read_parquet:
        df = read_parquet(path, file=file, where=where)
    else:
        df = filter_rows(reader(path, file=file), where, file)
    df.attrs["source"] = file
    return df
