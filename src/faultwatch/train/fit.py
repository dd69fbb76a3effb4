"""The fit itself: the data and the model from params, and a Lightning trainer that is
deterministic and quiet about what is not the user's business."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

from faultwatch.errors import DataError
from faultwatch.model.datamodule import SignalDataModule
from faultwatch.model.module import FaultClassifier
from faultwatch.model.network import FaultCNN
from faultwatch.model.params import TrainParams
from faultwatch.paths import resolve


@dataclass(frozen=True)
class TrainingData:
    module: SignalDataModule
    n_healthy: int
    n_fault: int
    positive_label: str
    channels: tuple[str, ...] | None = None  # None: univariate


def split_files(params: TrainParams, root: Path) -> tuple[Path, Path]:
    """The train and val split files, which the earlier stages must have written."""
    train_path, val_path = resolve(params.train_path, root), resolve(params.val_path, root)
    for path in (train_path, val_path):
        if not path.is_file():
            raise DataError(str(path), "file_exists", "no such split file (run the earlier stages)")
    return train_path, val_path


def load_data(params: TrainParams, train_path: Path, val_path: Path) -> TrainingData:
    """The data module, refused where a split has no fault signal to learn from or rank by."""
    dm = SignalDataModule(
        train_path,
        val_path,
        length=params.length,
        batch_size=params.batch_size,
        seed=params.seed,
        num_workers=params.num_workers,
    )
    n_healthy, n_fault = dm.class_counts("train")
    if n_fault == 0:
        raise DataError(str(train_path), "fault_present", "no fault signal to learn from")
    if dm.class_counts("val")[1] == 0:
        raise DataError(str(val_path), "fault_present", "no fault signal: val_pr_auc is undefined")
    return TrainingData(dm, n_healthy, n_fault, dm.positive_label(), dm.channels())


def resolve_pos_weight(params: TrainParams, n_healthy: int, n_fault: int) -> float | None:
    """The fault class's BCE weight: healthy / fault in train for `auto`."""
    if params.pos_weight == "auto":
        return n_healthy / n_fault
    return float(params.pos_weight) if params.pos_weight is not None else None


def build_classifier(
    params: TrainParams, pos_weight: float | None, in_channels: int = 1
) -> FaultClassifier:
    network = FaultCNN(params.channels, params.kernel_size, params.dropout, in_channels)
    weight = torch.tensor(pos_weight) if pos_weight else None
    scheduler = None
    if params.lr_schedule == "cosine":
        scheduler = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=params.max_epochs)
    return FaultClassifier(
        network=network,
        optimizer=partial(torch.optim.AdamW, lr=params.lr, weight_decay=params.weight_decay),
        loss=nn.BCEWithLogitsLoss(pos_weight=weight),
        scheduler=scheduler,
    )


def build_trainer(
    params: TrainParams,
    ckpt_dir: Path,
    callbacks: Sequence[Callback],
    logger: Any,
    progress_bar: bool,
) -> pl.Trainer:
    return pl.Trainer(
        accelerator=params.accelerator,
        devices=params.devices,
        strategy=params.strategy,
        num_nodes=params.num_nodes,
        precision=params.precision,
        max_epochs=params.max_epochs,
        deterministic=params.deterministic,
        callbacks=list(callbacks),
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        default_root_dir=str(ckpt_dir),
    )


class _RankZeroInfo(logging.Filter):
    """Lightning's rank-zero messages: its adverts (`Tip:`) dropped; its information (the
    hardware it found, why fit stopped) printed as plain output (stdout), not through the
    stderr handler Lightning installs at import, which a notebook shows as a red error box;
    its warnings go on to that handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Tip:" in message:
            return False
        if record.levelno < logging.WARNING:
            print(message, file=sys.stdout, flush=True)
            return False
        return True


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Drop what Lightning prints that is not the user's business: its advert for litlogger
    and a deprecation inside its own code (torch's LeafSpec); its information lines are plain
    output (`_RankZeroInfo`). Its other warnings stay."""
    tip = _RankZeroInfo()
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning.utilities.rank_zero",)]
    for lg in loggers:
        lg.addFilter(tip)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
            )
            yield
    finally:
        for lg in loggers:
            lg.removeFilter(tip)


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """torch.use_deterministic_algorithms for the block, restored after (it is process-wide)."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # CUDA needs it, set early
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)
