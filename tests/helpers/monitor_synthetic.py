"""Synthetic production for the monitor's tests: signals like the tiny training splits
(signals.drifting_signals: noisy sines; faults carry a burst), logged the way the contract's
`read_predictions` returns them, with the features computed by the service's own function.

A window can drift: `offset` (added to every value), `gain` (amplitude), `noise` (extra noise
std), or carry another fault rate. Probabilities are calibrated by construction: a row's fault
probability p is drawn first and its true class is Bernoulli(p), so CBPE's premise holds.

Multichannel traffic (signals.three_axis_signals: x, y, z; a fault is a burst on z) is logged
as a multichannel model's rows are: the per-channel features in `channel_features` (JSON), the
channel names in `channels`, the fixed feature columns NaN; its drift goes into the channels
`channel_window` names.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.features import FEATURES, channel_feature_names, monitor_features
from faultwatch.serve.predlog import InputSummary

from .signals import AXES, drifting_signals, three_axis_signals

FAULT, HEALTHY = "F", "healthy"
THRESHOLD = 0.5


def reference_split(n: int = 700, fault_rate: float = 0.04, seed: int = 1) -> pd.DataFrame:
    """A training split in prepare's schema (id, label, y, length, values)."""
    signals, y = drifting_signals(n, fault_rate, np.random.default_rng(seed))
    return pd.DataFrame(
        {
            "id": [f"train:{i}" for i in range(n)],
            "label": [FAULT if f else "0" for f in y],
            "y": y,
            "length": [len(v) for v in signals],
            "values": signals,
        }
    )


def calibrated_probabilities(y_hint: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Probabilities that separate well: mostly near 0 for healthy, near 1 for faults."""
    return np.where(y_hint == 1, rng.beta(6, 1.5, len(y_hint)), rng.beta(1, 40, len(y_hint)))


def logged_window(
    signals: list[np.ndarray],
    y: np.ndarray,
    rng: np.random.Generator,
    start: float = 1_700_000_000.0,
    seconds: float = 3600.0,
    version: str = "v1",
    label_share: float = 0.0,
) -> pd.DataFrame:
    """The frame `read_predictions` returns for these signals: one row per prediction, with a
    calibrated probability (the true class is drawn from it) and a `label_share` of rows
    labelled."""
    n = len(signals)
    p = calibrated_probabilities(y, rng)
    truth = (rng.random(n) < p).astype(int)  # calibrated: P(fault | p) = p
    pred = p >= THRESHOLD
    summaries = [InputSummary.of(v) for v in signals]
    frame = pd.DataFrame(
        {
            "time": np.sort(start + rng.random(n) * seconds),
            "model_version": version,
            "endpoint": "predict_batch",
            "colour": "blue",
            "role": "live",
            "prediction_id": [
                uuid.UUID(int=int(rng.integers(1 << 62)) << 64).hex for _ in range(n)
            ],
            "n": [s.n for s in summaries],
            "mean": [s.mean for s in summaries],
            "std": [s.std for s in summaries],
            "min": [s.min for s in summaries],
            "max": [s.max for s in summaries],
            "n_nonfinite": 0,
            "probability": p,
            "label": np.where(pred, FAULT, HEALTHY),
            "is_fault": pred.astype(int),
            "threshold": THRESHOLD,
            "latency_ms": rng.gamma(4.0, 2.0, n),
        }
    )
    log_features(frame, signals)
    labelled = rng.random(n) < label_share
    frame["true_label"] = pd.Series(np.where(truth == 1, FAULT, HEALTHY), dtype="object").where(
        labelled, None
    )
    frame["label_time"] = np.where(labelled, frame["time"] + 60.0, np.nan)
    return frame


def log_features(frame: pd.DataFrame, signals: list[np.ndarray]) -> None:
    """The monitor features as the log holds them: the FEATURES columns of univariate signals;
    for (channels, samples) ones NaN there, and `channels` and `channel_features` (JSON)."""
    features = monitor_features(signals)
    if np.ndim(signals[0]) == 1:
        frame[list(FEATURES)] = features
        return
    frame[list(FEATURES)] = np.nan
    names = channel_feature_names(FEATURES, AXES)
    frame["channels"] = json.dumps(list(AXES))
    frame["channel_features"] = [json.dumps(dict(zip(names, row, strict=True))) for row in features]


def three_axis(n: int, fault_rate: float, rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """`n` three-axis signals (x, y, z) in random order, faults drawn at `fault_rate`."""
    n_fault = int(rng.binomial(n, fault_rate))
    df = three_axis_signals(n - n_fault, n_fault, seed=int(rng.integers(1 << 31)))
    order = rng.permutation(n)
    return [df["values"][i] for i in order], (df["label"] == "fault").to_numpy(int)[order]


def channel_reference(n: int = 700, fault_rate: float = 0.04, seed: int = 1) -> pd.DataFrame:
    """A multichannel training split as read_split gives it: (3, samples) values, `attrs`
    channels x, y, z."""
    signals, y = three_axis(n, fault_rate, np.random.default_rng(seed))
    df = pd.DataFrame(
        {
            "id": [f"train:{i}" for i in range(n)],
            "label": np.where(y == 1, FAULT, "0"),
            "y": y,
            "length": [v.shape[1] for v in signals],
            "values": pd.Series(signals, dtype=object),
        }
    )
    df.attrs["channels"] = AXES
    return df


def channel_signals(
    n: int, seed: int, drift: dict[str, dict[str, float]] | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.random.Generator]:
    """`n` three-axis signals, their classes and the generator that drew them; `drift` per
    channel name: {"z": {"gain": 1.3, "noise": 0.3, "offset": 0.5}} changes z alone."""
    rng = np.random.default_rng(seed)
    signals, y = three_axis(n, 0.04, rng)
    index = {name: k for k, name in enumerate(AXES)}
    for name, change in (drift or {}).items():
        for v in signals:
            row = v[index[name]]
            noise = rng.normal(0, change.get("noise", 0.0), row.shape)
            v[index[name]] = change.get("gain", 1.0) * row + change.get("offset", 0.0) + noise
    return signals, y, rng


def channel_window(
    n: int, seed: int, drift: dict[str, dict[str, float]] | None = None, label_share: float = 0.0
) -> pd.DataFrame:
    """A logged window of `n` three-axis predictions (channel_signals), as read_predictions
    returns it."""
    signals, y, rng = channel_signals(n, seed, drift)
    return logged_window(signals, y, rng, label_share=label_share)


def window(
    n: int,
    seed: int,
    fault_rate: float = 0.04,
    label_share: float = 0.0,
    **drift: float,
) -> pd.DataFrame:
    """A logged window of `n` predictions; `drift`: offset, gain or noise of drifting_signals."""
    rng = np.random.default_rng(seed)
    signals, y = drifting_signals(n, fault_rate, rng, **drift)
    return logged_window(signals, y, rng, label_share=label_share)


def write_log(
    path: Path, frame: pd.DataFrame, signals, embeddings, source: str = "test", refused: bool = True
) -> str:
    """The window as the service logs it, through faultwatch.serve.predlog: a prediction with
    its features and embedding per row (per channel, with its channel names, for a
    multichannel window), every fifth raw signal sampled, the labels that arrived (from
    `source`), and one refused request when `refused`."""
    from faultwatch.serve import predlog

    multichannel = "channel_features" in frame.columns
    channels = tuple(json.loads(frame["channels"].iloc[0])) if multichannel else None

    def features(row) -> list[float]:
        if multichannel:
            return list(json.loads(row.channel_features).values())
        return [getattr(row, f) for f in FEATURES]

    log = predlog.open_log(str(path))
    log.append(
        predlog.LoggedPrediction(
            endpoint="predict_batch",
            model_version=row.model_version,
            summary=predlog.InputSummary.of(signals[i]),
            probability=row.probability,
            label=row.label,
            is_fault=bool(row.is_fault),
            threshold=row.threshold,
            latency_ms=row.latency_ms,
            batch_size=1,
            prediction_id=row.prediction_id,
            features=features(row),
            embedding=None if embeddings is None else embeddings[i],
            signal=signals[i] if i % 5 == 0 else None,
            channels=channels,
        )
        for i, row in enumerate(frame.itertuples())
    )
    labelled = frame[frame["true_label"].notna()]
    log.add_labels(
        list(zip(labelled["prediction_id"], labelled["true_label"], strict=True)), source
    )
    if refused:
        log.reject("predict", 422, "finite_number", "signal.3: not a finite number", 100)
    log.close()
    return str(path)


def log_for_project(root: Path, path: Path, n: int = 120, noise: float = 0.6) -> str:
    """A prediction log for the project's trained model (models/fault_cnn): `n` requests in
    the last ten minutes, `noise` extra noise (a drift), half of them labelled."""
    import time

    from faultwatch.model.io import load_model
    from faultwatch.monitor.reference import model_embeddings

    rng = np.random.default_rng(4)
    signals, y = drifting_signals(n, 0.2, rng, noise=noise)
    frame = logged_window(signals, y, rng, time.time() - 600, 300, label_share=0.5)
    embeddings = model_embeddings(load_model(root / "models/fault_cnn"), signals)
    return write_log(path, frame, signals, embeddings, source="t", refused=False)
