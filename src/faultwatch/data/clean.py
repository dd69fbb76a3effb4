"""What `prepare` may change in the signals it read: gaps (`data.missing`) and length
(`data.crop_length`). Each step returns a new frame and what it did, for prepare.json.

A multichannel signal (channels, samples) is one signal: `drop` drops it when any channel has a
gap, `interpolate` fills each channel's inner gaps on its own and trims the same samples from
every channel (the channels stay aligned in time), the crop keeps the same samples of each."""

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


def interpolate_channels(values: np.ndarray) -> tuple[np.ndarray, int, int]:
    """`interpolate_gaps` for a (channels, samples) signal: each channel's gaps between two of
    its observed samples are filled linearly; samples before the last channel's first observed
    sample, or after the first channel's last one, are trimmed from every channel. A signal
    with an infinite value, a channel with no observed sample, or no sample observed in every
    channel is returned unchanged for validation to reject (naming the channel)."""
    v = np.asarray(values, dtype="float64")
    gaps = np.isnan(v)
    if not gaps.any() or np.isinf(v).any() or gaps.all(axis=1).any():
        return v, 0, 0
    lo = max(int(np.flatnonzero(~g)[0]) for g in gaps)
    hi = min(int(np.flatnonzero(~g)[-1]) for g in gaps)
    if lo > hi:
        return v, 0, 0
    t = np.arange(v.shape[1])
    out = v[:, lo : hi + 1].copy()
    filled = 0
    for c, g in enumerate(gaps):
        fill = g[lo : hi + 1]
        # the channel's own observed samples, inside the window or not: inner gaps only
        out[c, fill] = np.interp(t[lo : hi + 1][fill], t[~g], v[c, ~g])
        filled += int(fill.sum())
    return out, filled, v.size - out.size


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
        v = df.at[i, "values"]
        interpolate = interpolate_gaps if np.ndim(v) == 1 else interpolate_channels
        filled, n_filled, n_trimmed = interpolate(v)
        out.at[i, "values"] = filled
        counts["signals_interpolated"] += int(n_filled + n_trimmed > 0)
        counts["samples_filled"] += n_filled
        counts["samples_trimmed"] += n_trimmed
    return out, counts


def crop_signals(df: pd.DataFrame, length: int | None) -> pd.DataFrame:
    """Keep the first `length` samples of every signal (of each channel); validation has made
    sure that each one is at least that long. None keeps the signals as they are."""
    if length is None:
        return df
    return df.assign(values=df["values"].map(lambda v: np.asarray(v)[..., :length]))
