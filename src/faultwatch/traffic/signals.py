"""What simulate-traffic sends: the signals read from a Parquet file, the drift applied to each,
and another class mix by resampling (see faultwatch.traffic for the units)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faultwatch.errors import FaultwatchError

HEALTHY_LABEL = "healthy"  # a served model's class_names[0] (faultwatch.model.io)


class TrafficError(FaultwatchError):
    """Bad input for simulate-traffic (a file, a column, an option that cannot apply)."""


@dataclass(frozen=True)
class Drift:
    """What is done to each replayed signal (see the module docstring for the units)."""

    scale: float = 1.0
    offset: float = 0.0
    noise: float = 0.0
    time_shift: float = 0.0
    fault_share: float | None = None
    # a multichannel signal's channel the drift applies to; None: every channel
    channel: str | None = None

    def describe(self) -> str:
        parts = []
        if self.time_shift:
            parts.append(f"time shift {self.time_shift:g} of the length")
        if self.scale != 1.0:
            parts.append(f"scale x{self.scale:g}")
        if self.offset:
            parts.append(f"offset {self.offset:+g} std")
        if self.noise:
            parts.append(f"noise {self.noise:g} std")
        drifted = ", ".join(parts)
        if drifted and self.channel is not None:
            drifted += f" on channel {self.channel}"
        if self.fault_share is not None:
            drifted += (", " if drifted else "") + f"fault share {self.fault_share:.0%}"
        return drifted or "none"

    def check_channel(self, channels: tuple[str, ...] | None) -> None:
        """TrafficError unless `channel` is None or one of the signals' `channels`."""
        if self.channel is None or (channels is not None and self.channel in channels):
            return
        have = f"their channels are {', '.join(channels)}" if channels else "they are univariate"
        raise TrafficError(f"--drift-channel {self.channel}: not a channel of the signals ({have})")


def drift_signal(
    values: np.ndarray,
    d: Drift,
    rng: np.random.Generator,
    channels: tuple[str, ...] | None = None,
) -> np.ndarray:
    """One signal with the drift `d` applied (a new array; `values` is left alone). A
    (channels, samples) signal, its rows named `channels`: each channel drifted on its own
    (its own std), every channel or only `d.channel`."""
    x = np.asarray(values, dtype="float64")
    if x.ndim == 2:
        names = channels or tuple(f"dim_{k}" for k in range(len(x)))
        return np.stack(
            [
                _drift_1d(row, d, rng) if d.channel in (None, name) else row.copy()
                for name, row in zip(names, x, strict=True)
            ]
        )
    return _drift_1d(x, d, rng)


def _drift_1d(x: np.ndarray, d: Drift, rng: np.random.Generator) -> np.ndarray:
    std = float(x.std())
    if d.time_shift:
        x = np.roll(x, int(round(d.time_shift * len(x))))
    x = x * d.scale
    if d.offset:
        x = x + d.offset * std
    if d.noise:
        x = x + rng.normal(0.0, d.noise * std, size=len(x))
    return x


@dataclass
class Signals:
    """The signals to replay, their fault flags (None when the file has no labels) and the
    label /feedback takes for each."""

    values: list[np.ndarray]
    y: np.ndarray | None
    labels: list[str] | None
    # a multichannel file's channel names, in order ((channels, samples) values); None: univariate
    channels: tuple[str, ...] | None = None


def read_signals_file(path: Path, fault_label: str | None = None) -> Signals:
    """A Parquet file with a `values` list column (a prepared split, multichannel too: read
    with faultwatch.splits.read_split), and `y` (1 = fault) or `label` with `fault_label` for
    the true classes. The labels posted are the served model's class names:
    HEALTHY_LABEL, and the fault class (the `label` of y == 1 rows, or `fault_label`)."""
    import pandas as pd

    from faultwatch.splits import frame_channels, read_split

    if not path.is_file():
        raise TrafficError(f"{path}: no such file (--signals; `dvc repro` writes the test split)")
    try:
        df = read_split(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise TrafficError(f"{path}: not readable as Parquet ({e})") from None
    if "values" not in df.columns:
        raise TrafficError(f"{path}: no 'values' column (a list of numbers per signal)")
    if df.empty:
        raise TrafficError(f"{path}: no signals")
    values = [np.asarray(v, dtype="float64") for v in df["values"]]
    y = None
    if "y" in df.columns:
        y = df["y"].astype(int).to_numpy()
    elif "label" in df.columns and fault_label is not None:
        y = (df["label"].astype(str) == str(fault_label)).astype(int).to_numpy()
    labels = None
    if y is not None:
        if fault_label is None:
            faults = df.loc[y == 1, "label"] if "label" in df.columns else pd.Series([], dtype=str)
            fault_label = str(faults.iloc[0]) if len(faults) else "fault"
        labels = [fault_label if f else HEALTHY_LABEL for f in y]
    return Signals(values, y, labels, frame_channels(df))


def resample_share(y: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Indices (as many as `y` has) drawn with replacement so that round(share * n) are
    faults; shuffled."""
    n = len(y)
    faults, healthy = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n_fault = int(round(share * n))
    if n_fault and not len(faults):
        raise TrafficError(f"--fault-share {share:g}: the signals hold no fault to draw from")
    if n - n_fault and not len(healthy):
        raise TrafficError(
            f"--fault-share {share:g}: the signals hold no healthy signal to draw from"
        )
    idx = np.concatenate(
        [
            rng.choice(faults, n_fault) if n_fault else np.array([], dtype=int),
            rng.choice(healthy, n - n_fault) if n - n_fault else np.array([], dtype=int),
        ]
    ).astype(int)
    rng.shuffle(idx)
    return idx
