"""What a finished run leaves: the kept epoch's weights in the model folder, the result, and the
run record (run.json, history.csv) for the reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from faultwatch.model.io import save_model
from faultwatch.model.module import MONITOR
from faultwatch.model.network import FaultCNN
from faultwatch.model.params import TrainParams
from faultwatch.paths import write_text_atomic
from faultwatch.train.callbacks import EpochHistory
from faultwatch.train.identity import Run

HISTORY_FILE = "history.csv"
RUN_FILE = "run.json"


@dataclass
class TrainResult:
    best_val_pr_auc: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    wandb_run_id: str | None
    wandb_mode: str
    samples_per_s: float
    train_seconds: float
    resumed_from_epoch: int | None
    run_key: str
    model_dir: Path
    history: pd.DataFrame = field(repr=False)
    meta: dict[str, Any] = field(repr=False, default_factory=dict)


def model_meta(
    params: TrainParams,
    positive_label: str,
    best_score: float,
    key: str,
    channels: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The run's part of model.json. Only what the inputs determine goes into the model folder
    (the W&B run id and timings go to the run record): the same data, params and code give the
    same folder, so DVC sees nothing new downstream of a forced re-train. A multichannel
    model records its channels in order (a univariate one's description is as it always was)."""
    meta: dict[str, Any] = {
        "input_length": params.length,
        "positive_label": positive_label,
        "best_val_pr_auc": round(best_score, 6),
        "run_key": key,
    }
    if channels is not None:
        meta["channels"] = list(channels)
    return meta


def train_result(
    params: TrainParams,
    run: Run,
    frame: pd.DataFrame,
    best_epoch: int,
    best_score: float,
    mode: str,
    wandb_run_id: str | None,
    model_dir: Path,
    meta: dict[str, Any],
) -> TrainResult:
    """The result of a fit whose per-epoch history is `frame`."""
    train_seconds = float(frame["train_seconds"].sum())
    return TrainResult(
        best_val_pr_auc=best_score,
        best_epoch=best_epoch,
        epochs_run=len(frame),
        stopped_early=len(frame) < params.max_epochs,
        wandb_run_id=wandb_run_id,
        wandb_mode=mode,
        samples_per_s=float(frame["samples"].sum()) / train_seconds if train_seconds else 0.0,
        train_seconds=train_seconds,
        resumed_from_epoch=run.resumed_from_epoch,
        run_key=run.key,
        model_dir=model_dir,
        history=frame,
        meta=meta,
    )


def network_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint (loaded without unpickling code)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    prefix = "network."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def kept_checkpoint(checkpoint: ModelCheckpoint, run: Run) -> Path:
    """The best epoch's checkpoint (the last one where none was ranked)."""
    return Path(checkpoint.best_model_path) if checkpoint.best_model_path else run.last


def export_model(
    params: TrainParams, best: Path, model_dir: Path, meta: dict[str, Any]
) -> dict[str, Any]:
    """The kept epoch's network written to `model_dir` (save_model); returns the meta saved."""
    in_channels = len(meta.get("channels") or [""])
    network = FaultCNN(params.channels, params.kernel_size, params.dropout, in_channels)
    network.load_state_dict(network_state(best))
    return save_model(model_dir, network, meta)


def history_frame(history: EpochHistory, last: Path) -> pd.DataFrame:
    """The per-epoch rows; with a spawning strategy (ddp_spawn) they were collected in the
    worker processes, and are read back from the last checkpoint, which carries them."""
    if not history.rows and last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        history.load_state_dict(ckpt.get("callbacks", {}).get(history.state_key, {}))
    return history.frame()


def best_pr_auc(frame: pd.DataFrame, best_epoch: int) -> float:
    """val_pr_auc of the kept epoch."""
    row = frame[frame["epoch"] == best_epoch]
    if len(row):
        return float(row["val_pr_auc"].iloc[0])
    return float(frame["val_pr_auc"].max()) if len(frame) else float("nan")


def run_summary(checkpoint: ModelCheckpoint, history: EpochHistory) -> dict[str, Any]:
    """The figures a finished run reports to W&B's summary."""
    best_epoch = epoch_of(Path(checkpoint.best_model_path)) if checkpoint.best_model_path else -1
    return {
        "best_val_pr_auc": best_pr_auc(history.frame(), best_epoch),
        "best_epoch": best_epoch,
        "epochs_run": len(history.rows),
    }


def epoch_of(checkpoint: Path) -> int:
    """`best-epoch=007.ckpt` -> 7 (-1 for last.ckpt)."""
    stem = checkpoint.stem
    return int(stem.split("=")[-1]) if "epoch=" in stem else -1


def history_columns() -> list[str]:
    """The columns of history.csv."""
    return ["epoch", "train_loss", "val_loss", "val_pr_auc", MONITOR]


def write_run_record(result: TrainResult, report_dir: Path) -> list[Path]:
    """`run.json` (what changes from run to run: the W&B run id, timings) and `history.csv`
    (per-epoch losses and val_pr_auc, drawn by `dvc plots`) in `report_dir`."""
    run = {
        "wandb_run_id": result.wandb_run_id,
        "wandb_mode": result.wandb_mode,
        "run_key": result.run_key,
        "samples_per_s": round(result.samples_per_s, 1),
        "train_seconds": round(result.train_seconds, 3),
        "resumed_from_epoch": result.resumed_from_epoch,
    }
    columns = history_columns()
    return [
        write_text_atomic(report_dir / RUN_FILE, json.dumps(run, indent=2, sort_keys=True) + "\n"),
        write_text_atomic(
            report_dir / HISTORY_FILE,
            result.history[columns].to_csv(index=False, float_format="%.6g", lineterminator="\n"),
        ),
    ]
