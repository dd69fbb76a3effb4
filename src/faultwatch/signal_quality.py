"""Sensor and acquisition checks on one signal: a dead sensor is not a machine fault.

Condition-monitoring practice keeps signal quality apart from machine condition: a flat line,
a signal clipped at a constant, or a long run of one repeated value says the sensor or the
acquisition failed, and a fault model's answer on it says nothing about the machine. The rules,
checked in this order (the first that fires names the signal's quality, else `ok`):

- `flat_line`: the peak-to-peak range is at most `flat_line_ptp` (a dead or disconnected sensor;
  an all-zero signal);
- `clipping`: at least `clipping_share` of the samples (and at least MIN_CLIPPED) sit exactly at
  the signal's maximum, or at its minimum (a saturated amplifier or ADC);
- `stuck`: a run of at least `stuck_run` consecutive identical values (a frozen reading, a
  dropout filled with the last value).

A multichannel signal (channels, samples) is checked channel by channel, each with its own
thresholds (a channel's units are its own), rule by rule in RULES order over the channels: the
quality names the rule and the channel, `flat_line[z]`.

The thresholds are learnt from the training split at registration (`learn_thresholds`, params.yaml
`quality`; per channel `learn_channel_thresholds`, recorded under `channels`) and recorded in the
model's store entry (metadata `signal_quality`), so the service
checks with exactly the thresholds the model was registered with. The same functions serve the
service, register, the EDA (how many training signals each rule flags) and the monitor (the share
of each rule in a window). Pure numpy; no pandas, so the serving image can import it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from pydantic import Field

from faultwatch.params import Section

OK = "ok"
RULES = ("flat_line", "clipping", "stuck")
QUALITIES = (OK, *RULES)
# the answer's label for a bad-quality signal that is not scored (score_bad_signals: false)
UNSCORED = "unscored"
# a clean sine sampled on its crest can give two equal maxima; three exact ties are a plateau
MIN_CLIPPED = 3
METADATA_KEY = "signal_quality"  # the store entry's metadata key (register writes it)


class QualityParams(Section):
    """params.yaml `quality`: the signal checks, and whether a bad-quality signal is scored."""

    # false: a bad-quality signal is answered with probability null, is_fault null and label
    # "unscored" (the quality names the rule); true: scored as any other, quality beside it
    score_bad_signals: bool = False
    # flat_line: peak-to-peak at most this fraction of the training signals' smallest one
    # (their `learn_quantile` low end), so anything flatter than every trained-on signal
    flat_line_fraction: float = Field(0.01, ge=0, lt=1)
    clipping_share: float = Field(0.1, gt=0, le=1)  # at the max or at the min: clipping ...
    stuck_run: int = Field(10, ge=2)  # this many equal values in a row: stuck ...
    # ... or, when the training signals go further, `learn_margin` x their `learn_quantile`
    learn_quantile: float = Field(0.999, gt=0.5, le=1)
    learn_margin: float = Field(2.0, ge=1)


@dataclass(frozen=True)
class QualityThresholds:
    """The thresholds a served model checks with. The defaults are for a store entry registered
    without them: only an exactly constant signal is a flat line."""

    flat_line_ptp: float = 0.0
    clipping_share: float = 0.1
    stuck_run: int = 10
    score_bad_signals: bool = False
    # a multichannel model's: each channel's own thresholds, by name, in the model's order
    # (the fields above then hold the loosest of them); None for a univariate model
    channels: tuple[tuple[str, QualityThresholds], ...] | None = None

    def as_metadata(self) -> dict[str, Any]:
        out = asdict(self)
        del out["channels"]  # a univariate entry's metadata stays as it was
        if self.channels is not None:
            out["channels"] = {name: _limits(t) for name, t in self.channels}
        return out

    def for_channel(self, name: str) -> QualityThresholds:
        """The thresholds of channel `name` (these, when none were learnt for it)."""
        return dict(self.channels or ()).get(name, self)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> QualityThresholds:
        """From a store entry's metadata (`signal_quality`); defaults for keys it lacks."""
        recorded = (metadata or {}).get(METADATA_KEY) or {}
        known = {f.name for f in fields(cls)} - {"channels"}
        t = cls(**{k: v for k, v in recorded.items() if k in known})
        per_channel = recorded.get("channels")
        if per_channel is not None:
            if not isinstance(per_channel, Mapping):
                raise ValueError(f"{METADATA_KEY}.channels: expected an object by channel name")
            named = tuple(
                (str(name), cls(**{k: v for k, v in (c or {}).items() if k in known}))
                for name, c in per_channel.items()
            )
            t = cls(**{**_limits(t), "score_bad_signals": t.score_bad_signals, "channels": named})
        for name, c in (("", t), *(t.channels or ())):
            if not (
                math.isfinite(c.flat_line_ptp)
                and c.flat_line_ptp >= 0
                and 0 < c.clipping_share <= 1
                and c.stuck_run >= 2
            ):
                where = f"{METADATA_KEY}.channels.{name}" if name else METADATA_KEY
                raise ValueError(f"{where}: thresholds out of range: {recorded}")
        return t


def _limits(t: QualityThresholds) -> dict[str, Any]:
    """The three rules' thresholds of `t` (not score_bad_signals, not its channels)."""
    return {"flat_line_ptp": t.flat_line_ptp, "clipping_share": t.clipping_share,
            "stuck_run": t.stuck_run}  # fmt: skip


def peak_to_peak(signal: np.ndarray) -> float:
    return float(np.ptp(signal)) if len(signal) else 0.0


def clipped_share(signal: np.ndarray) -> float:
    """The larger share of samples that equal the signal's maximum, or its minimum."""
    x = np.asarray(signal, dtype="float64")
    if x.size == 0:
        return 0.0
    return float(max(np.count_nonzero(x == x.max()), np.count_nonzero(x == x.min())) / x.size)


def longest_run(signal: np.ndarray) -> int:
    """The most consecutive equal values."""
    x = np.asarray(signal, dtype="float64")
    if x.size == 0:
        return 0
    edges = np.flatnonzero(np.concatenate([[True], x[1:] != x[:-1], [True]]))
    return int(np.diff(edges).max())


def _clipped(x: np.ndarray, share_threshold: float) -> bool:
    share = clipped_share(x)
    return share >= share_threshold and share * x.size >= MIN_CLIPPED


def _broken(x: np.ndarray, rule: str, t: QualityThresholds) -> bool:
    if rule == "flat_line":
        return peak_to_peak(x) <= t.flat_line_ptp
    if rule == "clipping":
        return _clipped(x, t.clipping_share)
    return longest_run(x) >= t.stuck_run


def quality_of(
    signal: np.ndarray, t: QualityThresholds, channels: Sequence[str] | None = None
) -> str:
    """`ok`, or the first rule of RULES that `signal` breaks (finite values expected). A
    (channels, samples) signal: each channel with its own thresholds (`t.for_channel`), the
    rule named with the channel, `stuck[x]`; `channels` names the rows (else `t`'s channel
    names, else dim_0, dim_1, ...)."""
    x = np.asarray(signal, dtype="float64")
    if x.ndim == 1:
        return next((rule for rule in RULES if _broken(x, rule, t)), OK)
    names = list(channels or [name for name, _ in t.channels or ()])
    names += [f"dim_{k}" for k in range(len(names), x.shape[0])]
    for rule in RULES:
        for name, row in zip(names, x, strict=False):
            if _broken(row, rule, t.for_channel(name)):
                return f"{rule}[{name}]"
    return OK


def qualities(
    signals: Iterable[np.ndarray], t: QualityThresholds, channels: Sequence[str] | None = None
) -> list[str]:
    return [quality_of(s, t, channels) for s in signals]


def learn_split_thresholds(
    signals: Sequence[np.ndarray], p: QualityParams, channels: Sequence[str] | None = None
) -> QualityThresholds:
    """The thresholds for a training split: `learn_thresholds`, or per channel
    (`learn_channel_thresholds`) for a multichannel split whose rows `channels` names."""
    if channels is None:
        return learn_thresholds(signals, p)
    return learn_channel_thresholds(signals, p, channels)


def learn_channel_thresholds(
    signals: Sequence[np.ndarray], p: QualityParams, channels: Sequence[str]
) -> QualityThresholds:
    """The thresholds for a multichannel model trained on `signals` ((channels, samples) each,
    rows named `channels`): `learn_thresholds` on each channel alone; the top-level fields hold
    the loosest of them (a reader that does not know channels checks no tighter)."""
    x = [np.asarray(s, dtype="float64") for s in signals]
    per = tuple((name, learn_thresholds([s[k] for s in x], p)) for k, name in enumerate(channels))
    ts = [t for _, t in per]
    return QualityThresholds(
        flat_line_ptp=min(t.flat_line_ptp for t in ts),
        clipping_share=max(t.clipping_share for t in ts),
        stuck_run=max(t.stuck_run for t in ts),
        score_bad_signals=p.score_bad_signals,
        channels=per,
    )


def learn_thresholds(signals: Sequence[np.ndarray], p: QualityParams) -> QualityThresholds:
    """The thresholds for a model trained on `signals` (the training split), rule by rule in
    RULES order, each learnt on the signals the rules before it pass: a rule's floor from `p`,
    raised to `learn_margin` x the training signals' `learn_quantile` where they reach it. The
    quantile is taken at the sample below it ("lower"), so one bad signal in a small training
    set does not raise a threshold past itself."""
    x = [np.asarray(s, dtype="float64") for s in signals]
    if not x:
        raise ValueError("no training signals to learn the signal-quality thresholds from")
    ptp = np.array([peak_to_peak(s) for s in x])
    moving = ptp[ptp > 0]
    low = float(np.quantile(moving, 1 - p.learn_quantile, method="higher")) if moving.size else 0.0
    flat_line_ptp = p.flat_line_fraction * low
    live = [s for s, r in zip(x, ptp, strict=True) if r > flat_line_ptp]
    clipping = p.clipping_share
    if live:
        shares = [clipped_share(s) for s in live]
        learnt = float(np.quantile(shares, p.learn_quantile, method="lower")) * p.learn_margin
        clipping = min(1.0, max(clipping, learnt))
    stuck = p.stuck_run
    unclipped = [s for s in live if not _clipped(s, clipping)]
    if unclipped:
        runs = [longest_run(s) for s in unclipped]
        learnt = float(np.quantile(runs, p.learn_quantile, method="lower")) * p.learn_margin
        stuck = max(stuck, math.ceil(learnt))
    return QualityThresholds(
        flat_line_ptp=flat_line_ptp,
        clipping_share=clipping,
        stuck_run=stuck,
        score_bad_signals=p.score_bad_signals,
    )


def rule_counts(found: Iterable[str | None]) -> dict[str, Any]:
    """How many signals each quality holds, and their share: {"n", "by_rule": {quality: {"n",
    "share"}}, "bad_share"}; every quality listed, 0 included. None (a row logged before the
    checks existed) is not counted."""
    counts = Counter(q for q in found if isinstance(q, str))
    n = sum(counts.values())
    # every known quality, then any this version does not know (written by a newer service)
    by_rule = {q: counts.get(q, 0) for q in QUALITIES} | dict(counts)
    return {
        "n": n,
        "by_rule": {q: {"n": c, "share": c / n if n else None} for q, c in by_rule.items()},
        "bad_share": (n - by_rule[OK]) / n if n else None,
    }
