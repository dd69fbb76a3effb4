"""Tracking a run in Weights & Biases: offline unless asked for and a key is there."""

from __future__ import annotations

import netrc
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from faultwatch import settings
from faultwatch.model.module import FaultClassifier
from faultwatch.model.params import TrainParams
from faultwatch.train.callbacks import EpochHistory
from faultwatch.train.export import run_summary
from faultwatch.train.fit import TrainingData

if TYPE_CHECKING:
    from pytorch_lightning.loggers import WandbLogger


def wandb_has_key(env: Mapping[str, str] | None = None) -> bool:
    """A W&B key in the environment (`env`, else this process's) or in ~/.netrc."""
    if settings.get("WANDB_API_KEY", env):
        return True
    try:
        host = settings.get("WANDB_BASE_URL", env).split("://")[-1].split("/")[0]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode(env: Mapping[str, str] | None = None) -> str:
    """`online` only when asked for (WANDB_MODE=online) and a key is there; `disabled` if asked."""
    asked = settings.get("WANDB_MODE", env)
    if asked == "disabled":
        return "disabled"
    return "online" if asked == "online" and wandb_has_key(env) else "offline"


def wandb_logger(params: TrainParams, root: Path, run_id: str, key: str) -> WandbLogger:
    """The run's W&B logger, resuming the W&B run `run_id` where it exists."""
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(
        project=params.wandb_project,
        save_dir=str(root),
        id=run_id,
        resume="allow",
        name=f"train-{key[:8]}",
        mode=wandb_mode(),
        log_model=False,
        job_type="train",
        settings=wandb.Settings(console="off", silent=True, save_code=False),
    )
    # Lightning passes anonymous=None, which wandb 0.31 warns about on every run
    logger._wandb_init.pop("anonymous", None)
    return logger


def log_run_params(
    logger: WandbLogger,
    params: TrainParams,
    key: str,
    data: TrainingData,
    pos_weight: float | None,
    model: FaultClassifier,
) -> None:
    """The params, the run key and what the training data held, as the run's config."""
    logger.log_hyperparams(
        {
            **params.model_dump(),
            "run_key": key,
            "positive_label": data.positive_label,
            "n_train": data.n_healthy + data.n_fault,
            "n_train_fault": data.n_fault,
            "pos_weight_value": pos_weight,
            "n_parameters": sum(p.numel() for p in model.parameters()),
        }
    )


def finish_tracking(
    logger: WandbLogger, trainer: pl.Trainer, checkpoint: ModelCheckpoint, history: EpochHistory
) -> None:
    """The summary of a finished fit, then the W&B run closed (failed if the fit did not end)."""
    import wandb

    if trainer.is_global_zero and trainer.state.finished:
        logger.experiment.summary.update(run_summary(checkpoint, history))
    wandb.finish(exit_code=0 if trainer.state.finished else 1)
