"""The cheap per-signal features the service logs beside each prediction, and that the monitor
computes the same way on the training data (the drift reference): one copy only.

Amplitude statistics of the raw signal (`rms`, `crest`, `kurtosis`; `mean` and `std` are in the
log's input summary already) and the spectrum of the resampled, normalised signal: the dominant
frequency (cycles per signal) and the share of energy in 4 equal frequency bands.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from faultwatch.preprocess import EPS, to_matrix

FEATURE_LENGTH = 256  # signals are resampled to this many points for the spectrum
BANDS = 4
STATS = ("rms", "crest", "kurtosis")
FEATURES: tuple[str, ...] = (*STATS, "dominant_freq", *(f"band_{i}" for i in range(BANDS)))


def monitor_features(signals: Iterable[np.ndarray]) -> np.ndarray:
    """(n, len(FEATURES)) float64, columns in FEATURES order. Non-finite values must have been
    refused before (the service's schema does): a signal here is finite and non-empty."""
    signals = [np.asarray(s, dtype="float64") for s in signals]
    if not signals:
        return np.zeros((0, len(FEATURES)))
    stats = np.empty((len(signals), len(STATS)))
    for i, v in enumerate(signals):
        rms = float(np.sqrt(np.mean(v * v)))
        z = (v - v.mean()) / max(float(v.std()), EPS)
        stats[i] = (rms, float(np.abs(v).max()) / max(rms, EPS), float(np.mean(z**4)))
    x = to_matrix(signals, FEATURE_LENGTH).astype("float64")
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2
    power[:, 0] = 0.0  # DC is zero after normalising
    dominant = power.argmax(axis=1).astype("float64")  # 0 for a constant signal
    split = np.array_split(np.arange(1, power.shape[1]), BANDS)  # as evaluate's fft bands
    bands = np.stack([power[:, b].sum(axis=1) for b in split], axis=1)
    bands /= np.maximum(bands.sum(axis=1, keepdims=True), EPS)
    return np.column_stack([stats, dominant, bands])


def features_dict(signal: np.ndarray) -> dict[str, float]:
    """One signal's features by name."""
    return dict(zip(FEATURES, monitor_features([signal])[0].tolist(), strict=True))
