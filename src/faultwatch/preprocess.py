"""The signal transform shared by training, evaluation, EDA and serving: one copy only.

A signal is a 1-D array (univariate) or a 2-D array (channels, samples). Each channel is
resampled to the model's length and z-scored on its own (per channel: a quiet axis is not
drowned by a loud one, and a fault's channel keeps its own scale of change)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EPS = 1e-8


def resample(values: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of one signal onto `length` evenly spaced points (each channel of
    a (channels, samples) signal on its own)."""
    v = np.asarray(values, dtype="float64")
    if v.ndim == 2:
        return np.stack([resample(c, length) for c in v]) if len(v) else np.zeros((0, length))
    if len(v) == length:
        return v.copy()
    if len(v) == 1:
        return np.full(length, v[0])
    return np.interp(np.linspace(0, len(v) - 1, length), np.arange(len(v)), v)


def normalise(x: np.ndarray) -> np.ndarray:
    """Z-score along the last axis (per signal, per channel); a constant channel becomes zeros."""
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / np.maximum(std, EPS)


def to_matrix(
    signals: Iterable[np.ndarray], length: int, norm: bool = True, n_channels: int | None = None
) -> np.ndarray:
    """Signals of any lengths -> float32 array (n, length), resampled and normalised; signals
    of shape (channels, samples) -> (n, channels, length). `n_channels` shapes an empty result
    (None: univariate)."""
    rows = [resample(s, length) for s in signals]
    empty = (0, length) if n_channels is None else (0, n_channels, length)
    x = np.stack(rows) if rows else np.zeros(empty)
    return (normalise(x) if norm else x).astype("float32")
