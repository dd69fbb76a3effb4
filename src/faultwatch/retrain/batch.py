"""`retrain --from-log`: the labelled production signals of a window of the prediction log as a
batch file that `prepare` reads like any other (faultwatch.data's Parquet reader).

A univariate model's signals: Parquet with `id`, `label` and a list<double> `values`. A
multichannel model's: `values` list<list<double>> (channels x samples) and the channel names,
in the model's order as the log recorded them, under the schema metadata key
faultwatch.splits.CHANNELS_KEY, as the prepared splits write them, so `prepare` reads the batch
back as multichannel with those names (and matches them to the source's channels).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.retrain.loop import RetrainError
from faultwatch.serve import predlog
from faultwatch.splits import CHANNELS_KEY


def write_batch(batch: pd.DataFrame, dest: Path, channels: Sequence[str] | None = None) -> Path:
    """`batch` (id, label, values) as Parquet in `dest`: list<double> values, or for
    `channels` (channels, samples) arrays as list<list<double>> with the names in the schema
    metadata (CHANNELS_KEY)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest.parent.mkdir(parents=True, exist_ok=True)
    if channels is None:
        batch.assign(values=batch["values"].map(lambda v: [float(x) for x in v])).to_parquet(
            dest, index=False
        )
        return dest
    schema = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("label", pa.string()),
            pa.field("values", pa.list_(pa.list_(pa.float64()))),
        ],
        metadata={CHANNELS_KEY: json.dumps(list(channels)).encode()},
    )
    values = [np.asarray(v, dtype="float64").tolist() for v in batch["values"]]
    table = pa.table(
        {"id": batch["id"].tolist(), "label": batch["label"].tolist(), "values": values},
        schema=schema,
    )
    pq.write_table(table, dest)
    return dest


def logged_channels(
    signals: pd.DataFrame, target: str, start: float | None, end: float | None
) -> tuple[str, ...] | None:
    """The channel names the window's sampled signals were logged with (the predictions'
    `channels`), None when they are univariate. Signals of univariate and multichannel models,
    or of models with other channels, in one window are an error naming both: a batch holds
    the channels of one source."""
    multichannel = [np.ndim(v) == 2 for v in signals["values"]]
    if not any(multichannel):
        return None
    if not all(multichannel):
        raise RetrainError(
            f"--from-log {target}: the window holds {sum(multichannel)} multichannel and "
            f"{multichannel.count(False)} univariate signals (models of two kinds): choose "
            "a window (--since, --until) where one model answered"
        )
    logged = predlog.read_predictions(target, start, end).set_index("prediction_id")
    names = logged["channels"].reindex(signals["prediction_id"])
    found = {str(n): pid for pid, n in names.items()}
    if len(found) > 1 or pd.isna(names).any():
        shown = "; ".join(f"{n} (prediction {pid})" for n, pid in list(found.items())[:3])
        raise RetrainError(
            f"--from-log {target}: the signals were logged with different channels ({shown}): "
            "choose a window (--since, --until) where one model answered"
        )
    channels = tuple(json.loads(next(iter(found))))
    counts = {np.shape(v)[0] for v in signals["values"]}
    if counts != {len(channels)}:
        raise RetrainError(
            f"--from-log {target}: signals of {sorted(counts)} channels logged with the "
            f"channel names {list(channels)}"
        )
    return channels


def of_group(
    signals: pd.DataFrame, target: str, start: float | None, end: float | None, group: str
) -> pd.DataFrame:
    """The signals `group` answered (the log's `model` column; the project's own model,
    DEFAULT_ARTIFACT, also answered the rows logged without one, before fleets)."""
    from faultwatch.groups import DEFAULT_ARTIFACT

    logged = predlog.read_predictions(target, start, end).set_index("prediction_id")
    model = logged["model"].reindex(signals["prediction_id"])
    mine = (model == group) | (model.isna() & (group == DEFAULT_ARTIFACT))
    return signals[mine.to_numpy()].reset_index(drop=True)


def batch_from_log(
    target: str,
    start: float | None,
    end: float | None,
    dest: Path,
    group: str | None = None,
    labellers: Sequence[str] = (),
) -> int:
    """The labelled production signals of [start, end) from the prediction log, as a Parquet
    batch in `dest` (id = prediction_id, label = the delayed true label; per channel for a
    multichannel model), only those `group` answered when given, and only the labels
    `labellers` gave when any are named; returns the count."""
    df = predlog.read_signals(target, start, end, labelled_only=True)
    if group is not None and not df.empty:
        df = of_group(df, target, start, end, group)
    if labellers and not df.empty:
        df = df[df["labeller"].isin(list(labellers))].reset_index(drop=True)
    if df.empty:
        whose = f" of group {group}" if group is not None else ""
        by = f" labelled by {', '.join(labellers)}" if labellers else ""
        raise RetrainError(
            f"--from-log {target}: no labelled signals{whose}{by} in the window (signals are "
            "sampled at FAULTWATCH_LOG_SIGNALS, labels come through POST /feedback)"
        )
    batch = pd.DataFrame(
        {
            "id": df["prediction_id"].astype(str),
            "label": df["true_label"].astype(str),
            "values": df["values"],
        }
    )
    write_batch(batch, dest, logged_channels(df, target, start, end))
    return len(batch)
