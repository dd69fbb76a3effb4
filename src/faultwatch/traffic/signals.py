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
        if self.fault_share is not None:
            parts.append(f"fault share {self.fault_share:.0%}")
        return ", ".join(parts) or "none"


def drift_signal(values: np.ndarray, d: Drift, rng: np.random.Generator) -> np.ndarray:
    """One signal with the drift `d` applied (a new array; `values` is left alone)."""
    x = np.asarray(values, dtype="float64")
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


def read_signals_file(path: Path, fault_label: str | None = None) -> Signals:
    """A Parquet file with a `values` list column, and `y` (1 = fault) or `label` with
    `fault_label` for the true classes. The labels posted are the served model's class names:
    HEALTHY_LABEL, and the fault class (the `label` of y == 1 rows, or `fault_label`)."""
    import pandas as pd

    if not path.is_file():
        raise TrafficError(f"{path}: no such file (--signals; `dvc repro` writes the test split)")
    try:
        df = pd.read_parquet(path)
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
    return Signals(values, y, labels)


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
