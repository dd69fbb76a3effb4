"""The training history's figure (matplotlib, imported when it is drawn)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def plot_history(history: pd.DataFrame, best_epoch: int | None = None) -> Figure:
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
