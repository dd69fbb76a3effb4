"""`train()`: assemble a run from its pieces (identity, data, model, callbacks, tracking), fit
it, export the kept epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from faultwatch.model.params import TrainParams
from faultwatch.paths import output
from faultwatch.train.callbacks import (
    EpochHistory,
    EpochProgress,
    RngStateInCheckpoint,
    best_checkpoint,
    early_stopping,
)
from faultwatch.train.export import (
    TrainResult,
    best_pr_auc,
    epoch_of,
    export_model,
    history_frame,
    kept_checkpoint,
    model_meta,
    train_result,
)
from faultwatch.train.fit import (
    build_classifier,
    build_trainer,
    deterministic_algorithms,
    load_data,
    quiet_lightning,
    resolve_pos_weight,
    split_files,
)
from faultwatch.train.identity import close_run, open_run
from faultwatch.train.tracking import finish_tracking, log_run_params, wandb_logger, wandb_mode


def train(
    params: TrainParams,
    root: Path,
    callbacks: Sequence[Callback] = (),
    progress_bar: bool = False,
) -> TrainResult:
    """Fit, keep the best epoch by val_pr_auc, write it to `params.model_dir` with save_model."""
    train_path, val_path = split_files(params, root)
    run = open_run(params, root, [train_path, val_path])

    pl.seed_everything(params.seed, workers=True, verbose=False)
    data = load_data(params, train_path, val_path)
    pos_weight = resolve_pos_weight(params, data.n_healthy, data.n_fault)
    model = build_classifier(params, pos_weight, len(data.channels or ("",)))

    history, checkpoint = EpochHistory(), best_checkpoint(run.ckpt_dir)
    mode = wandb_mode() if params.wandb else "disabled"
    logger = wandb_logger(params, root, run.wandb_run_id, run.key) if mode != "disabled" else False
    own = [history, RngStateInCheckpoint(), early_stopping(params.patience), EpochProgress()]
    with deterministic_algorithms(params.deterministic), quiet_lightning():
        trainer = build_trainer(
            params, run.ckpt_dir, [*own, *callbacks, checkpoint], logger, progress_bar
        )
        if logger:
            log_run_params(logger, params, run.key, data, pos_weight, model)
        try:
            trainer.fit(model, datamodule=data.module, ckpt_path=run.resume_from, weights_only=True)
        finally:
            if logger:
                finish_tracking(logger, trainer, checkpoint, history)

    best = kept_checkpoint(checkpoint, run)
    frame = history_frame(history, run.last)
    best_epoch = epoch_of(best)
    best_score = best_pr_auc(frame, best_epoch)
    meta = model_meta(params, data.positive_label, best_score, run.key, data.channels)
    model_dir = output(params.model_dir, root)
    if trainer.is_global_zero:
        meta = export_model(params, best, model_dir, meta)
        close_run(run)
    tracked = run.wandb_run_id if logger else None
    return train_result(params, run, frame, best_epoch, best_score, mode, tracked, model_dir, meta)
