"""Exploratory summaries of the prepared splits; notebooks/01_eda.ipynb calls these."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field

from faultwatch.errors import DataError
from faultwatch.features import channel_feature_names
from faultwatch.params import Section
from faultwatch.preprocess import to_matrix
from faultwatch.signal_quality import QUALITIES, QualityParams, learn_split_thresholds, qualities
from faultwatch.splits import frame_channels, read_split

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SPLITS = ("train", "val", "test")


class EdaParams(Section):
    data_dir: str = "data/prepared"
    examples_per_class: int = Field(2, ge=1)
    max_classes_plotted: int = Field(12, ge=1)
    # a single trivial property whose ROC-AUC (fault vs healthy) reaches this is a shortcut
    shortcut_auc: float = Field(0.95, gt=0.5, le=1.0)


def load_splits(data_dir: Path) -> pd.DataFrame:
    """All prepared splits in one frame, with a `split` column (faultwatch.splits.read_split:
    a multichannel frame has (channels, samples) values and `attrs["channels"]`)."""
    parts = [read_split(data_dir / f"{s}.parquet").assign(split=s) for s in SPLITS]
    found = {s: frame_channels(p) for s, p in zip(SPLITS, parts, strict=True)}
    if len(set(found.values())) > 1:
        seen = "; ".join(f"{s}: {list(c) if c else 'univariate'}" for s, c in found.items())
        raise DataError(str(data_dir), "channels_match", f"the splits differ in channels ({seen})")
    df = pd.concat(parts, ignore_index=True)
    df.attrs.pop("channels", None)
    if found["train"] is not None:
        df.attrs["channels"] = found["train"]
    return df


def signal_channels(df: pd.DataFrame) -> tuple[str, ...] | None:
    """The frame's channel names; dim_0, dim_1... for (channels, samples) values without names;
    None for univariate signals."""
    names = frame_channels(df)
    if names is None and len(df) and np.ndim(df["values"].iloc[0]) == 2:
        names = tuple(f"dim_{k}" for k in range(np.shape(df["values"].iloc[0])[0]))
    return names


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
        "n_empty_signals": int(sum(np.size(v) == 0 for v in values)),
        "n_constant_signals": int(sum(_constant(v) for v in values)),
    }


def _constant(v: np.ndarray) -> bool:
    """A non-empty signal that never moves; a multichannel one with any channel that never does."""
    if np.size(v) == 0:
        return False
    return bool((np.ptp(np.atleast_2d(v), axis=-1) == 0.0).any())


def sensor_quality(df: pd.DataFrame, quality: Mapping[str, Any]) -> tuple[pd.DataFrame, dict]:
    """How many signals of each split each sensor rule (faultwatch.signal_quality) flags, with
    the thresholds the register stage learns from the training split and params.yaml
    `quality`: (signals per split and quality, the thresholds, as the store entry records
    them). Multichannel signals: each channel's thresholds learnt from that channel, a signal
    counted under the first rule any of its channels breaks (`stuck[z]` counts as stuck)."""
    params = QualityParams.model_validate(dict(quality))
    train = df.loc[df["split"] == "train", "values"].tolist()
    channels = signal_channels(df)
    thresholds = learn_split_thresholds(train, params, channels)
    found = [q.split("[")[0] for q in qualities(df["values"], thresholds, channels)]
    counts = pd.crosstab(df["split"], pd.Series(found, index=df.index))
    counts = counts.reindex(index=list(SPLITS), columns=list(QUALITIES))
    return counts.fillna(0).astype(int), thresholds.as_metadata()


def missing_counts(prepare_metrics: Path) -> dict[str, int]:
    """What `data.missing` did in `prepare` (signals interpolated or dropped, samples filled),
    from its reports/metrics/prepare.json; empty when prepare has not written one."""
    if not prepare_metrics.is_file():
        return {}
    return dict(json.loads(prepare_metrics.read_text()).get("missing", {}))


# Per-signal properties that need no model: if one of them alone separates the fault class,
# a model can score well by learning it, and the test metrics say little about fault shapes.
PROPERTIES: dict[str, Callable[[np.ndarray], float]] = {
    "length": len,
    "mean": np.mean,
    "std": np.std,
    "min": np.min,
    "max": np.max,
    "range": np.ptp,
    "rms": lambda v: float(np.sqrt(np.mean(np.square(v)))),
    "energy": lambda v: float(np.sum(np.square(v))),
}


def signal_properties(df: pd.DataFrame) -> pd.DataFrame:
    """One row per signal, one column per trivial property (PROPERTIES); for multichannel
    signals `length` (samples, the same in every channel) and every other property per channel,
    `std[z]`, channel-major."""
    values = [np.asarray(v, dtype="float64") for v in df["values"]]
    channels = signal_channels(df)
    if channels is None:
        return pd.DataFrame(
            {name: [float(f(v)) for v in values] for name, f in PROPERTIES.items()}, index=df.index
        )
    per_channel = [name for name in PROPERTIES if name != "length"]
    columns = {"length": [float(v.shape[-1]) for v in values]}
    names = iter(channel_feature_names(per_channel, channels))
    for k in range(len(channels)):
        for name in per_channel:
            columns[next(names)] = [float(PROPERTIES[name](v[k])) for v in values]
    return pd.DataFrame(columns, index=df.index)


def _distance_to_fault_median(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|x - median of the fault values|; a fault signal's own value is left out of its median,
    so that a property with no signal scores about 0.5, not higher."""
    fault = np.flatnonzero(y == 1)
    d = np.abs(x - np.median(x[fault]))
    if len(fault) > 1:
        for i in fault:
            d[i] = abs(x[i] - np.median(x[fault[fault != i]]))
    return d


def shortcut_scores(df: pd.DataFrame, threshold: float = 0.95) -> pd.DataFrame:
    """How well each trivial property alone separates fault (`y` = 1) from healthy signals.

    `auc`: ROC-AUC of the property as a score, taken as max(auc, 1 - auc) (a low value
    separates as well as a high one). `auc_centred`: ROC-AUC of the closeness to the fault
    class's median (leave-one-out for the fault signals themselves; catches a fault class that sits inside the healthy range, e.g. every fault
    signal exactly 200 samples long). `separation` is the larger; `flagged` when it reaches
    `threshold`. Sorted by separation, highest first."""
    from sklearn.metrics import roc_auc_score

    y = df["y"].to_numpy()
    if len(np.unique(y)) < 2:
        return pd.DataFrame(columns=["auc", "auc_centred", "separation", "fault_side", "flagged"])
    props = signal_properties(df)
    rows = {}
    for name in props.columns:
        x = props[name].to_numpy()
        auc = float(roc_auc_score(y, x))
        centred = float(roc_auc_score(y, -_distance_to_fault_median(x, y)))
        one_sided = max(auc, 1 - auc)
        if centred > one_sided:
            side = "near the fault median"
        else:
            side = "higher in fault" if auc >= 0.5 else "lower in fault"
        best = max(one_sided, centred)
        rows[name] = {
            "auc": round(one_sided, 4),
            "auc_centred": round(centred, 4),
            "separation": round(best, 4),
            "fault_side": side,
            "flagged": best >= threshold,
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "property"
    return out.sort_values("separation", ascending=False, kind="stable")


def shortcut_summary(scores: pd.DataFrame) -> dict[str, object]:
    """The compact form for eda.json: flagged property names, and the best one with its AUC."""
    if scores.empty:
        return {"flagged": [], "max_auc": None, "max_property": None}
    return {
        "flagged": [str(k) for k in scores.index[scores["flagged"]]],
        "max_auc": float(scores["separation"].iloc[0]),
        "max_property": str(scores.index[0]),
    }


def shortcut_warning(scores: pd.DataFrame, threshold: float) -> str:
    """One line for the notebook: which property alone separates the fault class, or none."""
    s = shortcut_summary(scores)
    if s["max_auc"] is None:
        return "Shortcut check skipped: the data hold only one class."
    if s["flagged"]:
        names = ", ".join(s["flagged"])
        return (
            f"WARNING: {names} alone separate(s) fault from healthy (ROC-AUC up to "
            f"{s['max_auc']:.3f} >= {threshold}): a model can score well by learning that, so "
            "high test metrics say little about fault shapes. Consider data.crop_length "
            "(equal lengths) or a per-signal normalisation that removes it."
        )
    return (
        f"No single trivial property separates fault from healthy (best: {s['max_property']}, "
        f"ROC-AUC {s['max_auc']:.3f} < {threshold})."
    )


def class_envelopes(
    df: pd.DataFrame, length: int = 256
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per label: mean and standard deviation of the resampled, normalised signals ((length,)
    each; (channels, length) for multichannel signals, every channel normalised on its own)."""
    out = {}
    for label, part in df.groupby("label"):
        x = to_matrix(part["values"], length)
        out[str(label)] = (x.mean(axis=0), x.std(axis=0))
    return out


def _correlation(v: np.ndarray) -> np.ndarray:
    """Pearson correlation of a (channels, samples) signal's channels; NaN beside a constant one."""
    x = v - v.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.square(x).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x @ x.T) / np.outer(norm, norm)


def channel_correlation(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per class (healthy, fault): the mean over its signals of each signal's channel
    correlation matrix (NaN entries, beside a constant channel, left out of the mean); empty
    for univariate signals."""
    channels = signal_channels(df)
    if channels is None:
        return {}
    out = {}
    for name, y in (("healthy", 0), ("fault", 1)):
        mats = [
            _correlation(np.asarray(v, dtype="float64")) for v in df.loc[df["y"] == y, "values"]
        ]
        stack = np.stack(mats) if mats else np.full((1, len(channels), len(channels)), np.nan)
        seen = np.isfinite(stack).sum(axis=0)
        total = np.where(np.isfinite(stack), stack, 0.0).sum(axis=0)
        mean = np.divide(total, seen, out=np.full(seen.shape, np.nan), where=seen > 0)
        out[name] = pd.DataFrame(mean, index=list(channels), columns=list(channels))
    return out


def examples(df: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    """A few signals of every label, chosen reproducibly (the channel names kept)."""
    shuffled = df.sample(frac=1.0, random_state=seed)
    out = shuffled.groupby("label", sort=True).head(per_class).reset_index(drop=True)
    out.attrs = {k: v for k, v in df.attrs.items() if k == "channels"}
    return out


def _fault_first(ex: pd.DataFrame, max_classes: int) -> list[str]:
    labels = sorted(ex["label"].unique(), key=lambda s: (-ex.loc[ex.label == s, "y"].max(), s))
    return labels[:max_classes]


def plot_examples(ex: pd.DataFrame, max_classes: int) -> Figure:
    """One row of axes per label (the fault class first), its example signals overlaid; for
    multichannel signals one axes per example, a line per channel."""
    import matplotlib.pyplot as plt

    labels, channels = _fault_first(ex, max_classes), signal_channels(ex)
    cols = 1 if channels is None else int(ex.groupby("label").size().max())
    fig, axes = plt.subplots(
        len(labels), cols, figsize=(9, 1.4 * len(labels)), sharex=False, squeeze=False
    )
    for row, label in zip(axes, labels, strict=False):
        part = ex[ex["label"] == label]
        for j, v in enumerate(part["values"]):
            if channels is None:
                row[0].plot(v, lw=0.6)
                continue
            for k, channel in enumerate(channels):
                row[j].plot(v[k], lw=0.6, label=channel)
        fault = bool(part["y"].max())
        row[0].set_ylabel(
            f"{label}{' (fault)' if fault else ''}", rotation=0, ha="right", fontsize=8
        )
        for j, ax in enumerate(row):
            ax.tick_params(labelsize=7)
            ax.set_visible(j < max(len(part), 1))
    if channels is not None:
        axes[0, 0].legend(fontsize=6, loc="upper right", ncol=len(channels))
    fig.tight_layout()
    return fig


def plot_envelopes(
    env: dict[str, tuple[np.ndarray, np.ndarray]],
    fault_label: str,
    max_classes: int,
    channels: tuple[str, ...] | None = None,
) -> Figure:
    """Each label's mean signal with a band of one standard deviation, the fault class first;
    for multichannel envelopes (`channels` names them) a row per label, a column per channel."""
    import matplotlib.pyplot as plt

    labels = [fault_label] + [k for k in sorted(env) if k != fault_label]
    labels = [k for k in labels if k in env][:max_classes]
    if channels is None:
        cols, rows = 4, int(np.ceil(len(labels) / 4))
        panels = [(label, None) for label in labels]
    else:
        cols, rows = len(channels), len(labels)
        panels = [(label, k) for label in labels for k in range(len(channels))]
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.2 * rows), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    for ax, (label, k) in zip(axes, panels, strict=False):
        mean, std = env[label] if k is None else (env[label][0][k], env[label][1][k])
        t = np.arange(len(mean))
        colour = "tab:red" if label == fault_label else "tab:blue"
        ax.plot(t, mean, color=colour, lw=0.8)
        ax.fill_between(t, mean - std, mean + std, color=colour, alpha=0.25)
        where = "" if k is None or channels is None else f" [{channels[k]}]"
        ax.set_title(f"{label}{' (fault)' if label == fault_label else ''}{where}", fontsize=9)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_channel_correlation(corr: dict[str, pd.DataFrame]) -> Figure:
    """The channel correlation per class (channel_correlation) as heatmaps, and their
    difference (fault - healthy): a relation between channels that changes with the fault."""
    import matplotlib.pyplot as plt

    panels = {**corr, "fault - healthy": corr["fault"] - corr["healthy"]}
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (name, m) in zip(axes, panels.items(), strict=True):
        image = ax.imshow(m.to_numpy(), vmin=-1, vmax=1, cmap="coolwarm")
        ax.set(title=name, xticks=range(len(m)), yticks=range(len(m)))
        ax.set_xticklabels(m.columns, fontsize=8)
        ax.set_yticklabels(m.index, fontsize=8)
        for (i, j), value in np.ndenumerate(m.to_numpy()):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    return fig
