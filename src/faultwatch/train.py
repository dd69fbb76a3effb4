"""The `train` stage: fit the fault classifier with Lightning, track it in W&B, save the best weights.

Runs are reproducible (seed_everything + deterministic algorithms: the same params on the
same machine give the same metrics and the same weights) and resumable: checkpoints go to
`<checkpoint_root>/<run key>/ckpt/`, where the run key hashes the params that shape the run and
the bytes of the training and validation files. A run that was interrupted (Ctrl+C, a killed
job, an exception) resumes from its `last.ckpt` when started again with the same key; a
changed parameter or data file gives another key, hence a fresh run, never a foreign one. A
run that finishes deletes its checkpoint folder: its result is `model_dir`, and re-running the
stage then retrains from scratch (what `dvc repro -f` expects) instead of resuming a done run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import netrc
import os
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import nn

from faultwatch import progress
from faultwatch.errors import DataError
from faultwatch.model.datamodule import SignalDataModule
from faultwatch.model.io import save_model, sha256_file
from faultwatch.model.module import MONITOR, FaultClassifier
from faultwatch.model.network import FaultCNN
from faultwatch.model.params import TrainParams
from faultwatch.paths import output, resolve, write_text_atomic

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_pr_auc", MONITOR, "samples_per_s"]


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


# ---------------------------------------------------------------- callbacks


class EpochHistory(Callback):
    """Per-epoch losses, val_pr_auc and training throughput; kept in the checkpoint, so a
    resumed run's history starts at epoch 0."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._t0 = 0.0
        self._samples = 0
        self._train_seconds = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0, self._samples, self._train_seconds = time.perf_counter(), 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._samples += len(batch[1])
        self._train_seconds = time.perf_counter() - self._t0  # up to the last batch: no validation

    def on_train_epoch_end(self, trainer, pl_module) -> None:
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

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
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


# ---------------------------------------------------------------- run identity and tracking


def run_key(params: TrainParams, data_files: Sequence[Path]) -> str:
    """Names a run: the params that shape it plus the content of its data files."""
    blob = {
        "params": params.run_key_fields(),
        "data": [sha256_file(p) for p in data_files],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def wandb_has_key(env: dict[str, str] | os._Environ = os.environ) -> bool:
    if env.get("WANDB_API_KEY"):
        return True
    try:
        host = env.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode(env: dict[str, str] | os._Environ = os.environ) -> str:
    """`online` only when asked for (WANDB_MODE=online) and a key is there; `disabled` if asked."""
    asked = env.get("WANDB_MODE", "offline")
    if asked == "disabled":
        return "disabled"
    return "online" if asked == "online" and wandb_has_key(env) else "offline"


def _wandb_logger(params: TrainParams, root: Path, run_id: str, key: str):
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


def _run_state(run_dir: Path, params: TrainParams) -> dict[str, Any]:
    """The run folder's run.json: the W&B run id to resume, and the params it stands for."""
    path = run_dir / "run.json"
    if path.is_file():
        return json.loads(path.read_text())
    state = {"wandb_run_id": uuid.uuid4().hex[:12], "params": params.run_key_fields()}
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return state


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


# ---------------------------------------------------------------- the model from params


def build_classifier(params: TrainParams, pos_weight: float | None) -> FaultClassifier:
    network = FaultCNN(params.channels, params.kernel_size, params.dropout)
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


def resolve_pos_weight(params: TrainParams, n_healthy: int, n_fault: int) -> float | None:
    if params.pos_weight == "auto":
        return n_healthy / n_fault
    return float(params.pos_weight) if params.pos_weight is not None else None


def network_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint (loaded without unpickling code)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    prefix = "network."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


# ---------------------------------------------------------------- train


def train(
    params: TrainParams,
    root: Path,
    callbacks: Sequence[Callback] = (),
    progress_bar: bool = False,
) -> TrainResult:
    """Fit, keep the best epoch by val_pr_auc, write it to `params.model_dir` with save_model."""
    train_path, val_path = resolve(params.train_path, root), resolve(params.val_path, root)
    for path in (train_path, val_path):
        if not path.is_file():
            raise DataError(str(path), "file_exists", "no such split file (run the earlier stages)")
    key = run_key(params, [train_path, val_path])
    run_dir = resolve(params.checkpoint_root, root) / key
    ckpt_dir = run_dir / "ckpt"
    last = ckpt_dir / "last.ckpt"
    resume_from = last if last.is_file() else None
    resumed_from_epoch = _next_epoch(resume_from) if resume_from else None
    state = _run_state(run_dir, params)

    pl.seed_everything(params.seed, workers=True, verbose=False)
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
    positive_label = dm.positive_label()
    pos_weight = resolve_pos_weight(params, n_healthy, n_fault)
    model = build_classifier(params, pos_weight)

    history = EpochHistory()
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{epoch:03d}",
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        save_last=True,
    )
    early = EarlyStopping(monitor=MONITOR, mode="max", patience=params.patience)
    mode = wandb_mode() if params.wandb else "disabled"
    logger = (
        _wandb_logger(params, root, state["wandb_run_id"], key) if mode != "disabled" else False
    )

    with deterministic_algorithms(params.deterministic), quiet_lightning():
        trainer = pl.Trainer(
            accelerator=params.accelerator,
            devices=params.devices,
            strategy=params.strategy,
            num_nodes=params.num_nodes,
            precision=params.precision,
            max_epochs=params.max_epochs,
            deterministic=params.deterministic,
            callbacks=[
                history,
                RngStateInCheckpoint(),
                early,
                EpochProgress(),
                *callbacks,
                checkpoint,
            ],
            logger=logger,
            log_every_n_steps=1,
            enable_progress_bar=progress_bar,
            enable_model_summary=False,
            default_root_dir=str(ckpt_dir),
        )
        if logger:
            logger.log_hyperparams(
                {
                    **params.model_dump(),
                    "run_key": key,
                    "positive_label": positive_label,
                    "n_train": n_healthy + n_fault,
                    "n_train_fault": n_fault,
                    "pos_weight_value": pos_weight,
                    "n_parameters": sum(p.numel() for p in model.parameters()),
                }
            )
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=resume_from, weights_only=True)
        finally:
            if logger:
                import wandb

                if trainer.is_global_zero and trainer.state.finished:
                    logger.experiment.summary.update(_summary(checkpoint, history))
                wandb.finish(exit_code=0 if trainer.state.finished else 1)

    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    frame = _history(history, last)
    best_epoch = _epoch_of(best)
    best_score = _best_pr_auc(frame, best_epoch)
    train_seconds = float(frame["train_seconds"].sum())
    # only what the inputs determine goes into the model folder (the W&B run id and timings
    # go to the run record): the same data, params and code give the same folder, so DVC
    # sees nothing new downstream of a forced re-train
    meta = {
        "input_length": params.length,
        "positive_label": positive_label,
        "best_val_pr_auc": round(best_score, 6),
        "run_key": key,
    }
    model_dir = output(params.model_dir, root)
    if trainer.is_global_zero:
        network = FaultCNN(params.channels, params.kernel_size, params.dropout)
        network.load_state_dict(network_state(best))
        meta = save_model(model_dir, network, meta)
        # done: the result is model_dir; a later run with the same key starts afresh
        shutil.rmtree(run_dir, ignore_errors=True)
        with suppress(OSError):
            run_dir.parent.rmdir()  # only if no other run left a checkpoint there
    return TrainResult(
        best_val_pr_auc=best_score,
        best_epoch=best_epoch,
        epochs_run=len(frame),
        stopped_early=len(frame) < params.max_epochs,
        wandb_run_id=state["wandb_run_id"] if logger else None,
        wandb_mode=mode,
        samples_per_s=float(frame["samples"].sum()) / train_seconds if train_seconds else 0.0,
        train_seconds=train_seconds,
        resumed_from_epoch=resumed_from_epoch,
        run_key=key,
        model_dir=model_dir,
        history=frame,
        meta=meta,
    )


HISTORY_FILE = "history.csv"
RUN_FILE = "run.json"


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
    columns = ["epoch", "train_loss", "val_loss", "val_pr_auc", MONITOR]
    return [
        write_text_atomic(report_dir / RUN_FILE, json.dumps(run, indent=2, sort_keys=True) + "\n"),
        write_text_atomic(
            report_dir / HISTORY_FILE,
            result.history[columns].to_csv(index=False, float_format="%.6g", lineterminator="\n"),
        ),
    ]


def _history(history: EpochHistory, last: Path) -> pd.DataFrame:
    """The per-epoch rows; with a spawning strategy (ddp_spawn) they were collected in the
    worker processes, and are read back from the last checkpoint, which carries them."""
    if not history.rows and last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        history.load_state_dict(ckpt.get("callbacks", {}).get(history.state_key, {}))
    return history.frame()


def _best_pr_auc(frame: pd.DataFrame, best_epoch: int) -> float:
    """val_pr_auc of the kept epoch."""
    row = frame[frame["epoch"] == best_epoch]
    if len(row):
        return float(row["val_pr_auc"].iloc[0])
    return float(frame["val_pr_auc"].max()) if len(frame) else float("nan")


def _summary(checkpoint: ModelCheckpoint, history: EpochHistory) -> dict[str, Any]:
    best_epoch = _epoch_of(Path(checkpoint.best_model_path)) if checkpoint.best_model_path else -1
    return {
        "best_val_pr_auc": _best_pr_auc(history.frame(), best_epoch),
        "best_epoch": best_epoch,
        "epochs_run": len(history.rows),
    }


def _epoch_of(checkpoint: Path) -> int:
    """`best-epoch=007.ckpt` -> 7 (-1 for last.ckpt)."""
    stem = checkpoint.stem
    return int(stem.split("=")[-1]) if "epoch=" in stem else -1


def _next_epoch(checkpoint: Path) -> int:
    """The epoch a run resumed from `checkpoint` starts with."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return int(ckpt["epoch"]) + 1


# ---------------------------------------------------------------- plots


def plot_history(history: pd.DataFrame, best_epoch: int | None = None):
    """Losses and val_pr_auc per epoch; a dashed line marks the epoch that was kept."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 3.2))
    ax_loss.plot(history["epoch"], history["train_loss"], marker=".", label="train_loss")
    ax_loss.plot(history["epoch"], history["val_loss"], marker=".", label="val_loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_auc.plot(history["epoch"], history["val_pr_auc"], marker=".", color="tab:green")
    if best_epoch is not None and best_epoch >= 0:
        for ax in (ax_loss, ax_auc):
            ax.axvline(best_epoch, color="grey", ls="--", lw=0.8)
    ax_auc.set_xlabel("epoch")
    ax_auc.set_ylabel("val_pr_auc")
    ax_auc.set_ylim(0, 1.02)
    fig.tight_layout()
    return fig
