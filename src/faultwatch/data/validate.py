"""Schema of a signal table (pandera): what `prepare` accepts before it writes anything."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from faultwatch.data.params import DataParams
from faultwatch.errors import DataError


def _finite(values: pd.Series) -> pd.Series:
    return values.map(lambda v: bool(len(v)) and bool(np.isfinite(v).all()))


def signal_schema(p: DataParams) -> pa.DataFrameSchema:
    """Rules, by name: the name is what an error message reports."""
    pos = p.positive_label
    return pa.DataFrameSchema(
        {
            "id": pa.Column(str, unique=True, nullable=False),
            "label": pa.Column(str, nullable=False),
            "values": pa.Column(
                object,
                checks=[
                    pa.Check(_finite, name="values_finite"),
                    pa.Check(
                        lambda s: s.map(len).between(p.min_length, p.max_length),
                        name="length_within_bounds",
                    ),
                ],
            ),
        },
        checks=[
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


def _describe(df: pd.DataFrame, p: DataParams, check: str, cases: pd.DataFrame) -> tuple[str, str]:
    if check in _RULE_TEXT:
        rule, text = _RULE_TEXT[check]
        return rule, f"{text} ({', '.join(map(str, cases['failure_case'].head(5)))})"
    if check == "values_finite":
        return check, "values must be finite numbers (found NaN, inf or a missing value)"
    if check == "length_within_bounds":
        lengths = sorted({len(v) for v in cases["failure_case"].head(5)})
        return check, f"signal length must be in [{p.min_length}, {p.max_length}]; found {lengths}"
    if check == "at_least_two_classes":
        return check, f"at least two classes are needed; found only {sorted(df['label'].unique())}"
    if check == "min_fault_examples":
        n = int((df["label"] == p.positive_label).sum())
        return check, (
            f"at least {p.min_positive} examples of the fault class "
            f"data.positive_label='{p.positive_label}' are needed; found {n} "
            f"(labels present: {sorted(df['label'].unique())[:20]})"
        )
    return check, str(cases["failure_case"].head(5).tolist())


def validate_signals(df: pd.DataFrame, p: DataParams, file: str | None = None) -> pd.DataFrame:
    """Return `df` if it follows every rule; else raise DataError naming file, rows and rules."""
    file = file or df.attrs.get("source", "<data>")
    if df.empty:
        raise DataError(file, "not_empty", "no signals")
    try:
        return signal_schema(p).validate(df, lazy=True)
    except SchemaErrors as e:
        fc = e.failure_cases
        problems = []
        for check, cases in fc.groupby("check", sort=False):
            rule, detail = _describe(df, p, str(check), cases)
            rows = sorted({int(i) for i in cases["index"].dropna()})
            problems.append(DataError(file, rule, detail, rows))
        if len(problems) == 1:
            raise problems[0] from None
        first = problems[0]
        first.args = ("\n".join(str(x) for x in problems),)
        raise first from None
