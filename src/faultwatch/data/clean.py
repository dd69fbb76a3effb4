"""What `prepare` may change in the signals it read: gaps (`data.missing`) and length
(`data.crop_length`). Each step returns a new frame and what it did, for prepare.json."""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING_COUNTS = ("signals_interpolated", "samples_filled", "samples_trimmed", "signals_dropped")


def interpolate_gaps(values: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(signal, samples filled, samples trimmed): NaN between two observed samples is filled
    linearly; NaN before the first or after the last observed sample is trimmed (not invented).
    A signal with an infinite value, or with no observed sample, is returned unchanged for
    validation to reject."""
    v = np.asarray(values, dtype="float64")
    gaps = np.isnan(v)
    if not gaps.any() or np.isinf(v).any() or gaps.all():
        return v, 0, 0
    seen = np.flatnonzero(~gaps)
    lo, hi = int(seen[0]), int(seen[-1])
    inner = v[lo : hi + 1].copy()
    fill = np.isnan(inner)
    t = np.arange(len(inner))
    inner[fill] = np.interp(t[fill], t[~fill], inner[~fill])
    return inner, int(fill.sum()), len(v) - len(inner)


def handle_missing(df: pd.DataFrame, mode: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply `data.missing` to the signals' NaN: `error` leaves them (validation fails),
    `interpolate` fills them, `drop` removes the signals that hold any."""
    counts = dict.fromkeys(MISSING_COUNTS, 0)
    if mode == "error":
        return df, counts
    has_gap = df["values"].map(lambda v: bool(np.isnan(v).any()) and not np.isinf(v).any())
    if mode == "drop":
        counts["signals_dropped"] = int(has_gap.sum())
        return df[~has_gap], counts
    if mode != "interpolate":
        raise ValueError(f"unknown data.missing mode {mode!r}")
    out = df.copy()
    for i in df.index[has_gap]:
        filled, n_filled, n_trimmed = interpolate_gaps(df.at[i, "values"])
        out.at[i, "values"] = filled
        counts["signals_interpolated"] += int(n_filled + n_trimmed > 0)
        counts["samples_filled"] += n_filled
        counts["samples_trimmed"] += n_trimmed
    return out, counts


def crop_signals(df: pd.DataFrame, length: int | None) -> pd.DataFrame:
    """Keep the first `length` samples of every signal (validation has made sure that each one
    is at least that long); None keeps the signals as they are."""
    if length is None:
        return df
    return df.assign(values=df["values"].map(lambda v: np.asarray(v[:length])))
