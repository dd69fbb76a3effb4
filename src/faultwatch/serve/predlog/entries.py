"""What the prediction log holds, as Python values: the entry the service appends, its errors,
and the byte encodings of embeddings and raw signals (the same for SQLite and PostgreSQL)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faultwatch.errors import FaultwatchError
from faultwatch.settings import mask_url as mask_url  # callers import it from here too


class PredictionLogError(FaultwatchError):
    """Rows could not be committed to (or read from) the prediction log; names the log."""


class FeedbackError(FaultwatchError):
    """A label refused before anything was written: the HTTP status, the rule (`reason`), the
    key path of the bad item (`loc`, e.g. ["labels", 3, "prediction_id"]) and a message naming
    the prediction_id and the rule. `index` is the bad item's position in the request."""

    def __init__(self, status: int, reason: str, loc: list[Any], msg: str, index: int = 0):
        super().__init__(msg)
        self.status, self.reason, self.loc, self.msg, self.index = status, reason, loc, msg, index


@dataclass(frozen=True)
class InputSummary:
    """Length and moments of a raw signal (its finite values), and how many were not finite.
    A (channels, samples) signal: `n` is the samples per channel, the rest over all channels."""

    n: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    n_nonfinite: int

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> InputSummary:
        x = np.asarray(values, dtype="float64")
        n = int(x.shape[-1]) if x.ndim == 2 else int(x.size)
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            return cls(n, None, None, None, None, int(x.size))
        return cls(
            n=n,
            mean=float(finite.mean()),
            std=float(finite.std()),
            min=float(finite.min()),
            max=float(finite.max()),
            n_nonfinite=int(x.size - finite.size),
        )


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields, not entries
class LoggedPrediction:
    """One answered prediction. `probability` is the model's, also for a signal answered
    "unscored" (its `label`; `is_fault` False) because of its `quality`. `features` in
    faultwatch.features.FEATURES order (a multichannel signal's: channel-major, the columns
    `channel_feature_names(FEATURES, channels)`), `embedding` the model's penultimate layer,
    `signal` the raw signal only when sampled (FAULTWATCH_LOG_SIGNALS; (channels, samples) for
    a multichannel model); None: not logged (NULL, or no signals row). `channels`: the names of
    a multichannel signal's rows, in the model's order; None for a univariate one."""

    endpoint: str
    model_version: str
    summary: InputSummary
    probability: float
    label: str
    is_fault: bool
    threshold: float
    latency_ms: float
    batch_size: int
    prediction_id: str | None = None
    quality: str | None = None  # faultwatch.signal_quality: ok or the rule; None: not checked
    request_id: str | None = None
    role: str = "live"
    features: Sequence[float] | None = None
    embedding: np.ndarray | None = None
    signal: np.ndarray | None = None
    channels: tuple[str, ...] | None = None
    model: str | None = None  # the group (a fleet bento's model name; the store name otherwise)


def encode_embedding(embedding: np.ndarray | Sequence[float]) -> bytes:
    """float32 little-endian bytes of a 1-D embedding."""
    return np.asarray(embedding, dtype="<f4").ravel().tobytes()


def decode_embedding(data: bytes) -> np.ndarray:
    """The float32 vector `encode_embedding` wrote."""
    return np.frombuffer(data, dtype="<f4")


def encode_signal(signal: np.ndarray | Sequence[float]) -> bytes:
    """zlib of the float32 little-endian bytes (half of float64 already; a (channels, samples)
    signal flattened channel-major: `decode_signal(data, channels)` reshapes it). zlib saves
    only about 7 % on float32 signals, at level 1 as at 6 (80 us per 1 000 points); level 1,
    as this runs on the request path."""
    return zlib.compress(np.asarray(signal, dtype="<f4").ravel().tobytes(), 1)


def decode_signal(data: bytes, channels: int | None = None) -> np.ndarray:
    """The signal `encode_signal` wrote, as float64: (samples,), or (channels, samples) when
    `channels` is given (the signals row's `channels`; None: univariate)."""
    x = np.frombuffer(zlib.decompress(data), dtype="<f4").astype("float64")
    return x if channels is None else x.reshape(int(channels), -1)
