"""sktime/UEA `.ts` files: header lines (`#` comments, `@` keys), then one signal a line after
`@data`: `v1,v2,...:label` (univariate) or `x1,x2,...:y1,y2,...:z1,z2,...:label` (several
dimensions, `@univariate false` / `@dimensions N`).

A file is multichannel when its header says `@univariate false` or `@dimensions` above 1, or
its rows hold more than one dimension; the channels are named dim_0, dim_1... as sktime names
them (the format has no names). Signals may differ in length (`@equalLength false`), the
dimensions of one signal may not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.data.channels import channels_mismatch, default_names, stack_channels
from faultwatch.data.text import floats, signal_frame, text_lines
from faultwatch.errors import DataError


@dataclass
class _Header:
    labels: bool = True
    multivariate: bool = False
    dimensions: int | None = None
    in_data: bool = False


def _header_line(line: str, row: int, file: str, head: _Header) -> None:
    """Read one `@key value` line into `head`."""
    key, *rest = line.split()
    key = key.lower()
    value = rest[0].lower() if rest else ""
    if key == "@classlabel" and value == "false":
        head.labels = False
    elif key == "@univariate" and value == "false":
        head.multivariate = True
    elif key == "@dimensions":
        if not value.isdigit() or int(value) < 1:
            raise DataError(
                file, "ts_header", f"@dimensions {' '.join(rest)}: expected a count >= 1", [row]
            )
        head.dimensions = int(value)
    head.in_data = head.in_data or key == "@data"


def _signal(dims: list[str], names: tuple[str, ...] | None, file: str, row: int) -> np.ndarray:
    """One row's values: a 1-D array (univariate, `names` None) or (channels, samples)."""
    if names is None:
        return floats(dims[0].split(","), file, row)
    arrays = [
        floats(d.split(","), file, row, f" (channel {name})")
        for name, d in zip(names, dims, strict=True)
    ]
    return stack_channels(arrays, names, file, row)


def read_sktime_ts(
    path: Path, file: str | None = None, id_prefix: str | None = None
) -> pd.DataFrame:
    """sktime/UEA `.ts`: univariate (1-D values) or multichannel (2-D values, attrs channels)."""
    file, prefix = file or str(path), id_prefix or path.stem
    head = _Header()
    expected: int | None = None  # dimensions a row: @dimensions, else the first row's
    first_row = 0
    names: tuple[str, ...] | None = None
    records = []
    for n, line in text_lines(path, file):
        s = line.strip()
        if s.startswith("#"):
            continue
        if s.startswith("@"):
            _header_line(s, n, file, head)
            continue
        if not head.in_data:
            raise DataError(file, "ts_header", "data before the @data line", [n])
        if not head.labels:
            raise DataError(file, "label_present", "@classLabel is false: no labels")
        *dims, label = s.split(":")
        if not dims:
            raise DataError(
                file,
                "ts_row",
                "expected 'values:label' (dimensions separated by ':', the label last), "
                "found 1 field",
                [n],
            )
        if expected is None:
            expected, first_row = head.dimensions or len(dims), n
            if head.multivariate or expected > 1:
                names = default_names(expected)
        if len(dims) != expected:
            where = f"@dimensions {expected}" if head.dimensions else f"row {first_row}, the first"
            raise channels_mismatch(file, [n], len(dims), default_names(expected), where)
        label = label.strip()
        if not label:
            raise DataError(file, "label_present", "the label after ':' is empty", [n])
        records.append((n, f"{prefix}:{n}", label, _signal(dims, names, file, n)))
    df = signal_frame(records)
    if df.empty:
        raise DataError(file, "not_empty", "no signals after the @data line")
    if names is not None:
        df.attrs["channels"] = names
    return df
