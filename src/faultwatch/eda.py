"""Exploratory summaries of the prepared splits; notebooks/01_eda.ipynb calls these."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from faultwatch.params import Section
from faultwatch.preprocess import to_matrix

SPLITS = ("train", "val", "test")


class EdaParams(Section):
    data_dir: str = "data/prepared"
    examples_per_class: int = Field(2, ge=1)
    max_classes_plotted: int = Field(12, ge=1)


def load_splits(data_dir: Path) -> pd.DataFrame:
    """All prepared splits in one frame, with a `split` column."""
    parts = [pd.read_parquet(data_dir / f"{s}.parquet").assign(split=s) for s in SPLITS]
    return pd.concat(parts, ignore_index=True)


def class_balance(df: pd.DataFrame) -> pd.DataFrame:
    """Per split: signals, fault signals, the rare-fault ratio, and 'always healthy' accuracy."""
    g = df.groupby("split", sort=False)["y"]
    out = pd.DataFrame({"n_signals": g.size(), "n_fault": g.sum().astype(int)})
    total = pd.DataFrame({"n_signals": [len(df)], "n_fault": [int(df["y"].sum())]}, index=["all"])
    out = pd.concat([out, total])
    out["fault_ratio"] = out["n_fault"] / out["n_signals"]
    out["always_healthy_accuracy"] = 1 - out["fault_ratio"]
    return out


def label_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Signals per original label, with which one is the fault class."""
    counts = df.groupby("label")["y"].agg(n="size", is_fault="max").reset_index()
    counts["is_fault"] = counts["is_fault"].astype(bool)
    return counts.sort_values("n", ascending=False, ignore_index=True)


def length_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Signal length distribution, fault vs healthy."""
    stats = df.groupby(df["y"].map({0: "healthy", 1: "fault"}))["length"].describe()
    return stats[["count", "min", "50%", "max", "mean"]]


def value_quality(df: pd.DataFrame) -> dict[str, int]:
    """Missing or malformed values left after validation (all should be zero), constant signals."""
    values = df["values"]
    return {
        "n_nonfinite_values": int(sum(int((~np.isfinite(np.asarray(v))).sum()) for v in values)),
        "n_empty_signals": int(sum(len(v) == 0 for v in values)),
        "n_constant_signals": int(sum(len(v) > 0 and float(np.ptp(v)) == 0.0 for v in values)),
    }


def class_envelopes(
    df: pd.DataFrame, length: int = 256
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per label: mean and standard deviation of the resampled, normalised signals."""
    out = {}
    for label, part in df.groupby("label"):
        x = to_matrix(part["values"], length)
        out[str(label)] = (x.mean(axis=0), x.std(axis=0))
    return out


def examples(df: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    """A few signals of every label, chosen reproducibly."""
    shuffled = df.sample(frac=1.0, random_state=seed)
    return shuffled.groupby("label", sort=True).head(per_class).reset_index(drop=True)


def plot_examples(ex: pd.DataFrame, max_classes: int):
    import matplotlib.pyplot as plt

    labels = sorted(ex["label"].unique(), key=lambda s: (-ex.loc[ex.label == s, "y"].max(), s))
    labels = labels[:max_classes]
    fig, axes = plt.subplots(len(labels), 1, figsize=(9, 1.4 * len(labels)), sharex=False)
    for ax, label in zip(np.atleast_1d(axes), labels, strict=False):
        part = ex[ex["label"] == label]
        for v in part["values"]:
            ax.plot(v, lw=0.6)
        fault = bool(part["y"].max())
        ax.set_ylabel(f"{label}{' (fault)' if fault else ''}", rotation=0, ha="right", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def plot_envelopes(
    env: dict[str, tuple[np.ndarray, np.ndarray]], fault_label: str, max_classes: int
):
    import matplotlib.pyplot as plt

    labels = [fault_label] + [k for k in sorted(env) if k != fault_label]
    labels = [k for k in labels if k in env][:max_classes]
    cols = 4
    rows = int(np.ceil(len(labels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.2 * rows), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    for ax, label in zip(axes, labels, strict=False):
        mean, std = env[label]
        t = np.arange(len(mean))
        colour = "tab:red" if label == fault_label else "tab:blue"
        ax.plot(t, mean, color=colour, lw=0.8)
        ax.fill_between(t, mean - std, mean + std, color=colour, alpha=0.25)
        ax.set_title(f"{label}{' (fault)' if label == fault_label else ''}", fontsize=9)
    for ax in axes[len(labels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
