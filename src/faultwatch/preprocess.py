"""The signal transform shared by training, evaluation, EDA and serving: one copy only."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EPS = 1e-8


def resample(values: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of one signal onto `length` evenly spaced points."""
    v = np.asarray(values, dtype="float64")
    if len(v) == length:
        return v.copy()
    if len(v) == 1:
        return np.full(length, v[0])
    return np.interp(np.linspace(0, len(v) - 1, length), np.arange(len(v)), v)


def normalise(x: np.ndarray) -> np.ndarray:
    """Per-signal z-score along the last axis; a constant signal becomes zeros."""
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / np.maximum(std, EPS)


def to_matrix(signals: Iterable[np.ndarray], length: int, norm: bool = True) -> np.ndarray:
    """Signals of any lengths -> float32 array (n, length), resampled and normalised."""
    rows = [resample(s, length) for s in signals]
    x = np.stack(rows) if rows else np.zeros((0, length))
    return (normalise(x) if norm else x).astype("float32")
