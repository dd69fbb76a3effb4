"""A frame of signals (id, label, values) written in the raw formats the prepare stage reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_tsv(df: pd.DataFrame, path: Path) -> Path:
    """One signal a line: the label, then the values, tab-separated (the UCR layout)."""
    lines = [
        "\t".join([lab, *map(repr, v.tolist())])
        for lab, v in zip(df.label, df["values"], strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ts(df: pd.DataFrame, path: Path) -> Path:
    """sktime's .ts format: a header, then `values:label` a line."""
    labels = " ".join(sorted(df.label.unique()))
    head = [
        "# tiny test set",
        "@problemName tiny",
        "@univariate true",
        "@equalLength false",
        f"@classLabel true {labels}",
        "@data",
    ]
    body = [
        ",".join(map(repr, v.tolist())) + f":{lab}"
        for lab, v in zip(df.label, df["values"], strict=True)
    ]
    path.write_text("\n".join(head + body) + "\n")
    return path


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """The frame as Parquet, each signal a list column."""
    out = df.assign(values=df["values"].map(list))
    out.to_parquet(path, index=False)
    return path
