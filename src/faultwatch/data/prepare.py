"""The `prepare` stage: ingest the source, validate it, split it, write Parquet atomically.

Production signals labelled later (`faultwatch retrain`) join the data as files in
`data.production_dir` (default data/raw/production/, inside the stage's `data/raw` dependency,
so DVC sees each new batch as a new version of the data), in a subfolder named after the
`data.source` they were labelled for (`production_folder`): batches labelled for another
source never join, so pointing the pipeline at other data leaves them out instead of mixing
two machines' signals. They are validated with the same rules as the source, signal by signal, and are appended to the **training split only**: the
validation and test splits stay those of `data.source`, so the promotion gate compares a
retrained model with production on the same test signals as before.

Multichannel sources (faultwatch.data.channels) give splits whose `values` are
list<list<double>> (channels x samples, `length` = samples per channel), the channel names in
the schema metadata CHANNELS_KEY; `read_split` reads either kind back.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from faultwatch.data.channels import CHANNELS_KEY, channel_names, match_channels, select_channels
from faultwatch.data.clean import crop_signals, handle_missing
from faultwatch.data.params import DataParams, SplitParams
from faultwatch.data.readers import read_source
from faultwatch.data.split import split_stratified
from faultwatch.data.validate import positive_class, validate_signals
from faultwatch.errors import DataError
from faultwatch.paths import resolve, write_text_atomic
from faultwatch.splits import read_split  # noqa: F401  (re-exported: the data layer's reader)

SPLITS = ("train", "val", "test")
# the healthy class name a served model gives (model.json class_names[0]): labels that come
# back through POST /feedback use it
HEALTHY_LABEL = "healthy"
PRODUCTION_FORMATS = (".tsv", ".csv", ".ts", ".parquet")
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


def split_schema(channels: tuple[str, ...] | None = None) -> pa.Schema:
    """SCHEMA for univariate splits; for multichannel ones `values` is list<list<double>>
    (channels x samples) and the schema metadata CHANNELS_KEY holds the names (JSON list)."""
    if channels is None:
        return SCHEMA
    i = SCHEMA.get_field_index("values")
    schema = SCHEMA.set(i, pa.field("values", pa.list_(pa.list_(pa.float64()))))
    return schema.with_metadata({CHANNELS_KEY: json.dumps(list(channels)).encode()})


def to_table(df: pd.DataFrame, y: pd.Series, channels: tuple[str, ...] | None = None) -> pa.Table:
    """One split as the prepared Parquet table (split_schema), with its source rows and lengths
    (samples per channel)."""
    if channels is None:
        length = df["values"].map(len)
        values = [np.asarray(v, dtype="float64") for v in df["values"]]
    else:
        length = df["values"].map(lambda v: np.shape(v)[1])
        values = [list(np.asarray(v, dtype="float64")) for v in df["values"]]
    return pa.table(
        {
            "id": df["id"].tolist(),
            "label": df["label"].tolist(),
            "y": y.loc[df.index].to_numpy(),
            "length": length.to_numpy(dtype="int32"),
            "source_row": df.index.to_numpy(dtype="int64"),
            "values": values,
        },
        schema=split_schema(channels),
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
    """Signals, fault signals and the fault ratio of each split (prepare.json)."""
    out = {}
    for name, part in parts.items():
        n_fault = int(y.loc[part.index].sum())
        out[name] = {
            "n_signals": len(part),
            "n_fault": n_fault,
            "fault_ratio": round(n_fault / len(part), 6),
        }
    return out


def production_folder(data: DataParams, root: Path) -> Path | None:
    """Where the production batches of `data.source` lie: `data.production_dir`/<the source,
    as one folder name> (bundled:PLAID -> bundled_PLAID, data/raw/pumps.tsv ->
    data_raw_pumps.tsv); None when `data.production_dir` is empty."""
    if not data.production_dir:
        return None
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", str(data.source)).strip("_.") or "source"
    return resolve(data.production_dir, root) / key


def production_files(data: DataParams, root: Path) -> list[Path]:
    """The batches of `data.source` (production_folder), in name order (their names start with
    the time they were added); DVC's pointer files and anything else there are not data."""
    folder = production_folder(data, root)
    if folder is None or not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PRODUCTION_FORMATS
    )


def read_production(
    path: Path,
    data: DataParams,
    root: Path,
    classes: set[str],
    channels: tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One batch of labelled production signals, through the source's reader, `data.missing`,
    the per-signal rules and the crop; its labels must be classes of the source or
    HEALTHY_LABEL (a typo must not become a healthy example), its channels the source's
    (`channels`, after data.channels). Ids get the file's stem as a prefix, so that batches
    and the source never share one."""
    df = read_source(str(path), root)
    file = df.attrs.get("source", str(path))
    df = match_channels(df, channels, file, data.source)
    df, gaps = handle_missing(df, data.missing)
    df = validate_signals(df, data, file=file, whole_set=False)
    known = classes | {HEALTHY_LABEL}
    unknown = ~df["label"].isin(known)
    if unknown.any():
        found = sorted(set(df.loc[unknown, "label"]))[:5]
        raise DataError(
            file,
            "label_known",
            f"labels {found} are no class of {data.source} and not {HEALTHY_LABEL!r}; "
            f"expected one of {sorted(known)[:20]}",
            [int(i) for i in df.index[unknown]],
        )
    df = crop_signals(df, data.crop_length)
    return df.assign(id=path.stem + "/" + df["id"].astype(str)), gaps


def load_splits(
    data: DataParams, split: SplitParams, root: Path, extra: list[Path] | None = None
) -> tuple[dict[str, pa.Table], dict]:
    """Everything `prepare` does short of writing: read, validate and split the source, then
    append every production batch (and `extra` files, as if they were in the production
    folder) to the training split. Raises DataError, naming file, rows and rule, on the first
    bad file. Returns the split tables and the summary prepare.json holds."""
    df = read_source(data.source, root, data.filter)
    file = df.attrs.get("source", data.source)
    df = select_channels(df, data.channels, file)
    channels = channel_names(df)
    df, gaps = handle_missing(df, data.missing)
    df = validate_signals(df, data, file=file)
    df = crop_signals(df, data.crop_length)
    y = fault_target(df, data.positive_label)
    if data.limit and data.limit < len(df):
        df, _ = train_test_split(df, train_size=data.limit, stratify=y, random_state=split.seed)
        df = df.sort_index()
        y = y.loc[df.index]
    parts = split_stratified(df, y, split.val_fraction, split.test_fraction, split.seed)
    tables = {k: to_table(v, y, channels) for k, v in parts.items()}
    summary: dict = {**split_summary(parts, y)}
    classes = set(df["label"])
    batches = [*production_files(data, root), *(extra or [])]
    added: dict = {"files": len(batches), "n_signals": 0, "n_fault": 0, "batches": []}
    for path in batches:
        batch, batch_gaps = read_production(path, data, root, classes, channels)
        yb = fault_target(batch, data.positive_label)
        tables["train"] = pa.concat_tables([tables["train"], to_table(batch, yb, channels)])
        added["n_signals"] += len(batch)
        added["n_fault"] += int(yb.sum())
        added["batches"].append(
            {"file": path.name, "n_signals": len(batch), "n_fault": int(yb.sum())}
        )
        gaps = {k: gaps[k] + batch_gaps[k] for k in gaps}
    if batches:
        train = summary["train"]
        train["n_signals"] += added["n_signals"]
        train["n_fault"] += added["n_fault"]
        train["fault_ratio"] = round(train["n_fault"] / train["n_signals"], 6)
    return tables, {**summary, "production": added, "missing": gaps}


def prepare(data: DataParams, split: SplitParams, root: Path) -> dict[str, dict[str, float]]:
    """Read, validate, split and write; raises DataError before touching any output.

    Returns (and writes to reports/metrics/prepare.json) each split's counts, under
    `production` the batches appended to the training split, and under `missing` what
    `data.missing` did (signals interpolated or dropped, samples filled)."""
    tables, summary = load_splits(data, split, root)
    write_parquet_atomic(tables, root / split.out_dir)
    metrics = root / "reports" / "metrics" / "prepare.json"
    write_text_atomic(metrics, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
