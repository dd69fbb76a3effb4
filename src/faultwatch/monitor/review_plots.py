"""The figures of notebooks/06_review.ipynb: where the waiting predictions' probabilities lie,
and each queued signal beside its nearest training examples (per channel for a multichannel
model)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from faultwatch.monitor.nearest import Neighbours

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_probabilities(rows: pd.DataFrame, queue: pd.DataFrame) -> Figure:
    """The waiting predictions' probabilities (called faults and the rest apart), the
    threshold, and the queued ones marked below the axis."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6))
    bins = np.linspace(0, 1, 41)
    for fault, colour, name in (
        (True, "tab:red", "called a fault"),
        (False, "tab:blue", "the rest"),
    ):
        part = (
            rows.loc[rows["is_fault"] == fault, "probability"].astype("float64")
            if len(rows)
            else []
        )
        ax.hist(part, bins=bins, color=colour, alpha=0.6, label=f"{name} ({len(part)})")
    for t in sorted(set(rows["threshold"].astype("float64"))) if len(rows) else []:
        ax.axvline(t, color="black", lw=1, ls="--")
    if len(queue):
        ax.plot(queue["probability"], np.zeros(len(queue)), "k|", ms=14, label="shown below")
    ax.set_xlim(0, 1)
    ax.set_xlabel("fault probability (dashed: threshold)")
    ax.set_ylabel("waiting")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def _names(cell: object) -> list[str] | None:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return None
    return list(cell) if isinstance(cell, list | tuple) else list(json.loads(str(cell)))


def _draw(ax: Axes, values: np.ndarray, channels: list[str] | None) -> None:
    v = np.asarray(values, dtype="float64")
    if v.ndim == 1:
        ax.plot(v, lw=0.7)
        return
    for i, row in enumerate(v):
        ax.plot(row, lw=0.7, label=channels[i] if channels and i < len(channels) else f"ch{i}")


def plot_queue(
    queue: pd.DataFrame,
    signals: dict[str, np.ndarray],
    neighbours: Neighbours,
    max_rows: int = 12,
) -> Figure:
    """One row per queued prediction (the first `max_rows`): its logged raw signal (a line per
    channel), then its nearest training examples, each titled with label and distance."""
    import matplotlib.pyplot as plt

    shown = queue.head(max_rows)
    k = int(neighbours.frame["rank"].max()) if len(neighbours.frame) else 0
    fig, axes = plt.subplots(
        max(len(shown), 1), 1 + k, figsize=(3 + 2.2 * k, 1.6 * max(len(shown), 1)), squeeze=False
    )
    if shown.empty:
        axes[0, 0].text(0.5, 0.5, "nothing waits for a label in this window", ha="center")
        axes[0, 0].set_axis_off()
        return fig
    train = neighbours.train
    for row, r in zip(axes, shown.itertuples(), strict=False):
        channels = _names(r.channels)
        ax = row[0]
        if r.prediction_id in signals:
            _draw(ax, signals[r.prediction_id], channels)
            if channels:
                ax.legend(fontsize=5, loc="upper right", ncol=len(channels))
        else:
            ax.text(0.5, 0.5, "raw signal not sampled\n(FAULTWATCH_LOG_SIGNALS)", ha="center",
                    va="center", fontsize=7, transform=ax.transAxes)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
        colour = "tab:red" if r.is_fault else "black"
        ax.set_title(
            f"{r.prediction_id[:8]} {r.label} p={r.probability:.2f}", fontsize=8, color=colour
        )
        near = neighbours.of(r.prediction_id)
        for j, ax in enumerate(row[1:]):
            if j >= len(near):
                ax.set_axis_off()
                continue
            n = near.iloc[j]
            _draw(ax, train["values"].iloc[int(n["row"])], channels)
            ax.set_title(f"train {n['train_label']} d={n['distance']:.2g}", fontsize=7,
                         color="tab:red" if n["y"] else "black")  # fmt: skip
        for ax in row:
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig
