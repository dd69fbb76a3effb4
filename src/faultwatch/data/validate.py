"""Schema of a signal table (pandera): what `prepare` accepts before it writes anything."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from faultwatch.data.channels import channel_names, channel_view, check_channel_shapes, quote
from faultwatch.data.labels import canonical_labels, label_text, list_classes
from faultwatch.data.params import DataParams
from faultwatch.errors import DataError


def _finite(values: pd.Series) -> pd.Series:
    return values.map(lambda v: bool(len(v)) and bool(np.isfinite(v).all()))


def positive_class(labels: pd.Series, positive_label: str | int | float) -> str | None:
    """The class of `labels` that `data.positive_label` names (see faultwatch.data.labels)."""
    canon, numeric = canonical_labels(labels)
    wanted = label_text(positive_label, numeric)
    return wanted if (canon == wanted).any() else None


def signal_schema(
    p: DataParams, positive: str | None = None, whole_set: bool = True
) -> pa.DataFrameSchema:
    """Rules, by name: the name is what an error message reports. Without `whole_set` (a batch
    of production signals added to a data set), only the rules on each signal and its id."""
    pos = label_text(p.positive_label, False) if positive is None else positive
    lengths = [
        pa.Check(
            lambda s: s.map(len).between(p.min_length, p.max_length),
            name="length_within_bounds",
        )
    ]
    if p.crop_length is not None:
        lengths.append(
            pa.Check(lambda s: s.map(len) >= p.crop_length, name="length_at_least_crop_length")
        )
    return pa.DataFrameSchema(
        {
            "id": pa.Column(str, unique=True, nullable=False),
            "label": pa.Column(str, nullable=False),
            "values": pa.Column(object, checks=[pa.Check(_finite, name="values_finite"), *lengths]),
        },
        checks=[]
        if not whole_set
        else [
            pa.Check(
                lambda df: df["label"].nunique() >= 2,
                name="at_least_two_classes",
            ),
            pa.Check(
                lambda df: int((df["label"] == pos).sum()) >= p.min_positive,
                name="min_fault_examples",
            ),
        ],
        strict=True,
        coerce=False,
    )


_RULE_TEXT = {
    "field_uniqueness": ("unique_id", "ids must be unique; duplicate id"),
    "not_nullable": ("label_present", "the value is missing"),
}


def _nonfinite_detail(cases: pd.DataFrame, p: DataParams) -> str:
    signals = list(cases["failure_case"])
    n_inf = sum(bool(np.isinf(v).any()) for v in signals)
    n_empty = sum(len(v) == 0 for v in signals)
    n_nan = len(signals) - n_inf - n_empty
    parts = []
    if n_inf:
        parts.append(
            f"{n_inf} signal(s) hold an infinite value (an error in every data.missing mode)"
        )
    if n_nan:
        how = (
            "set data.missing: interpolate or drop to accept gaps"
            if p.missing == "error"
            else "no observed value to interpolate from"
        )
        parts.append(f"{n_nan} signal(s) hold NaN or a missing value ({how})")
    if n_empty:
        parts.append(f"{n_empty} signal(s) hold no value")
    return "values must be finite numbers: " + "; ".join(parts)


def _describe(
    df: pd.DataFrame, p: DataParams, pos: str, check: str, cases: pd.DataFrame
) -> tuple[str, str]:
    if check in _RULE_TEXT:
        rule, text = _RULE_TEXT[check]
        shown = ", ".join(str(x)[:40] for x in cases["failure_case"].head(5))
        return rule, f"{text} ({shown})"
    if check == "values_finite":
        return check, _nonfinite_detail(cases, p)
    if check == "length_within_bounds":
        lengths = sorted({len(v) for v in cases["failure_case"].head(5)})
        return check, f"signal length must be in [{p.min_length}, {p.max_length}]; found {lengths}"
    if check == "length_at_least_crop_length":
        shortest = min(len(v) for v in cases["failure_case"])
        return check, (
            f"data.crop_length={p.crop_length} needs every signal at least that long; the "
            f"shortest is {shortest} samples"
        )
    if check == "at_least_two_classes":
        return check, f"at least two classes are needed; found only {list_classes(df['label'])}"
    if check == "min_fault_examples":
        n = int((df["label"] == pos).sum())
        return check, (
            f"at least {p.min_positive} examples of the fault class "
            f"data.positive_label={p.positive_label!r} are needed; found {n} "
            f"(classes found: {list_classes(df['label'])})"
        )
    return check, str(cases["failure_case"].head(5).tolist())


Problem = tuple[str, str, list[int]]  # rule, detail, rows
# the rules on a signal's values: checked on each channel of a multichannel signal
VALUE_RULES = ("values_finite", "length_within_bounds", "length_at_least_crop_length")


def _check(
    df: pd.DataFrame, p: DataParams, pos: str, whole_set: bool
) -> tuple[pd.DataFrame, list[Problem]]:
    """(the validated frame, no problem) or (`df`, every rule it breaks)."""
    try:
        return signal_schema(p, pos, whole_set).validate(df, lazy=True), []
    except SchemaErrors as e:
        problems = []
        for check, cases in e.failure_cases.groupby("check", sort=False):
            rule, detail = _describe(df, p, pos, str(check), cases)
            rows = sorted({int(i) for i in cases["index"].dropna()})
            problems.append((rule, detail, rows))
        return df, problems


def _check_channels(
    df: pd.DataFrame, p: DataParams, pos: str, whole_set: bool, file: str
) -> list[Problem]:
    """Every rule on a multichannel frame: the set's and the ids' once, the values' on each
    channel, named in the message (one message for the channels that break a rule alike)."""
    check_channel_shapes(df, file)
    names = channel_names(df) or ()
    alike: dict[tuple[str, str, tuple[int, ...]], list[str]] = {}
    problems: list[Problem] = []
    for k, name in enumerate(names):
        for rule, detail, rows in _check(channel_view(df, k), p, pos, whole_set)[1]:
            if rule in VALUE_RULES:
                alike.setdefault((rule, detail, tuple(rows)), []).append(name)
            elif k == 0:
                problems.append((rule, detail, rows))
    for (rule, detail, rows), channels in alike.items():
        which = f"channel {channels[0]!r}" if len(channels) == 1 else f"channels {quote(channels)}"
        problems.append((rule, f"{which}: {detail}", list(rows)))
    return problems


def validate_signals(
    df: pd.DataFrame, p: DataParams, file: str | None = None, whole_set: bool = True
) -> pd.DataFrame:
    """`df` with its labels in canonical form (faultwatch.data.labels) if it follows every rule;
    else raise DataError naming file, rows and rules (and the channel, for a multichannel
    frame: the rules on values hold for each channel). `whole_set=False` checks a batch that is
    added to a data set (production signals): every signal's rules, not the set's (two classes,
    enough faults), since a week of production may hold no fault at all."""
    file = file or df.attrs.get("source", "<data>")
    if df.empty:
        raise DataError(file, "not_empty", "no signals")
    labels, numeric = canonical_labels(df["label"])
    df = df.assign(label=labels)
    pos = label_text(p.positive_label, numeric)
    if whole_set and not (labels == pos).any():
        how = "as numbers" if numeric else "as text"
        raise DataError(
            file,
            "positive_label_present",
            f"data.positive_label={p.positive_label!r} matches no class; classes found "
            f"(compared {how}): {list_classes(labels)}",
        )
    if channel_names(df) is None:
        df, problems = _check(df, p, pos, whole_set)
    else:
        problems = _check_channels(df, p, pos, whole_set, file)
    if not problems:
        return df
    errors = [DataError(file, rule, detail, rows) for rule, detail, rows in problems]
    if len(errors) == 1:
        raise errors[0]
    first = errors[0]
    first.args = ("\n".join(str(x) for x in errors),)
    raise first
