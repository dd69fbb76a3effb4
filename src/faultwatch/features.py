"""Per-signal features, one copy for everyone: the cheap set the service logs beside each
prediction and the monitor computes on the training data (its drift reference), and the wider
set the classical baseline learns from.

Both are amplitude statistics of the raw signal plus the share of spectral energy in equal
frequency bands of the resampled, normalised signal; they share the computation, so a feature
with the same name has the same value (bit for bit) in both sets.

A multichannel signal (channels, samples) gets every feature per channel, named
`feature[channel]` (`rms[x]`, `band_2[z]`), channel by channel in the model's order: the
columns `channel_feature_names` gives. A univariate signal's names are the plain ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from faultwatch.preprocess import EPS, to_matrix

# --- the monitor's set: logged by the service, compared for drift ---------------------------------

FEATURE_LENGTH = 256  # signals are resampled to this many points for the spectrum
BANDS = 4
STATS = ("rms", "crest", "kurtosis")
FEATURES: tuple[str, ...] = (*STATS, "dominant_freq", *(f"band_{i}" for i in range(BANDS)))

# --- the classical baseline's set ----------------------------------------------------------------

FEATURE_STATS = (
    "mean", "std", "min", "max", "ptp", "q05", "q25", "median", "q75", "q95",
    "rms", "crest", "skew", "kurtosis", "zero_crossings", "roughness", "log_length",
)  # fmt: skip


def _amplitude(v: np.ndarray) -> tuple[np.ndarray, float, float, float, np.ndarray]:
    """centred signal, std, rms, crest factor and the standardised signal (for the moments)."""
    centred = v - v.mean()
    std = float(v.std())
    rms = math.sqrt(float(np.mean(v * v)))
    return centred, std, rms, float(np.abs(v).max()) / max(rms, EPS), centred / max(std, EPS)


def _power(signals: list[np.ndarray], length: int) -> np.ndarray:
    """Power spectrum (n, length // 2 + 1) of the resampled, normalised signals, DC set to 0
    (it is zero after normalising, up to rounding)."""
    x = to_matrix(signals, length).astype("float64")
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2
    power[:, 0] = 0.0
    return power


def _band_shares(power: np.ndarray, bands: int) -> np.ndarray:
    """Share of the (non-DC) energy in `bands` equal frequency bands; zeros for no energy."""
    split = np.array_split(np.arange(1, power.shape[1]), bands)
    energy = np.stack([power[:, b].sum(axis=1) for b in split], axis=1)
    energy /= np.maximum(energy.sum(axis=1, keepdims=True), EPS)
    return energy


def channel_feature_names(names: Iterable[str], channels: Iterable[str] | None) -> list[str]:
    """`names` as they are (univariate), or each per channel: `name[channel]`, channel-major."""
    names = list(names)
    if channels is None:
        return names
    return [f"{name}[{channel}]" for channel in channels for name in names]


def _per_channel(signals: list[np.ndarray], compute, width: int) -> np.ndarray:
    """`compute` (1-D signals -> (n, width)) on every channel of (channels, samples) signals,
    side by side channel-major: (n, channels x width)."""
    n_channels = signals[0].shape[0]
    parts = [compute([s[k] for s in signals]) for k in range(n_channels)]
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(signals), 0))


def monitor_features(signals: Iterable[np.ndarray]) -> np.ndarray:
    """(n, len(FEATURES)) float64, columns in FEATURES order; for (channels, samples) signals
    (n, channels x len(FEATURES)), columns `channel_feature_names(FEATURES, channels)`.
    Non-finite values must have been refused before (the service's schema does): a signal
    here is finite and non-empty."""
    signals = [np.asarray(s, dtype="float64") for s in signals]
    if signals and signals[0].ndim == 2:
        return _per_channel(signals, monitor_features, len(FEATURES))
    if not signals:
        return np.zeros((0, len(FEATURES)))
    stats = np.empty((len(signals), len(STATS)))
    for i, v in enumerate(signals):
        _, _, rms, crest, z = _amplitude(v)
        stats[i] = (rms, crest, float(np.mean(z**4)))
    power = _power(signals, FEATURE_LENGTH)
    dominant = power.argmax(axis=1).astype("float64")  # 0 for a constant signal
    return np.column_stack([stats, dominant, _band_shares(power, BANDS)])


def features_dict(signal: np.ndarray, channels: Iterable[str] | None = None) -> dict[str, float]:
    """One signal's monitor features by name (per channel, `rms[x]`, for a (channels, samples)
    signal: `channels` names its rows, dim_0... when not given)."""
    signal = np.asarray(signal, dtype="float64")
    if signal.ndim == 2 and channels is None:
        channels = [f"dim_{k}" for k in range(signal.shape[0])]
    names = channel_feature_names(FEATURES, channels if signal.ndim == 2 else None)
    return dict(zip(names, monitor_features([signal])[0].tolist(), strict=True))


def _baseline_stats(v: np.ndarray) -> list[float]:
    """One signal's FEATURE_STATS, in that order."""
    centred, std, rms, crest, z = _amplitude(v)
    q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
    return [
        v.mean(), std, v.min(), v.max(), np.ptp(v), *q, rms, crest,
        float(np.mean(z**3)), float(np.mean(z**4)),
        float(np.mean(np.diff(np.signbit(centred)) != 0)) if len(v) > 1 else 0.0,
        float(np.mean(np.abs(np.diff(v)))) / max(std, EPS) if len(v) > 1 else 0.0,
        math.log(len(v)),
    ]  # fmt: skip


def signal_features(
    signals: Iterable[np.ndarray], feature_length: int = 256, fft_bands: int = 8
) -> np.ndarray:
    """The classical baseline's features: amplitude statistics of the raw signal, its length,
    and the share of spectral energy in `fft_bands` equal frequency bands of the resampled,
    normalised signal. Rows follow `signals`; columns follow `feature_names` (per channel,
    channel-major, for (channels, samples) signals)."""
    signals = [np.asarray(s, dtype="float64") for s in signals]
    if signals and signals[0].ndim == 2:
        width = len(FEATURE_STATS) + fft_bands
        compute = lambda part: signal_features(part, feature_length, fft_bands)  # noqa: E731
        return _per_channel(signals, compute, width)
    rows = [_baseline_stats(v) for v in signals]
    stats = np.asarray(rows, dtype="float64").reshape(len(signals), len(FEATURE_STATS))
    energy = _band_shares(_power(signals, feature_length), fft_bands)
    return np.concatenate([stats, energy], axis=1)


def feature_names(fft_bands: int = 8, channels: Iterable[str] | None = None) -> list[str]:
    """The columns of `signal_features` (for signals with these `channels`)."""
    names = [*FEATURE_STATS, *(f"fft_band_{i}" for i in range(fft_bands))]
    return channel_feature_names(names, channels)
