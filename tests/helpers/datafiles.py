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


def write_ts_channels(df: pd.DataFrame, path: Path) -> Path:
    """A multivariate sktime .ts file (`@univariate false`, `@dimensions N`): one line a
    signal, its dimensions separated by ':' before the label; `values` are (channels, samples)."""
    labels = " ".join(sorted(df.label.unique()))
    n_dims = len(df["values"].iloc[0])
    equal = df["values"].map(lambda v: len(v[0])).nunique() == 1
    head = [
        "# tiny multivariate set",
        "@problemName tiny3",
        "@univariate false",
        f"@dimensions {n_dims}",
        f"@equalLength {str(equal).lower()}",
        f"@classLabel true {labels}",
        "@data",
    ]
    body = [
        ":".join(",".join(map(repr, ch.tolist())) for ch in v) + f":{lab}"
        for lab, v in zip(df.label, df["values"], strict=True)
    ]
    path.write_text("\n".join(head + body) + "\n")
    return path


def write_long_channels(
    df: pd.DataFrame, path: Path, names: tuple[str, ...], with_time: bool = True
) -> Path:
    """The long CSV layout with a channel column: `id,label,channel,value[,time]`, one sample a
    line, channels interleaved sample by sample (as a logger writes them)."""
    lines = ["id,label,channel,value" + (",time" if with_time else "")]
    for ident, lab, v in zip(df["id"], df.label, df["values"], strict=True):
        for t in range(v.shape[1]):
            for name, ch in zip(names, v, strict=True):
                lines.append(
                    f"{ident},{lab},{name},{float(ch[t])!r}" + (f",{t}" if with_time else "")
                )
    path.write_text("\n".join(lines) + "\n")
    return path


def write_parquet_nested(df: pd.DataFrame, path: Path, column: str = "values") -> Path:
    """Parquet with the signals in one list-of-lists column (channels x samples)."""
    out = df.assign(**{column: df["values"].map(lambda v: [list(ch) for ch in v])})
    if column != "values":
        out = out.drop(columns="values")
    out.to_parquet(path, index=False)
    return path


def write_parquet_columns(df: pd.DataFrame, path: Path, names: tuple[str, ...]) -> Path:
    """Parquet with one list column a channel, named after it (`x`, `y`, `z`)."""
    cols = {name: df["values"].map(lambda v, k=k: list(v[k])) for k, name in enumerate(names)}
    out = df.drop(columns="values").assign(**cols)
    out.to_parquet(path, index=False)
    return path
