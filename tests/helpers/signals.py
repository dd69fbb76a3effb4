"""The synthetic signals of the tests: noisy sines (healthy) and sines with a burst (fault).

- `make_signals`: a raw labelled set (pump_a, pump_b, fault; 48-80 samples, a burst of +3), what
  the raw-data writers (datafiles) and the test projects' data/raw/tiny.tsv hold;
- `burst_sine`: one signal like the prepared splits' (60-120 samples, a burst of +4), the one
  generator behind `make_split` (a split in prepare's schema) and `drifting_signals` (the
  monitor's production, with a drift).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FAULT_LABEL = "F"


def make_signals(n_healthy: int = 40, n_fault: int = 12, seed: int = 0) -> pd.DataFrame:
    """Healthy: noisy sines of two kinds; fault: a sine with a burst. Lengths vary (48-80)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_healthy + n_fault):
        fault = i >= n_healthy
        n = int(rng.integers(48, 81))
        t = np.linspace(0, 4 * np.pi, n)
        label = "fault" if fault else ("pump_a" if i % 2 else "pump_b")
        v = np.sin(t * (1.0 if i % 2 else 2.0)) + 0.1 * rng.standard_normal(n)
        if fault:
            v[n // 3 : n // 3 + 8] += 3.0
        rows.append((f"s{i}", label, v.round(6)))
    return pd.DataFrame(rows, columns=["id", "label", "values"])


def burst_sine(rng: np.random.Generator, fault: bool) -> np.ndarray:
    """A noisy sine of 60-120 samples (period 8-14); a fault adds 4.0 to 8 samples in a row."""
    length = int(rng.integers(60, 120))
    t = np.arange(length)
    values = np.sin(2 * np.pi * t / rng.uniform(8, 14)) + rng.normal(0, 0.1, length)
    if fault:
        start = int(rng.integers(10, length - 20))
        values[start : start + 8] += 4.0
    return values


def make_split(n: int, n_fault: int, seed: int, prefix: str) -> pd.DataFrame:
    """`n` signals in prepare's schema, `n_fault` of them faults (FAULT_LABEL) spread evenly;
    the healthy ones labelled "0", "1" or "2"."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        fault = i % max(n // n_fault, 1) == 0 and sum(r["y"] for r in rows) < n_fault
        values = burst_sine(rng, fault)
        rows.append(
            {
                "id": f"{prefix}:{i}",
                "label": FAULT_LABEL if fault else str(int(rng.integers(0, 3))),
                "y": int(fault),
                "length": len(values),
                "source_row": i,
                "values": values,
            }
        )
    return pd.DataFrame(rows)


def write_splits(root: Path, sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, Path]:
    """data/prepared/{train,val,test}.parquet under `root`, in the prepare stage's schema."""
    from faultwatch.augment import to_arrow
    from faultwatch.data.prepare import write_parquet_atomic

    sizes = sizes or {"train": (40, 6), "val": (20, 4), "test": (20, 4)}
    tables = {
        name: to_arrow(make_split(n, k, seed=i, prefix=name))
        for i, (name, (n, k)) in enumerate(sizes.items())
    }
    return write_parquet_atomic(tables, root / "data" / "prepared")


def drifting_signals(
    n: int,
    fault_rate: float,
    rng: np.random.Generator,
    offset: float = 0.0,
    gain: float = 1.0,
    noise: float = 0.0,
) -> tuple[list[np.ndarray], np.ndarray]:
    """`n` signals and their classes (1 = fault, drawn at `fault_rate`), drifted: `gain` times
    the signal plus `offset`, plus noise of std `noise`."""
    y = (rng.random(n) < fault_rate).astype(int)
    signals = []
    for fault in y:
        v = gain * burst_sine(rng, fault) + offset
        if noise:
            v = v + rng.normal(0, noise, len(v))
        signals.append(v)
    return signals, y


AXES = ("x", "y", "z")


def three_axis_signals(n_healthy: int = 24, n_fault: int = 10, seed: int = 0) -> pd.DataFrame:
    """A three-axis accelerometer set (id, label, values of shape (3, samples); 40-72 samples):
    x, y and z vibrate at one frequency with phase shifts; a fault ("fault") is a burst of +3
    on z only, x and y are unchanged. Healthy signals are "ok"."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_healthy + n_fault):
        fault = i >= n_healthy
        n = int(rng.integers(40, 73))
        t = np.linspace(0, 4 * np.pi, n)
        axes = np.stack([np.sin(t + phase) for phase in (0.0, 0.5, 1.0)])
        axes = axes + 0.1 * rng.standard_normal(axes.shape)
        if fault:
            axes[2, n // 3 : n // 3 + 6] += 3.0
        rows.append((f"m{i}", "fault" if fault else "ok", axes.round(6)))
    return pd.DataFrame(rows, columns=["id", "label", "values"])


def phase_relation_signals(
    n_healthy: int = 60, n_fault: int = 30, seed: int = 0, length: int = 128
) -> pd.DataFrame:
    """A three-axis set whose fault shows only in the relation between two axes: y leads x by
    0.8 rad in a healthy signal and lags it by 0.8 rad in a fault ("fault"). Every axis alone
    is a sine of random phase and frequency (nothing to tell the classes apart), and the mean
    of the axes is too (its amplitude depends on cos(0.4), the same for both); z is a sine of
    independent random phase. Values (3, length); healthy signals are "ok"."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_healthy + n_fault):
        fault = i >= n_healthy
        cycles = rng.uniform(3, 6)
        phase, z_phase = rng.uniform(0, 2 * np.pi, 2)
        t = np.linspace(0, 2 * np.pi * cycles, length)
        delta = -0.8 if fault else 0.8
        axes = np.stack([np.sin(t + phase), np.sin(t + phase + delta), np.sin(t + z_phase)])
        axes = axes + 0.05 * rng.standard_normal(axes.shape)
        rows.append((f"p{i}", "fault" if fault else "ok", axes.round(6)))
    return pd.DataFrame(rows, columns=["id", "label", "values"])


FLEET_ASSETS = ("P-100", "P-200", "F-300")


def _fleet_wave(asset: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """One healthy cycle train of `asset`: a waveform that is not symmetric in time."""
    cycles = rng.uniform(3, 5)
    phase = rng.uniform(0, 1)
    u = (np.linspace(0, cycles, n) + phase) % 1.0  # position within each cycle
    if asset == "P-100":  # a sawtooth: a slow rise, a sudden drop
        return u - 0.5
    if asset == "P-200":  # impacts: a sudden rise, a slow exponential decay
        return np.exp(-5 * u) - 0.2
    return 0.8 - np.exp(-4 * u)  # F-300, a fan's load cycle: a quick climb that levels off


def fleet_signals(per_asset: int = 40, faults: int = 12, seed: int = 0) -> pd.DataFrame:
    """A small fleet in one table (id, label, asset_type, values; 48-80 samples): three asset
    types, each with its own healthy signature (P-100 a sawtooth, P-200 impacts that decay,
    F-300 a climb that levels off) whose fault is the same waveform running backwards in time (a
    reversed sawtooth, impacts that build up, a slow climb that ends in a jump). Reversal keeps every per-signal
    statistic and the FFT's band energies: the classical baseline sees no difference, a CNN
    that reads the shape does. Each asset type has `per_asset` signals, `faults` of them
    faults ("fault"; else "ok")."""
    rng = np.random.default_rng(seed)
    rows = []
    for asset in FLEET_ASSETS:
        for i in range(per_asset):
            fault = i >= per_asset - faults
            n = int(rng.integers(48, 81))
            x = _fleet_wave(asset, n, rng)
            if fault:
                x = x[::-1].copy()
            x = x + 0.03 * rng.standard_normal(n)
            rows.append((f"{asset}-{i}", "fault" if fault else "ok", asset, x.round(6)))
    return pd.DataFrame(rows, columns=["id", "label", "asset_type", "values"])


def sawtooth_signals(n_healthy: int = 45, n_fault: int = 15, seed: int = 11) -> pd.DataFrame:
    """Univariate signals (id, label, values; 48-80 samples) whose fault only a model of the
    shape sees: a healthy signal is a sawtooth (a slow rise, a sudden drop), a fault ("fault")
    the same sawtooth running backwards. Every per-signal statistic and FFT band energy is the
    same for both, so the classical baseline is near chance and a tiny CNN wins the gate."""
    df = fleet_signals(per_asset=n_healthy + n_fault, faults=n_fault, seed=seed)
    return df[df["asset_type"] == "P-100"].drop(columns="asset_type").reset_index(drop=True)


def amplitude_signals(n_healthy: int = 40, n_fault: int = 12, seed: int = 0) -> pd.DataFrame:
    """make_signals' layout (id, label, values; 48-80 samples; healthy "pump_a" / "pump_b"),
    but a fault ("fault") is the healthy sine, noise and all, 2.5 times as large. The CNN
    z-scores every signal, so it sees no difference; the classical model's amplitude features
    (std, max, rms) see nothing else: the forest wins."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_healthy + n_fault):
        fault = i >= n_healthy
        n = int(rng.integers(48, 81))
        t = np.linspace(0, 4 * np.pi, n) + rng.uniform(0, 2 * np.pi)
        label = "fault" if fault else ("pump_a" if i % 2 else "pump_b")
        v = np.sin(t * (1.0 if i % 2 else 2.0)) + 0.1 * rng.standard_normal(n)
        rows.append((f"a{i}", label, (v * (2.5 if fault else 1.0)).round(6)))
    return pd.DataFrame(rows, columns=["id", "label", "values"])
