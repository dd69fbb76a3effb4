"""The long layout of a delimited file: one sample per row, with a header naming the columns
id, label, value and optionally time; the rows of one id are one signal, ordered by time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faultwatch.data.text import (
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
                "has columns id, label, value and optionally time",
                [1],
            )
        cols[role] = found[0]
    times = header_names(names, TIME_NAMES)
    if len(times) > 1:
        raise DataError(file, "long_layout", "more than one time column in the header", [1])
    if times:
        cols["time"] = times[0]
    extra = [n for i, n in enumerate(names) if i not in cols.values()]
    if extra:
        shown = ", ".join(repr(x[:24]) for x in extra[:5])
        raise DataError(
            file,
            "long_layout",
            f"unexpected column(s) {shown}; the long layout has columns id, label, value "
            "and optionally time",
            [1],
        )
    return cols


def read_long(rows: list[tuple[int, list[str]]], names: list[str], file: str) -> pd.DataFrame:
    """The long layout: one sample per row, columns id, label, value and optionally time."""
    cols = _long_columns(names, file)
    if not rows:
        raise DataError(file, "not_empty", "a header row and no samples")
    signals: dict[str, dict] = {}
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

    def records():
        for ident, s in signals.items():
            values = np.array([_one_float(tok, file, n) for n, tok in s["rows"]], dtype="float64")
            if "time" in cols:
                order = _time_order(s, file)
                values = values[order]
            yield s["row"], ident, s["label"], values

    return signal_frame(records())


def _one_float(token: str, file: str, row: int) -> float:
    x = number(token)
    if x is None:
        bad = token.strip()[:30]
        raise DataError(file, "values_numeric", f"value '{bad}' is not a number", [row])
    return x


def _time_order(signal: dict, file: str) -> np.ndarray:
    """Sample order by the time column (numbers, or ISO 8601 timestamps); no repeated time."""
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
    order = np.argsort(keys, kind="stable")
    repeated = np.flatnonzero(np.diff(keys[order]) == 0)
    if len(repeated):
        dup = sorted({rows[order[i]] for i in repeated} | {rows[order[i + 1]] for i in repeated})
        raise DataError(file, "time_unique", "the same time twice in one signal", dup)
    return order
