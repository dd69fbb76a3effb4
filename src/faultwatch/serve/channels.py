"""What a multichannel model's endpoints accept (issue 21), and the checks that name a channel.

A multichannel model (its model.json names `channels`, in the network's order) takes one signal
as `{"signal": [[...], [...], [...]]}` (channels first, in the model's order) or as
`{"channels": {"x": [...], "y": [...], "z": [...]}}` (by name, any order); /predict_batch takes
`{"signals": [item, ...]}`, each item a list of channels in order or an object by name. A
univariate model's endpoints are faultwatch.serve.schema's, unchanged.

pydantic checks the JSON types (lists of numbers); `ChannelSpec.values_of` checks the rest, so
that every error names the channel: a wrong channel count, an unknown or missing channel name,
or channels of different lengths is a 422 naming the expected channels; a channel too short or
too long (the limits apply to each channel, as data's `min_length` and `max_length` do), or a
sample that is not finite or too large, a 400 with the rule of the univariate endpoint
(too_short, too_long, finite_number, less_than_equal) and the channel in the message. The body
limit counts every sample of every channel: its default scales with the channel count
(faultwatch.serve.schema.ServingLimits.resolve).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, Field, PrivateAttr, RootModel

from faultwatch.errors import FaultwatchError
from faultwatch.serve.identity import RequestIdentity, current
from faultwatch.serve.schema import MAX_ABS_VALUE, ServingLimits

# a sample's JSON type only: finiteness and magnitude are checked after, naming the channel
Sample = Annotated[float, Field(strict=True)]


class ChannelError(FaultwatchError):
    """A multichannel signal refused: the HTTP status, the rule, the key path and a message
    naming the channel (and the expected channels)."""

    def __init__(self, status: int, reason: str, loc: list[str | int], msg: str):
        super().__init__(msg)
        self.status, self.reason, self.loc, self.msg = status, reason, loc, msg


def _channel_schema(limits: ServingLimits) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "number"},
        "minItems": limits.min_length,
        "maxItems": limits.max_length,
    }


def _flat_as_one_channel(value: Any) -> Any:
    """A flat list of numbers (the univariate form) as one channel, so that `values_of` refuses
    it with a 422 naming the expected channels instead of pydantic's 400 for every sample."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
    ):
        return [value]
    return value


def multichannel_types(limits: ServingLimits, channels: tuple[str, ...]) -> tuple[Any, Any, Any]:
    """(channels first, by name, a predict_batch item): the annotations BentoML builds the
    endpoints' input schemas from; the schemas show the channels and the limits."""
    named = ", ".join(channels)
    values = Annotated[list[Sample], Field(json_schema_extra=_channel_schema(limits))]
    first = Annotated[
        list[values],
        BeforeValidator(_flat_as_one_channel),
        Field(
            description=f"channels first, in this order: {named}; each {limits.min_length} to "
            f"{limits.max_length} finite numbers, all of one length",
            json_schema_extra={"minItems": len(channels), "maxItems": len(channels)},
        ),
    ]
    by_name = Annotated[
        dict[str, values],
        Field(
            description=f"by channel name: {named}; each {limits.min_length} to "
            f"{limits.max_length} finite numbers, all of one length",
            json_schema_extra={
                "properties": {c: _channel_schema(limits) for c in channels},
                "required": list(channels),
                "additionalProperties": False,
            },
        ),
    ]

    class ChannelsItem(RootModel[first | by_name]):  # type: ignore[valid-type]
        """One signal of a batch: channels first, or by name. Stamped like schema's Signal."""

        _received: float = PrivateAttr(default_factory=time.perf_counter)
        _identity: RequestIdentity = PrivateAttr(default_factory=current)

    return first, by_name, ChannelsItem


@dataclass(frozen=True)
class ChannelSpec:
    """The channels a served model reads, in order, and the limits of each."""

    names: tuple[str, ...]
    limits: ServingLimits

    @property
    def expected(self) -> str:
        return f"expected the channels {', '.join(self.names)}"

    def values_of(
        self, signal: Any, by_name: Any, where: list[str | int] | None = None
    ) -> np.ndarray:
        """(channels, samples) float64 from one of the two forms; ChannelError otherwise.
        `where`: the item's key path in a batch (["signals", 3]); None for /predict."""
        if where is None:
            if (signal is None) == (by_name is None):
                both = "both" if signal is not None else "neither"
                raise ChannelError(
                    422,
                    "one_form",
                    ["body"],
                    f"give `signal` (channels first) or `channels` (by name), got {both}: "
                    f"{self.expected}",
                )
            base: list[str | int] = ["signal"] if signal is not None else ["channels"]
        else:
            base = list(where)
        if by_name is not None:
            rows = self._ordered(by_name, base)
            keys: list[str | int] = list(self.names)
        else:
            rows = list(signal)
            if len(rows) != len(self.names):
                raise ChannelError(
                    422,
                    "channel_count",
                    base,
                    f"{len(rows)} channel{'' if len(rows) == 1 else 's'}: {self.expected}, "
                    "in this order, as lists of numbers",
                )
            keys = list(range(len(self.names)))
        lengths = [len(r) for r in rows]
        if len(set(lengths)) > 1:
            shown = ", ".join(f"{c}: {n}" for c, n in zip(self.names, lengths, strict=True))
            raise ChannelError(
                422,
                "channel_lengths",
                base,
                f"channels of different lengths ({shown}): {self.expected}, all of one length",
            )
        for name, key, row in zip(self.names, keys, rows, strict=True):
            self._check_channel(name, [*base, key], row)
        return np.asarray(rows, dtype="float64")

    def batch_values(self, items: list[Any]) -> list[np.ndarray]:
        """`values_of` for each /predict_batch item (a list of channels, or an object by name);
        the first bad item's ChannelError names its index."""
        return [
            self.values_of(*((None, it) if isinstance(it, dict) else (it, None)), ["signals", i])
            for i, it in enumerate(items)
        ]

    def _ordered(self, by_name: dict[str, list[float]], base: list[str | int]) -> list:
        unknown = [c for c in by_name if c not in self.names]
        if unknown:
            raise ChannelError(
                422,
                "unknown_channel",
                [*base, unknown[0]],
                f"{unknown[0]!r} is not a channel of this model: {self.expected}",
            )
        missing = [c for c in self.names if c not in by_name]
        if missing:
            raise ChannelError(
                422,
                "missing_channel",
                [*base, missing[0]],
                f"channel {missing[0]!r} is missing: {self.expected}",
            )
        return [by_name[c] for c in self.names]

    def _check_channel(self, name: str, loc: list[str | int], row: list[float]) -> None:
        check_samples(f"channel {name}", loc, row, self.limits)


def check_samples(what: str, loc: list[str | int], row: list[float], limits: ServingLimits) -> None:
    """A channel's (or a univariate signal's) length within the limits, every sample finite and
    not too large; ChannelError with the univariate endpoint's rules, `what` in the message."""
    lo, hi = limits.min_length, limits.max_length
    if not lo <= len(row) <= hi:
        reason = "too_short" if len(row) < lo else "too_long"
        bound = f"at least {lo}" if len(row) < lo else f"at most {hi}"
        msg = f"{what}: should have {bound} samples, not {len(row)}"
        raise ChannelError(400, reason, loc, msg)
    x = np.asarray(row, dtype="float64")
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argmax(bad))
        msg = f"{what}: Input should be a finite number"
        raise ChannelError(400, "finite_number", [*loc, i], msg)
    big = np.abs(x) > MAX_ABS_VALUE
    if big.any():
        i = int(np.argmax(big))
        reason = "less_than_equal" if x[i] > 0 else "greater_than_equal"
        msg = f"{what}: |value| should be at most {MAX_ABS_VALUE:g}"
        raise ChannelError(400, reason, [*loc, i], msg)


@dataclass(frozen=True)
class UnivariateSpec:
    """A univariate model's input in a fleet bento, whose endpoints take any group's form: the
    same checks and rules as the single model's endpoint, after the group is known."""

    limits: ServingLimits
    names: tuple[str, ...] = ()

    def values_of(
        self, signal: Any, by_name: Any, where: list[str | int] | None = None
    ) -> np.ndarray:
        base: list[str | int] = ["signal"] if where is None else list(where)
        if by_name is not None or (signal is not None and any(isinstance(x, list) for x in signal)):
            raise ChannelError(
                422,
                "univariate",
                ["channels"] if where is None and by_name is not None else base,
                "this model reads one channel: give the signal as a list of numbers",
            )
        if signal is None:
            raise ChannelError(422, "missing", base, "Field required: `signal`")
        check_samples("signal", base, signal, self.limits)
        return np.asarray(signal, dtype="float64")

    def batch_values(self, items: list[Any]) -> list[np.ndarray]:
        return [
            self.values_of(*((None, it) if isinstance(it, dict) else (it, None)), ["signals", i])
            for i, it in enumerate(items)
        ]
