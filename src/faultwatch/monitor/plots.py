"""The monitor notebook's tables and figures, from monitor_report's result and the window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # matplotlib is imported by the plots only
    from matplotlib.figure import Figure


def version_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per model version: volume, fault rate against training, latency, realised and
    estimated F1 with the label coverage, and what drifted."""
    rows = {}
    for version, fig in result["versions"].items():
        perf = fig["performance"]
        rows[version] = {
            "n": fig["n"],
            "fault_rate": fig["output_drift"]["fault_rate"],
            "train_fault_rate": fig["output_drift"]["train_fault_rate"],
            "output_drift": fig["output_drift"]["drifted"],
            "p50_ms": fig["latency_ms"]["p50"],
            "p99_ms": fig["latency_ms"]["p99"],
            "f1_realised": perf["realised"]["f1"],
            "n_labelled": perf["realised"]["n"],
            "label_coverage": perf["realised"]["coverage"],
            "f1_estimated": perf["estimated"]["f1"],
            "input_drift": ", ".join(fig["input_drift"]["drifted"]) or "-",
            "class_mix": ", ".join(fig["input_drift"]["class_mix"]) or "-",
            "embedding_auc": fig["embedding_drift"].get("all"),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "model_version"
    return out


def drift_table(result: dict[str, Any]) -> pd.DataFrame:
    """Per version and feature: the drift score on all rows, on the predicted-healthy rows,
    and the verdict of the decision rule."""
    records = [
        {"model_version": v, "feature": c, **{k: e.get(k) for k in ("all", "healthy", "verdict")}}
        for v, fig in result["versions"].items()
        for c, e in fig["input_drift"]["columns"].items()
    ]
    return pd.DataFrame(records, columns=["model_version", "feature", "all", "healthy", "verdict"])


def plot_drift_scores(result: dict[str, Any]) -> Figure:
    """Bars of the drift score per feature (all rows and predicted healthy), per version, with
    the threshold."""
    import matplotlib.pyplot as plt

    table = drift_table(result)
    versions = list(result["versions"]) or ["(no predictions)"]
    fig, axes = plt.subplots(len(versions), 1, figsize=(9, 2.6 * len(versions)), squeeze=False)
    for ax, version in zip(axes[:, 0], versions, strict=True):
        part = table[table["model_version"] == version]
        x = np.arange(len(part))
        for offset, col in ((-0.2, "all"), (0.2, "healthy")):
            ax.bar(x + offset, part[col].astype("float64").fillna(0), width=0.4, label=col)
        ax.axhline(result["config"]["drift_threshold"], color="tab:red", lw=0.8, ls="--")
        ax.set_xticks(x, part["feature"], fontsize=8, rotation=30)
        ax.set_title(f"{version}: {result['config']['stattest']} drift score", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_fault_rate(predictions: pd.DataFrame, train_fault_rate: float, bins: int = 24) -> Figure:
    """The predicted fault rate over the window, per version, against the training rate."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 2.6))
    if len(predictions):
        edges = np.linspace(predictions["time"].min(), predictions["time"].max() + 1e-9, bins + 1)
        for version, part in predictions.groupby("model_version"):
            idx = np.digitize(part["time"], edges) - 1
            rate = part.groupby(idx)["is_fault"].mean()
            ax.plot(
                pd.to_datetime(edges[rate.index], unit="s"), rate.values, marker=".", label=version
            )
    ax.axhline(train_fault_rate, color="grey", lw=0.8, ls="--", label="training")
    ax.set_ylabel("fault rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
