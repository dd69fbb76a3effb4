"""`FaultClassifier`: the LightningModule; network, optimizer and loss are passed in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAveragePrecision

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
Batch = tuple[torch.Tensor, torch.Tensor]  # signals (n, length), targets (n,)


# val_score = val_pr_auc - TIE_BREAK * val_loss: the PR-AUC decides; at equal PR-AUC (with a
# handful of validation faults it often reaches 1.0 and stays there) the lower loss wins, so
# checkpointing keeps the better-trained epoch and early stopping waits while the loss falls.
# PR-AUC steps are >= ~1e-3 for validation sets of this size; TIE_BREAK * a clamped loss is below.
TIE_BREAK = 1e-4
MONITOR = "val_score"


class FaultClassifier(pl.LightningModule):
    """Binary fault classifier over a network that maps signals to one logit each.

    `optimizer` is a factory (e.g. `functools.partial(torch.optim.AdamW, lr=1e-3)`) called with
    the parameters, `scheduler` an optional factory called with the optimizer (stepped once per
    epoch); `loss` takes (logits, targets), e.g. BCEWithLogitsLoss with a pos_weight
    for the rare fault class. Per epoch it logs train_loss, val_loss, val_pr_auc (the average
    precision of the fault class over the whole validation epoch; torchmetrics gathers it
    across processes under DDP) and val_score, the quantity checkpointing monitors.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: OptimizerFactory,
        loss: nn.Module,
        scheduler: SchedulerFactory | None = None,
    ):
        super().__init__()
        # these objects are not hyperparameters; train() logs the params that made them
        self.save_hyperparameters(
            ignore=["network", "optimizer", "loss", "scheduler"], logger=False
        )
        self.network = network
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss = loss
        self.eval_metrics = nn.ModuleDict(
            {
                stage: MetricCollection({"loss": MeanMetric(), "pr_auc": BinaryAveragePrecision()})
                for stage in ("val", "test")
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, fault probabilities and targets of one batch: shared by train, val and test."""
        x, y = batch
        logits = self(x)
        return self.loss(logits, y), torch.sigmoid(logits), y

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _, y = self.model_step(batch)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True
        )
        return loss

    def _eval_step(self, stage: str, batch: Batch) -> None:
        loss, probs, y = self.model_step(batch)
        metrics = self.eval_metrics[stage]
        metrics["loss"].update(loss.detach(), weight=len(y))
        metrics["pr_auc"].update(probs.detach(), y.long())

    def _eval_epoch_end(self, stage: str) -> None:
        values = self.eval_metrics[stage].compute()
        loss, pr_auc = values["loss"], values["pr_auc"]
        logged = {f"{stage}_loss": loss, f"{stage}_pr_auc": pr_auc}
        if stage == "val":
            logged[MONITOR] = pr_auc - TIE_BREAK * loss.clamp(max=10.0)
        self.log_dict(logged)
        self.eval_metrics[stage].reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(
        self, batch: torch.Tensor | Sequence[torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return torch.sigmoid(self(x))

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
