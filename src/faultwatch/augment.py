"""The `augment` stage: more fault examples for the training split, or fewer healthy ones.

Applied to the training split only (validation and test keep the real class ratio). Every
random draw comes from a generator seeded with (seed, fault signal, copy number): the same
params and input give the same rows, and a copy does not change when more copies are asked for.

Two ways to rebalance (`rebalance`):
- `oversample`: augmented copies of the fault signals (random crop, time shift, amplitude
  scaling, noise)
  are added until the fault class makes up `target_fault_ratio` of the set;
- `case_control`: every fault signal is kept (the cases) with `controls_per_case` healthy
  signals drawn at random for each (the controls); no signal is changed;
- `none`: the training split as it is.

Multichannel signals (channels, samples): a crop and a time shift apply to every channel of a
signal together (the channels were recorded at the same instants); the amplitude factor and the
noise are drawn per channel (sensors differ in gain and noise). Univariate signals draw exactly
what they drew before channels existed.

Note: the model normalises each signal (z-score), so amplitude scaling alone does not change
what the network sees; it matters relative to the noise and for models without that transform.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from faultwatch.errors import DataError
from faultwatch.params import Section
from faultwatch.splits import frame_channels, read_split

if TYPE_CHECKING:
    import pyarrow as pa
    from matplotlib.figure import Figure

COLUMNS = ["id", "label", "y", "length", "source_row", "values"]
AUG_TAG = "#aug"


class AugmentParams(Section):
    data_dir: str = "data/prepared"
    out_dir: str = "data/augmented"
    seed: int = 0
    rebalance: Literal["oversample", "case_control", "none"] = "oversample"
    target_fault_ratio: float = Field(0.3, gt=0, lt=1, description="oversample: fault share")
    controls_per_case: int = Field(10, ge=1, description="case_control: healthy per fault")
    max_crop: float = Field(0.0, ge=0, lt=1, description="fraction of the signal cut off")
    shift_mode: Literal["pad", "roll"] = "pad"
    max_shift: float = Field(0.1, ge=0, lt=1, description="fraction of the signal length")
    scale_range: float = Field(0.1, ge=0, lt=1, description="factor drawn in [1-s, 1+s]")
    noise_std: float = Field(0.02, ge=0, description="relative to the signal's std")

    @model_validator(mode="after")
    def _roll_below_half(self) -> AugmentParams:
        if self.shift_mode == "roll" and self.max_shift >= 0.5:
            raise ValueError("max_shift must be below 0.5 with shift_mode 'roll'")
        return self


# ---------------------------------------------------------------- one signal, pure functions


def time_shift(x: np.ndarray, shift: int, mode: Literal["pad", "roll"] = "pad") -> np.ndarray:
    """Shift right (`shift` > 0) or left; `pad` repeats the edge value, `roll` wraps around.
    A (channels, samples) signal's channels shift together."""
    x = np.asarray(x, dtype="float64")
    n = x.shape[-1]
    if shift == 0 or n == 0:
        return x.copy()
    if mode == "roll":
        return np.roll(x, shift, axis=-1)
    if mode != "pad":
        raise ValueError(f"shift mode must be 'pad' or 'roll', got {mode!r}")
    k = min(abs(shift), n)
    if shift > 0:
        return np.concatenate([np.repeat(x[..., :1], k, axis=-1), x[..., : n - k]], axis=-1)
    return np.concatenate([x[..., k:], np.repeat(x[..., -1:], k, axis=-1)], axis=-1)


def random_crop(x: np.ndarray, rng: np.random.Generator, max_crop: float) -> np.ndarray:
    """A random window holding between (1 - max_crop) and all of the signal.

    Signals are resampled to one length before training, so a shorter window shows the same
    shape stretched: the model sees other periods per window and other positions of an event.
    """
    x = np.asarray(x, dtype="float64")
    n = x.shape[-1]
    keep = max(2, int(round(n * rng.uniform(1 - max_crop, 1)))) if max_crop else n
    if keep >= n:
        return x.copy()
    start = int(rng.integers(0, n - keep + 1))
    return x[..., start : start + keep].copy()


def scale_amplitude(x: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """`x` times `factor`: one number, or one per channel of a (channels, samples) signal."""
    factor = np.asarray(factor, dtype="float64")
    return np.asarray(x, dtype="float64") * (factor[:, None] if factor.ndim else factor)


def add_noise(x: np.ndarray, rng: np.random.Generator, relative_std: float) -> np.ndarray:
    """Gaussian noise with a standard deviation relative to the signal's own (each channel's
    own, for a (channels, samples) signal)."""
    x = np.asarray(x, dtype="float64")
    if relative_std == 0 or x.size == 0:
        return x.copy()
    if x.ndim == 2:
        return x + rng.normal(0.0, relative_std * x.std(axis=1, keepdims=True), size=x.shape)
    return x + rng.normal(0.0, relative_std * float(x.std()), size=len(x))


def augment_signal(x: np.ndarray, rng: np.random.Generator, p: AugmentParams) -> np.ndarray:
    """One augmented copy: random crop, random time shift, amplitude scaling, then noise. A
    (channels, samples) signal is cropped and shifted as one, scaled and noised per channel."""
    x = random_crop(x, rng, p.max_crop)
    max_k = int(p.max_shift * x.shape[-1])
    shift = int(rng.integers(-max_k, max_k + 1)) if max_k else 0
    lo, hi = 1 - p.scale_range, 1 + p.scale_range
    factor = rng.uniform(lo, hi, size=x.shape[0]) if x.ndim == 2 else float(rng.uniform(lo, hi))
    return add_noise(scale_amplitude(time_shift(x, shift, p.shift_mode), factor), rng, p.noise_std)


def signal_rng(seed: int, row: int, copy: int) -> np.random.Generator:
    """The generator for copy `copy` of signal `row`: independent of processing order."""
    return np.random.default_rng([seed, row, copy])


# ---------------------------------------------------------------- the training frame


def _check_frame(df: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError("<train split>", "columns_present", f"missing columns {missing}")


def n_copies_for_ratio(n_healthy: int, n_fault: int, target_ratio: float) -> int:
    """Extra fault signals needed so that faults make up at least `target_ratio` of the set."""
    needed = math.ceil(target_ratio * n_healthy / (1 - target_ratio) - 1e-9)
    return max(0, needed - n_fault)


def oversample_faults(df: pd.DataFrame, p: AugmentParams) -> pd.DataFrame:
    """Augmented copies of the fault signals (round robin over them), ids `<id>#aug<k>`."""
    _check_frame(df)
    faults = df[df["y"] == 1]
    n_fault, n_healthy = len(faults), int((df["y"] == 0).sum())
    if n_fault == 0:
        raise DataError("<train split>", "fault_present", "no fault signal to oversample")
    extra = n_copies_for_ratio(n_healthy, n_fault, p.target_fault_ratio)
    rows = []
    for j in range(extra):
        i, copy = j % n_fault, j // n_fault + 1
        src = faults.iloc[i]
        values = augment_signal(np.asarray(src["values"]), signal_rng(p.seed, i, copy), p)
        rows.append(
            {
                "id": f"{src['id']}{AUG_TAG}{copy}",
                "label": src["label"],
                "y": src["y"],
                "length": values.shape[-1],
                "source_row": src["source_row"],
                "values": values,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def case_control(df: pd.DataFrame, controls_per_case: int, seed: int) -> pd.DataFrame:
    """Every fault signal and `controls_per_case` random healthy ones per fault, in input order."""
    _check_frame(df)
    y = df["y"].to_numpy()
    cases, controls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(cases) == 0:
        raise DataError("<train split>", "fault_present", "no fault signal (no case to match)")
    k = min(len(controls), controls_per_case * len(cases))
    kept = np.random.default_rng([seed, 0xCC]).choice(controls, size=k, replace=False)
    return df.iloc[np.sort(np.concatenate([cases, kept]))].reset_index(drop=True)


def augment_train(df: pd.DataFrame, p: AugmentParams) -> pd.DataFrame:
    """The augmented training frame (same columns as the split files); deterministic for a seed."""
    _check_frame(df)
    base = df[COLUMNS].reset_index(drop=True)
    if p.rebalance == "case_control":
        out = case_control(base, p.controls_per_case, p.seed)
    elif p.rebalance == "oversample":
        out = pd.concat([base, oversample_faults(base, p)], ignore_index=True)
    else:
        out = base
    out.attrs = {k: v for k, v in df.attrs.items() if k == "channels"}
    return out


def class_counts(before: pd.DataFrame, after: pd.DataFrame) -> dict[str, int | float]:
    """The scraps of the augment stage: signals and fault signals before and after."""
    n_after, f_after = len(after), int(after["y"].sum())
    return {
        "n_train_before": len(before),
        "n_fault_before": int(before["y"].sum()),
        "n_train_after": n_after,
        "n_fault_after": f_after,
        "fault_ratio_after": round(f_after / n_after, 6) if n_after else 0.0,
    }


def copies_of(after: pd.DataFrame, original_id: str) -> pd.DataFrame:
    """The augmented copies of one original signal."""
    return after[after["id"].str.startswith(f"{original_id}{AUG_TAG}")]


# ---------------------------------------------------------------- I/O


def read_train(data_dir: Path) -> pd.DataFrame:
    path = data_dir / "train.parquet"
    if not path.is_file():
        raise DataError(str(path), "file_exists", "no training split (run the prepare stage)")
    return read_split(path)


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table with the split files' schema (split_schema: for a frame with
    `attrs["channels"]`, list<list<double>> values and the names in the metadata)."""
    import pyarrow as pa

    # here, not at the top: faultwatch.data.prepare imports scikit-learn and pyarrow, and the
    # notebook runner imports this module (AugmentParams) only to validate params
    from faultwatch.data.prepare import split_schema

    channels = frame_channels(df)
    if channels is None:
        if len(df) and np.ndim(df["values"].iloc[0]) == 2:
            raise DataError(
                "<train split>", "channels_named", "multichannel values but no channel names"
            )
        length = df["values"].map(len)
        values = [np.asarray(v, dtype="float64") for v in df["values"]]
    else:
        length = df["values"].map(lambda v: np.shape(v)[-1])
        values = [list(np.asarray(v, dtype="float64")) for v in df["values"]]
    return pa.table(
        {
            "id": df["id"].astype(str).tolist(),
            "label": df["label"].astype(str).tolist(),
            "y": df["y"].to_numpy(dtype="int8"),
            "length": length.to_numpy(dtype="int32"),
            "source_row": df["source_row"].to_numpy(dtype="int64"),
            "values": values,
        },
        schema=split_schema(channels),
    )


def write_augmented(df: pd.DataFrame, out_dir: Path) -> Path:
    """Write `out_dir/train.parquet` atomically; same frame, same bytes."""
    from faultwatch.data.prepare import write_parquet_atomic  # heavy: see to_arrow

    return write_parquet_atomic({"train": to_arrow(df)}, out_dir)["train"]


# ---------------------------------------------------------------- plots


def plot_before_after(
    before: pd.DataFrame, after: pd.DataFrame, n_signals: int = 3, copies: int = 3
) -> Figure:
    """Fault signals (black) beside their first augmented copies (colour), one row each; for
    multichannel signals a column per channel."""
    import matplotlib.pyplot as plt

    faults = before[before["y"] == 1].head(n_signals)
    channels = frame_channels(before) or (None,)
    fig, axes = plt.subplots(
        len(faults),
        len(channels),
        figsize=(9 if len(channels) == 1 else 4 * len(channels), 1.8 * max(len(faults), 1)),
        squeeze=False,
    )
    for row, (_, src) in zip(axes, faults.iterrows(), strict=False):
        for k, (ax, channel) in enumerate(zip(row, channels, strict=True)):
            pick = (lambda v: v) if channel is None else (lambda v, k=k: v[k])
            for _, c in copies_of(after, src["id"]).head(copies).iterrows():
                ax.plot(pick(c["values"]), lw=0.6, alpha=0.8, label=c["id"].split("#")[-1])
            ax.plot(pick(src["values"]), color="black", lw=0.9, label="original")
            ax.set_title(str(src["id"]) + ("" if channel is None else f" [{channel}]"), fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].legend(fontsize=6, loc="upper right", ncol=copies + 1)
    fig.tight_layout()
    return fig
