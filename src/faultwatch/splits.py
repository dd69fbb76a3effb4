"""Reading a prepared split: the one place that knows how channels are stored in Parquet.

A univariate split's `values` is list<double>; a multichannel one's is list<list<double>>
(channels x samples) with the channel names, in order, under the schema metadata key
CHANNELS_KEY. Every later stage reads splits through `read_split`, so each sees the same frame:
1-D float64 arrays without `attrs`, or (channels, samples) float64 arrays with
`df.attrs["channels"]`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

# the Parquet schema metadata key that names the channels of a list<list<double>> column
CHANNELS_KEY = b"faultwatch.channels"


def split_channels(path: Path | str) -> tuple[str, ...] | None:
    """The channel names a split file records, or None for a univariate one."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(CHANNELS_KEY)
    return None if raw is None else tuple(json.loads(raw))


def read_split(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    """A prepared split (or one in its schema) as a frame: what `pd.read_parquet` gives for a
    univariate split; for a multichannel one, `values` as (channels, samples) float64 arrays
    and the names in `df.attrs["channels"]`."""
    df = pd.read_parquet(path, columns=columns)
    channels = split_channels(path)
    if channels is None:
        return df
    if "values" in df.columns:
        stacked = [np.array([np.asarray(c, dtype="float64") for c in v]) for v in df["values"]]
        df["values"] = pd.Series(stacked, index=df.index, dtype=object)
    df.attrs["channels"] = channels
    return df


def frame_channels(df: pd.DataFrame) -> tuple[str, ...] | None:
    """The frame's channels in order, or None for a univariate frame."""
    names = df.attrs.get("channels")
    return tuple(names) if names is not None else None
