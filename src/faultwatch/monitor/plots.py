"""The monitor notebook's tables and figures, from monitor_report's result and the window.
A multichannel model's features (`rms[z]`) are grouped by channel: in one cell ("z: rms,
crest"), in a `channel` column, in one panel of drift scores per channel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from faultwatch.monitor.channels import by_channel, describe_columns, feature_channel, split_column

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
            "input_drift": describe_columns(fig["input_drift"]["drifted"]) or "-",
            "class_mix": describe_columns(fig["input_drift"]["class_mix"]) or "-",
            "embedding_auc": fig["embedding_drift"].get("all"),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "model_version"
    return out


def drift_table(result: dict[str, Any]) -> pd.DataFrame:
    """Per version and feature: the drift score on all rows, on the predicted-healthy rows,
    and the verdict of the decision rule; with the `channel` of a multichannel model's."""
    records = [
        {
            "model_version": v,
            "channel": feature_channel(c),
            "feature": c,
            **{k: e.get(k) for k in ("all", "healthy", "verdict")},
        }
        for v, fig in result["versions"].items()
        for c, e in fig["input_drift"]["columns"].items()
    ]
    columns = ["model_version", "channel", "feature", "all", "healthy", "verdict"]
    table = pd.DataFrame(records, columns=columns)
    return table if table["channel"].notna().any() else table.drop(columns="channel")


def plot_drift_scores(result: dict[str, Any]) -> Figure:
    """Bars of the drift score per feature (all rows and predicted healthy), per version (a
    row of panels), with the threshold; a multichannel model's in one panel per channel."""
    import matplotlib.pyplot as plt

    table = drift_table(result)
    versions = list(result["versions"]) or ["(no predictions)"]
    channels = list(by_channel(table["feature"])) or [None]
    fig, axes = plt.subplots(
        len(versions),
        len(channels),
        figsize=(9 if len(channels) == 1 else 4 * len(channels), 2.6 * len(versions)),
        squeeze=False,
        sharey="row",
    )
    for row, version in zip(axes, versions, strict=True):
        for ax, channel in zip(row, channels, strict=True):
            part = table[table["model_version"] == version]
            if channel is not None:
                part = part[part["channel"] == channel]
            x = np.arange(len(part))
            for offset, col in ((-0.2, "all"), (0.2, "healthy")):
                ax.bar(x + offset, part[col].astype("float64").fillna(0), width=0.4, label=col)
            ax.axhline(result["config"]["drift_threshold"], color="tab:red", lw=0.8, ls="--")
            ax.set_xticks(x, [split_column(c)[0] for c in part["feature"]], fontsize=8, rotation=30)
            where = "" if channel is None else f" {channel}"
            ax.set_title(
                f"{version}{where}: {result['config']['stattest']} drift score", fontsize=9
            )
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
