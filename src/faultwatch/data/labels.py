"""Class labels: how `data.positive_label` is matched with the labels read from a file.

Labels are read as text. When every label of the file is a number, the column is numeric:
each label is rewritten in one canonical form (`+1`, `1.0`, `01`, `1e0` -> `1`; `-0.50` ->
`-0.5`), so the same number written two ways is one class, and a numeric
`positive_label` (`-1`, `2`, `"2.0"`) is compared as a number. When any label is text, labels
and `positive_label` are compared as text, exactly (`2` matches `2`, not `2.0`).
"""

from __future__ import annotations

import re
from decimal import Decimal

import pandas as pd

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,2})?")
MAX_LISTED = 20  # classes named in a message
MAX_LABEL_CHARS = 24
MAX_LIST_CHARS = 200


def canonical_number(text: str) -> str | None:
    """`text` as a canonical decimal if it is a plain number, else None."""
    t = str(text).strip()
    if not _NUMBER.fullmatch(t):
        return None
    d = Decimal(t)
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def canonical_labels(labels: pd.Series) -> tuple[pd.Series, bool]:
    """(labels, numeric): a column of numbers in canonical text, any other column as read."""
    text = labels.astype(str).str.strip()
    numbers = text.map(canonical_number)
    if len(text) and numbers.notna().all():
        return numbers.astype(str), True
    return text, False


def label_text(value: str | int | float, numeric: bool) -> str:
    """The label `value` (from params.yaml) names, in the column's form."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if numeric:
        return canonical_number(text) or text
    return text


def list_classes(labels: pd.Series | list[str]) -> str:
    """A short, sorted list of the classes found, for a message (numbers sorted as numbers)."""
    found = sorted(set(map(str, labels)), key=lambda s: (canonical_number(s) is None, _key(s)))
    shown: list[str] = []
    for x in found[:MAX_LISTED]:
        item = repr(x if len(x) <= MAX_LABEL_CHARS else x[: MAX_LABEL_CHARS - 3] + "...")
        if shown and sum(len(s) + 2 for s in shown) + len(item) > MAX_LIST_CHARS:
            break
        shown.append(item)
    more = f" (+{len(found) - len(shown)} more)" if len(found) > len(shown) else ""
    return ", ".join(shown) + more


def _key(s: str) -> tuple[Decimal, str]:
    n = canonical_number(s)
    return (Decimal(n) if n is not None else Decimal(0), s)
