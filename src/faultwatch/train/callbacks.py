"""The Lightning callbacks a training run adds: its history, its progress lines, its RNG state
in the checkpoint, and which epoch it keeps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint

from faultwatch import progress
from faultwatch.model.module import MONITOR

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_pr_auc", MONITOR, "samples_per_s"]


class EpochHistory(Callback):
    """Per-epoch losses, val_pr_auc and training throughput; kept in the checkpoint, so a
    resumed run's history starts at epoch 0."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._t0 = 0.0
        self._samples = 0
        self._train_seconds = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0, self._samples, self._train_seconds = time.perf_counter(), 0, 0.0

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._samples += len(batch[1])
        self._train_seconds = time.perf_counter() - self._t0  # up to the last batch: no validation

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        for k in ("train_loss", "val_loss", "val_pr_auc", MONITOR):
            row[k] = float(m[k]) if k in m else float("nan")
        row["samples"] = self._samples
        row["train_seconds"] = self._train_seconds
        row["samples_per_s"] = self._samples / self._train_seconds if self._train_seconds else 0.0
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state.get("rows", [])]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=[*HISTORY_COLUMNS, "samples", "train_seconds"])


class EpochProgress(Callback):
    """One line per epoch on the terminal of `faultwatch nb run` and `dvc repro`, never in the
    notebook (faultwatch.progress); nothing in JupyterLab, where the history table follows."""

    def __init__(self, label: str = "train") -> None:
        self.label = label
        self._t0 = 0.0
        self._best = float("-inf")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (progress.in_runner() and trainer.is_global_zero):
            return
        m = trainer.callback_metrics
        figures = ", ".join(
            f"{k} {float(m[k]):.4f}" for k in ("train_loss", "val_loss", "val_pr_auc") if k in m
        )
        if "val_pr_auc" in m:
            self._best = max(self._best, float(m["val_pr_auc"]))
            figures += f" (best {self._best:.4f})"
        progress.step(
            f"[{self.label}] epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {figures}, "
            f"{time.perf_counter() - self._t0:.1f} s"
        )


class RngStateInCheckpoint(Callback):
    """Saves torch's global RNG state (dropout draws from it) with each checkpoint and restores
    it on resume, so a resumed run continues the random stream of the uninterrupted one."""

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "torch" in state:
            torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def best_checkpoint(ckpt_dir: Path) -> ModelCheckpoint:
    """Keeps the best epoch by MONITOR, and `last.ckpt` to resume from."""
    return ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{epoch:03d}",
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        save_last=True,
    )


def early_stopping(patience: int) -> EarlyStopping:
    return EarlyStopping(monitor=MONITOR, mode="max", patience=patience)
