"""Multichannel signals: several sensors recorded together (three accelerometer axes, vibration
and motor current, a magnet's voltage taps), one signal a row.

A reader's frame (faultwatch.data.text.signal_frame) is univariate when `df.attrs` has no
"channels": `values` holds 1-D arrays, as it always has. It is multichannel when
`df.attrs["channels"]` holds the channel names in order: `values` then holds 2-D float64 arrays
shaped (channels, samples), every signal with the same channels, each channel of one signal
as long as the others (they are sampled together). `data.channels` selects and orders them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from faultwatch.errors import DataError
from faultwatch.splits import CHANNELS_KEY  # noqa: F401  (the prepared splits write it)

MAX_NAMES = 12  # channel names quoted in a message


def channel_names(df: pd.DataFrame) -> tuple[str, ...] | None:
    """The frame's channels in order, or None for a univariate frame."""
    names = df.attrs.get("channels")
    return tuple(names) if names is not None else None


def default_names(n: int) -> tuple[str, ...]:
    """Names for channels a file does not name: dim_0, dim_1... (sktime's names)."""
    return tuple(f"dim_{i}" for i in range(n))


def quote(names: Sequence[str]) -> str:
    """Channel names for a message: 'x', 'y', 'z'."""
    shown = ", ".join(repr(str(n)[:24]) for n in names[:MAX_NAMES])
    more = f" (+{len(names) - MAX_NAMES} more)" if len(names) > MAX_NAMES else ""
    return (shown or "none") + more


def channels_mismatch(
    file: str,
    rows: list[int],
    found: Sequence[str] | int,
    expected: Sequence[str],
    source: str = "",
    signal: str = "",
) -> DataError:
    """A signal whose channels are not the file's: the channels found (names, or a count where
    the format has no names) against those expected, and where the expected ones come from
    (`source`: "@dimensions 3", "row 4, the first")."""
    who = f"signal {signal[:24]!r}: " if signal else ""
    if isinstance(found, int):
        seen, diff = f"{found} channel(s)", f"{found} where {len(expected)} are expected"
    else:
        missing = [c for c in expected if c not in found]
        extra = [c for c in found if c not in expected]
        parts = [f"missing {quote(missing)}"] if missing else []
        parts += [f"unexpected {quote(extra)}"] if extra else []
        seen, diff = quote(found), "; ".join(parts) or "another order"
    src = f" (from {source})" if source else ""
    return DataError(
        file,
        "channels_match",
        f"{who}channels found: {seen}; every signal must have the channels {quote(expected)}{src}: "
        f"{diff}",
        rows,
    )


def stack_channels(
    arrays: Sequence[np.ndarray], names: Sequence[str], file: str, row: int
) -> np.ndarray:
    """One signal's channels as a (channels, samples) array; channels of different lengths are
    an error naming each channel's length."""
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        shown = ", ".join(f"{n}={k}" for n, k in zip(names, lengths, strict=True))
        raise DataError(
            file,
            "channels_equal_length",
            f"the channels of one signal have different lengths ({shown}); they are sampled "
            "together and must hold the same number of samples",
            [row],
        )
    return np.stack([np.asarray(a, dtype="float64") for a in arrays])


def channel_view(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """The frame with channel `k` of every signal as its (1-D) values, without channel attrs."""
    out = df.assign(values=pd.Series([v[k] for v in df["values"]], index=df.index, dtype=object))
    out.attrs = {a: v for a, v in df.attrs.items() if a != "channels"}
    return out


def select_channels(df: pd.DataFrame, wanted: Sequence[str] | None, file: str) -> pd.DataFrame:
    """The channels `data.channels` names, in its order (None: all, in the file's order).
    Naming channels in a univariate file, or a channel the file lacks, is an error."""
    if wanted is None:
        return df
    names = channel_names(df)
    if names is None:
        raise DataError(
            file,
            "channels_known",
            f"data.channels is {list(wanted)!r} but the file holds univariate signals (one "
            "unnamed channel): leave data.channels empty for a univariate file",
        )
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise DataError(
            file,
            "channels_known",
            f"data.channels names {quote(unknown)}, no channel of the file; its channels: "
            f"{quote(names)}",
        )
    if tuple(wanted) == names:
        return df
    order = [names.index(c) for c in wanted]
    values = pd.Series([np.asarray(v[order]) for v in df["values"]], index=df.index, dtype=object)
    out = df.assign(values=values)
    out.attrs = {**df.attrs, "channels": tuple(wanted)}
    return out


def match_channels(
    df: pd.DataFrame, expected: tuple[str, ...] | None, file: str, source: str
) -> pd.DataFrame:
    """A batch added to a data set (production signals) with the channels of `source`, in its
    order: a univariate batch for a univariate source, every channel of a multichannel one
    (channels the source's signals do not have are left out)."""
    names = channel_names(df)
    rows = [int(i) for i in df.index]
    if expected is None and names is None:
        return df
    if names is None:
        raise DataError(
            file,
            "channels_match",
            f"the file holds univariate signals, {source} multichannel ones (channels "
            f"{quote(expected or ())}): a batch must have the channels of its source",
            rows,
        )
    if expected is None:
        raise DataError(
            file,
            "channels_match",
            f"the file holds multichannel signals (channels {quote(names)}), {source} "
            "univariate ones: a batch must have the channels of its source",
            rows,
        )
    if not set(expected) <= set(names):
        raise channels_mismatch(file, rows, names, expected, source)
    return select_channels(df, list(expected), file)


def check_channel_shapes(df: pd.DataFrame, file: str) -> None:
    """Every value of a multichannel frame is a (channels, samples) array (frames built in
    memory, not only by a reader, come through validation)."""
    names = channel_names(df)
    if names is None:
        return
    bad = [
        int(i)
        for i, v in zip(df.index, df["values"], strict=True)
        if np.ndim(v) != 2 or len(v) != len(names)
    ]
    if bad:
        raise DataError(
            file,
            "channels_match",
            f"every signal must be a (channels, samples) array with the channels {quote(names)}",
            bad,
        )
