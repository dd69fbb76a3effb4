"""The evaluation's figures (matplotlib, imported when a plot is drawn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from faultwatch.evaluate.metrics import FIXED_THRESHOLD, fault_metrics
from faultwatch.evaluate.records import pr_curve_points
from faultwatch.splits import frame_channels

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def plot_pr_curves(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], title: str = ""
) -> Figure:
    """PR curves of several models on one split, with the fault ratio as the chance line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (y, p) in curves.items():
        pts = pr_curve_points(y, p)
        if not pts:
            continue
        ap = fault_metrics(y, p, FIXED_THRESHOLD)["pr_auc"]
        ax.step(
            [q["recall"] for q in pts], [q["precision"] for q in pts], where="post",
            label=f"{name} (AP {ap:.3f})",
        )  # fmt: skip
    y_any = np.asarray(next(iter(curves.values()))[0]) if curves else np.zeros(1)
    ax.axhline(float(np.mean(y_any)), color="grey", ls="--", lw=0.8, label="chance (fault ratio)")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05), title=title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_worst(split: pd.DataFrame, worst: pd.DataFrame, n: int) -> Figure:
    """The `n` highest-loss signals, raw, titled with their label, score and loss; a
    multichannel signal as one line per channel, labelled with the channel's name."""
    import matplotlib.pyplot as plt

    top = worst.head(n)
    values = split.set_index("id")["values"]
    channels = frame_channels(split)
    fig, axes = plt.subplots(len(top), 1, figsize=(9, 1.6 * max(len(top), 1)), squeeze=False)
    for ax, row in zip(axes[:, 0], top.itertuples(), strict=False):
        signal = values[row.id]
        if channels is None and np.ndim(signal) == 1:
            ax.plot(signal, lw=0.6, color="tab:red" if row.y else "tab:blue")
        else:
            names = channels or [f"dim_{k}" for k in range(len(signal))]
            for channel, v in zip(names, signal, strict=True):
                ax.plot(v, lw=0.6, label=channel)
            ax.legend(fontsize=6, loc="upper right", ncol=len(names))
        kind = "fault" if row.y else "healthy"
        ax.set_title(
            f"{row.id}  label {row.label} ({kind})  p={row.p:.3f}  loss={row.loss:.2f}", fontsize=8
        )
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
