"""The `prepare` stage: ingest the source, validate it, split it, write Parquet atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from faultwatch.data.clean import crop_signals, handle_missing
from faultwatch.data.params import DataParams, SplitParams
from faultwatch.data.readers import read_source
from faultwatch.data.split import split_stratified
from faultwatch.data.validate import positive_class, validate_signals
from faultwatch.paths import write_text_atomic

SPLITS = ("train", "val", "test")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("label", pa.string()),
        ("y", pa.int8()),
        ("length", pa.int32()),
        ("source_row", pa.int64()),
        ("values", pa.list_(pa.float64())),
    ]
)


def fault_target(df: pd.DataFrame, positive_label: str | int | float) -> pd.Series:
    """1 for the fault class (matched as faultwatch.data.labels says), 0 for every other."""
    pos = positive_class(df["label"], positive_label)
    return (df["label"] == pos).astype("int8").rename("y")


def to_table(df: pd.DataFrame, y: pd.Series) -> pa.Table:
    return pa.table(
        {
            "id": df["id"].tolist(),
            "label": df["label"].tolist(),
            "y": y.loc[df.index].to_numpy(),
            "length": df["values"].map(len).to_numpy(dtype="int32"),
            "source_row": df.index.to_numpy(dtype="int64"),
            "values": [np.asarray(v, dtype="float64") for v in df["values"]],
        },
        schema=SCHEMA,
    )


def write_parquet_atomic(tables: dict[str, pa.Table], out_dir: Path) -> dict[str, Path]:
    """Write every table to a temp file first; replace the old files only once all are written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for name, table in tables.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
            os.close(fd)
            pq.write_table(table, tmp, compression="zstd", write_statistics=False)
            staged[name] = Path(tmp)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    final = {}
    for name, tmp in staged.items():
        final[name] = out_dir / f"{name}.parquet"
        os.chmod(tmp, 0o644)
        os.replace(tmp, final[name])
    return final


def split_summary(parts: dict[str, pd.DataFrame], y: pd.Series) -> dict[str, dict[str, float]]:
    out = {}
    for name, part in parts.items():
        n_fault = int(y.loc[part.index].sum())
        out[name] = {
            "n_signals": len(part),
            "n_fault": n_fault,
            "fault_ratio": round(n_fault / len(part), 6),
        }
    return out


def prepare(data: DataParams, split: SplitParams, root: Path) -> dict[str, dict[str, float]]:
    """Read, validate, split and write; raises DataError before touching any output.

    Returns (and writes to reports/metrics/prepare.json) each split's counts and, under
    `missing`, what `data.missing` did (signals interpolated or dropped, samples filled)."""
    df = read_source(data.source, root)
    file = df.attrs.get("source", data.source)
    df, gaps = handle_missing(df, data.missing)
    df = validate_signals(df, data, file=file)
    df = crop_signals(df, data.crop_length)
    y = fault_target(df, data.positive_label)
    if data.limit and data.limit < len(df):
        df, _ = train_test_split(df, train_size=data.limit, stratify=y, random_state=split.seed)
        df = df.sort_index()
        y = y.loc[df.index]
    parts = split_stratified(df, y, split.val_fraction, split.test_fraction, split.seed)
    write_parquet_atomic({k: to_table(v, y) for k, v in parts.items()}, root / split.out_dir)
    summary = {**split_summary(parts, y), "missing": gaps}
    metrics = root / "reports" / "metrics" / "prepare.json"
    write_text_atomic(metrics, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
