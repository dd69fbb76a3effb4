"""Where the monitor's inputs come from: the prediction log's window (through the read
functions of faultwatch.serve.predlog, SQLite or PostgreSQL alike), the training reference and
its embeddings, and production signals shaped for the EDA views of 01_eda.ipynb.

A multichannel model's rows carry their monitor features per channel in the log's
`channel_features` (a JSON object, `{"rms[x]": 1.2, ...}`; the fixed feature columns are NULL
there): `expand_channel_features` makes them the columns (`rms[x]` ...) the monitor tests, and
its sampled signals come back as (channels, samples) arrays.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.monitor.params import MonitorParams
from faultwatch.monitor.reference import model_embeddings, model_for_version, reference_frame
from faultwatch.monitor.report import ReadEmbeddings, Reference
from faultwatch.paths import resolve
from faultwatch.serve import predlog
from faultwatch.splits import read_split

SIGNAL_FIELDS = ("prediction_id", "time", "values", "true_label", "model_version")


@dataclass
class Window:
    """One window of the log: predictions, refused requests, and how to read embeddings.
    `note`: why the window is empty when there is no log to read yet (else None)."""

    start: float | None
    end: float
    target: str
    predictions: pd.DataFrame
    rejected: pd.DataFrame
    note: str | None = None

    def read_embeddings(self) -> ReadEmbeddings:
        """A reader of this log's embeddings by prediction id (the monitor reads only its
        subsample, never the whole window's)."""
        return lambda ids: predlog.read_embeddings(self.target, ids)

    def signals(self) -> pd.DataFrame:
        """The sampled raw signals of the window (FAULTWATCH_LOG_SIGNALS)."""
        if self.note is not None:
            return pd.DataFrame(columns=list(SIGNAL_FIELDS))
        return predlog.read_signals(self.target, self.start, self.end)


def expand_channel_features(predictions: pd.DataFrame) -> pd.DataFrame:
    """`read_predictions`' rows with the log's `channel_features` (JSON, multichannel rows
    only) in its place as one float column per name (`rms[x]` ...; NaN where a row has none),
    by the log's own reader (predlog.features_frame). A frame without multichannel rows is
    returned as it is."""
    cells = predictions.get("channel_features")
    if cells is None or cells.isna().all():
        return predictions
    wide = predlog.features_frame(predictions)
    out = predictions.drop(columns=["channel_features", *wide.columns], errors="ignore")
    return pd.concat([out, wide], axis=1)


def log_target(params: MonitorParams) -> str:
    """`monitor.log`, else the log the service writes (FAULTWATCH_PREDICTION_LOG or the
    project's reports/serving/predictions.sqlite)."""
    if params.log:
        return params.log if "://" in params.log else str(resolve(params.log))
    return str(predlog.default_path())


def no_log_yet(target: str) -> str:
    """What to do when there is no prediction log at `target` yet."""
    return (
        f"monitor.log: {target}: no prediction log there yet. Serve a model and send it "
        "requests (`faultwatch serve`, or `faultwatch deploy up`), or point monitor.log (`log` "
        "in the notebook's parameters cell) or FAULTWATCH_PREDICTION_LOG at a log that exists."
    )


def read_window(params: MonitorParams, now: float | None = None) -> Window:
    """The window's predictions (of `monitor.roles`) and refused requests.

    A SQLite log that does not exist yet (nothing served so far) gives an empty window whose
    `note` says so: the notebook then runs through in JupyterLab on a fresh project, while
    `faultwatch monitor` refuses such a log before running it (check_log_exists)."""
    start, end = params.window(time.time() if now is None else now)
    target = log_target(params)
    if not predlog.log_exists(target):
        return Window(
            start,
            end,
            target,
            pd.DataFrame(columns=[*predlog.PREDICTION_FIELDS, "true_label", "label_time"]),
            pd.DataFrame(columns=list(predlog.REJECTED_FIELDS)),
            note=no_log_yet(target),
        )
    predictions = predlog.read_predictions(target, start, end, roles=tuple(params.roles))
    if params.model is not None:
        predictions = predictions[of_group(predictions, params.model)].reset_index(drop=True)
    predictions = expand_channel_features(predictions)
    rejected = predlog.read_rejected(target, start, end)
    if params.model is not None and "model" in rejected.columns:
        rejected = rejected[of_group(rejected, params.model)].reset_index(drop=True)
    if "role" in rejected.columns:
        rejected = rejected[rejected["role"].isin(params.roles)]
    return Window(start, end, target, predictions, rejected)


def of_group(predictions: pd.DataFrame, group: str) -> pd.Series:
    """The rows answered by model group `group`; the project's own model (fault_cnn) also owns
    the rows written before the log named the group (NULL)."""
    from faultwatch.serve.store import MODEL_NAME

    model = predictions["model"] if "model" in predictions.columns else None
    if model is None:
        return pd.Series(group == MODEL_NAME, index=predictions.index)
    mine = model == group
    return mine | model.isna() if group == MODEL_NAME else mine


def check_log_exists(params: MonitorParams) -> None:
    """PredictionLogError (saying what to do) when there is no prediction log to monitor."""
    target = log_target(params)
    if not predlog.log_exists(target):
        raise predlog.PredictionLogError(no_log_yet(target))


def test_fault_rate(prepare_metrics: Path) -> float | None:
    """The test split's fault ratio from reports/metrics/prepare.json, None without it."""
    try:
        return float(json.loads(prepare_metrics.read_text())["test"]["fault_ratio"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def load_reference(params: MonitorParams, root: Path | None = None) -> Reference:
    """The training split through the logged features (per channel for a multichannel split),
    and per-version embeddings of it (computed on first use, with the model that logged that
    version)."""
    path = resolve(params.reference_path, root)
    if not path.is_file():
        raise FileNotFoundError(f"monitor.reference_path: {path}: not found (run `dvc repro`)")
    train = read_split(path)
    model_dir = resolve(params.model_dir, root)
    register_file = resolve(params.register_file, root)

    def embeddings(version: str) -> tuple[np.ndarray | None, str]:
        model, source = model_for_version(version, model_dir, register_file)
        if model is None:
            return None, source
        return model_embeddings(model, train["values"]), source

    return Reference(
        frame=reference_frame(train),
        test_fault_rate=test_fault_rate(resolve(params.prepare_metrics, root)),
        embeddings=embeddings,
    )


def production_eda_frame(signals: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Sampled production signals in the schema eda.py reads (label, y, length, values, split):
    the true label where one arrived (`split` "labelled"), else the model's answer (`split`
    "predicted"), so production data is looked at the way the training data was. Multichannel
    signals stay (channels, samples), `length` counts samples per channel, and the channel
    names (the predictions' `channels`) are in `attrs["channels"]`."""
    cols = ["id", "label", "y", "length", "values", "split", "model_version"]
    if signals is None or signals.empty:
        return pd.DataFrame(columns=cols)
    answers = predictions.set_index("prediction_id")[["label", "is_fault"]]
    df = signals.join(answers, on="prediction_id", how="left")
    fault_label = (
        str(answers.loc[answers["is_fault"] == 1, "label"].mode().iloc[0])
        if (answers["is_fault"] == 1).any()
        else None
    )
    labelled = df["true_label"].notna()
    true_fault = df["true_label"].astype("string") == fault_label
    out = pd.DataFrame(
        {
            "id": df["prediction_id"],
            "label": df["true_label"].where(labelled, df["label"]).astype(str),
            "y": np.where(labelled, true_fault.fillna(False), df["is_fault"].fillna(0)).astype(int),
            "length": [np.shape(v)[-1] for v in df["values"]],
            "values": [np.asarray(v, dtype="float64") for v in df["values"]],
            "split": np.where(labelled, "labelled", "predicted"),
            "model_version": df["model_version"],
        }
    )
    out = out.reset_index(drop=True)
    channels = logged_channels(predictions)
    if channels is not None and any(np.ndim(v) == 2 for v in out["values"]):
        out.attrs["channels"] = channels
    return out


def logged_channels(predictions: pd.DataFrame) -> tuple[str, ...] | None:
    """The channel names the window's multichannel rows logged (the last row's, the newest
    model's), None when every row is univariate."""
    if "channels" not in predictions.columns:
        return None
    named = predictions["channels"].dropna()
    if named.empty:
        return None
    last = named.iloc[-1]
    return tuple(last if isinstance(last, list | tuple) else json.loads(last))
