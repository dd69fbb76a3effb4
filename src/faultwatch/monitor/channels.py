"""A multichannel model's drift columns by channel: `rms[z]` is the feature `rms` of channel
`z` (faultwatch.features.channel_feature_names writes them). Text only, no imports, so the
report page groups them as the notebook does."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PER_CHANNEL = re.compile(r"^(\w+)\[(.+)\]$")


def split_column(column: str) -> tuple[str, str | None]:
    """(feature, channel) of a drift column: `rms[z]` -> ("rms", "z"); `mean` -> ("mean", None)."""
    found = _PER_CHANNEL.match(column)
    return (found[1], found[2]) if found else (column, None)


def feature_channel(column: str) -> str | None:
    """The channel a drift column belongs to (`rms[z]` -> "z"), None for a univariate one."""
    return split_column(column)[1]


def by_channel(columns: Iterable[str]) -> dict[str | None, list[str]]:
    """The features of `columns` per channel, channels and features in their first order
    (None: the columns of no channel)."""
    groups: dict[str | None, list[str]] = {}
    for column in columns:
        feature, channel = split_column(column)
        groups.setdefault(channel, []).append(feature)
    return groups


def describe_columns(columns: Iterable[str]) -> str:
    """Columns for one table cell, grouped by channel: "z: rms, crest; x: rms"; columns of no
    channel as they are ("mean, std")."""
    return "; ".join(
        ", ".join(features) if channel is None else f"{channel}: {', '.join(features)}"
        for channel, features in by_channel(columns).items()
    )
