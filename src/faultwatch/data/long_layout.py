"""The long layout of a delimited file: one sample per row, with a header naming the columns
id, label, value and optionally time; the rows of one id are one signal, ordered by time.

With a `channel` column (`id, label, channel, value[, time]`) the signals are multichannel: the
rows of one id and one channel are that channel's samples, the channels named by the column's
values in the order first seen in the file. Every signal must hold every channel, with as many
samples in each (and, with a time column, at the same times)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faultwatch.data.channels import channels_mismatch, stack_channels
from faultwatch.data.text import (
    CHANNEL_NAMES,
    ID_NAMES,
    LABEL_NAMES,
    TIME_NAMES,
    VALUE_NAMES,
    header_names,
    number,
    signal_frame,
)
from faultwatch.errors import DataError


def _long_columns(names: list[str], file: str) -> dict[str, int]:
    """role (id, label, value, time) -> column, from the header; anything else is an error."""
    cols = {}
    for role, wanted in (("id", ID_NAMES), ("label", LABEL_NAMES), ("value", VALUE_NAMES)):
        found = header_names(names, wanted)
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise DataError(
                file,
                "long_layout",
                f"{what} {role} column ({' or '.join(wanted)}) in the header; the long layout "
                "has columns id, label, value and optionally channel and time",
                [1],
            )
        cols[role] = found[0]
    for role, wanted in (("time", TIME_NAMES), ("channel", CHANNEL_NAMES)):
        found = header_names(names, wanted)
        if len(found) > 1:
            raise DataError(file, "long_layout", f"more than one {role} column in the header", [1])
        if found:
            cols[role] = found[0]
    extra = [n for i, n in enumerate(names) if i not in cols.values()]
    if extra:
        shown = ", ".join(repr(x[:24]) for x in extra[:5])
        raise DataError(
            file,
            "long_layout",
            f"unexpected column(s) {shown}; the long layout has columns id, label, value "
            "and optionally channel and time",
            [1],
        )
    return cols


def read_long(rows: list[tuple[int, list[str]]], names: list[str], file: str) -> pd.DataFrame:
    """The long layout: one sample per row, columns id, label, value and optionally time."""
    cols = _long_columns(names, file)
    if not rows:
        raise DataError(file, "not_empty", "a header row and no samples")
    signals: dict[str, dict] = {}
    channels: dict[str, None] = {}  # in the order first seen
    for n, fields in rows:
        if len(fields) != len(names):
            raise DataError(
                file,
                "column_count",
                f"{len(fields)} fields where the header has {len(names)}",
                [n],
            )
        ident, label = fields[cols["id"]].strip(), fields[cols["label"]].strip()
        if not ident:
            raise DataError(file, "id_present", "the id is empty", [n])
        if not label or label.lower() == "nan":
            raise DataError(file, "label_present", "the label is empty", [n])
        s = signals.setdefault(ident, {"row": n, "label": label, "rows": [], "time": []})
        if label != s["label"]:
            raise DataError(
                file,
                "label_constant",
                f"signal '{ident[:24]}' has label '{s['label'][:24]}' at row {s['row']} "
                f"and '{label[:24]}' here: one label per signal",
                [n],
            )
        s["rows"].append((n, fields[cols["value"]]))
        if "time" in cols:
            s["time"].append(fields[cols["time"]].strip())
        if "channel" in cols:
            channel = fields[cols["channel"]].strip()
            if not channel:
                raise DataError(file, "channel_present", "the channel is empty", [n])
            s.setdefault("channel", []).append(channel)
            channels.setdefault(channel, None)

    if "channel" in cols:
        df = signal_frame(
            (s["row"], ident, s["label"], _channels_signal(ident, s, tuple(channels), file))
            for ident, s in signals.items()
        )
        df.attrs["channels"] = tuple(channels)
        return df
    return signal_frame(
        (s["row"], ident, s["label"], _samples(s, file, "time" in cols))
        for ident, s in signals.items()
    )


def _samples(signal: dict, file: str, timed: bool) -> np.ndarray:
    """One signal's (or channel's) values, in time order when there is a time column."""
    values = np.array([_one_float(tok, file, n) for n, tok in signal["rows"]], dtype="float64")
    return values[_time_order(signal, file)] if timed else values


def _channels_signal(ident: str, s: dict, channels: tuple[str, ...], file: str) -> np.ndarray:
    """One signal's (channels, samples) array: every channel of the file, equally long and,
    with a time column, sampled at the same times."""
    timed = bool(s["time"])
    by: dict[str, dict] = {}
    for k, (row, token) in enumerate(s["rows"]):
        c = by.setdefault(s["channel"][k], {"rows": [], "time": []})
        c["rows"].append((row, token))
        if timed:
            c["time"].append(s["time"][k])
    if set(by) != set(channels):
        raise channels_mismatch(file, [s["row"]], list(by), channels, "the whole file", ident)
    arrays = [_samples(by[c], file, timed) for c in channels]
    if timed and len({len(a) for a in arrays}) == 1:
        times = [np.sort(_time_keys(by[c], file)) for c in channels]
        for c, t in zip(channels[1:], times[1:], strict=True):
            if not np.array_equal(t, times[0]):
                raise DataError(
                    file,
                    "channels_same_times",
                    f"signal {ident[:24]!r}: channel {c!r} is sampled at other times than "
                    f"channel {channels[0]!r}; the channels of one signal are sampled together",
                    [by[c]["rows"][0][0]],
                )
    return stack_channels(arrays, channels, file, s["row"])


def _one_float(token: str, file: str, row: int) -> float:
    x = number(token)
    if x is None:
        bad = token.strip()[:30]
        raise DataError(file, "values_numeric", f"value '{bad}' is not a number", [row])
    return x


def _time_order(signal: dict, file: str) -> np.ndarray:
    """Sample order by the time column (numbers, or ISO 8601 timestamps); no repeated time."""
    rows = [n for n, _ in signal["rows"]]
    keys = _time_keys(signal, file)
    order = np.argsort(keys, kind="stable")
    repeated = np.flatnonzero(np.diff(keys[order]) == 0)
    if len(repeated):
        dup = sorted({rows[order[i]] for i in repeated} | {rows[order[i + 1]] for i in repeated})
        raise DataError(file, "time_unique", "the same time twice in one signal", dup)
    return order


def _time_keys(signal: dict, file: str) -> np.ndarray:
    """The time column's values as numbers (ISO 8601 timestamps as nanoseconds)."""
    rows = [n for n, _ in signal["rows"]]
    text = signal["time"]
    numbers = [number(t) for t in text]
    if all(x is not None and np.isfinite(x) for x in numbers):
        keys = np.asarray(numbers, dtype="float64")
    else:
        try:
            keys = pd.to_datetime(pd.Series(text), format="ISO8601").to_numpy().astype("int64")
        except (ValueError, TypeError):
            bad = next(i for i, x in enumerate(numbers) if x is None or not np.isfinite(x))
            raise DataError(
                file,
                "time_readable",
                f"time '{text[bad][:30]}' is neither a number nor an ISO 8601 timestamp",
                [rows[bad]],
            ) from None
    return keys
