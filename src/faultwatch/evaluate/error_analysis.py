"""Error analysis: which signals the model gets most wrong."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from faultwatch.evaluate.metrics import as_arrays

if TYPE_CHECKING:
    import pandas as pd


def per_sample_loss(y: Iterable[int], p: Iterable[float], eps: float = 1e-7) -> np.ndarray:
    """Binary cross-entropy of each score against its label (scores clipped to [eps, 1-eps])."""
    y_arr, p_arr = as_arrays(y, p)
    p_arr = np.clip(p_arr, eps, 1 - eps)
    return -(y_arr * np.log(p_arr) + (1 - y_arr) * np.log(1 - p_arr))


def sorted_by_loss(split: pd.DataFrame, p: Sequence[float]) -> pd.DataFrame:
    """The split's signals, worst first: id, label, y, p, loss (ties keep the split's order)."""
    table = split[["id", "label", "y"]].reset_index(drop=True).copy()
    table["y"] = table["y"].astype(int)
    table["p"] = np.asarray(p, dtype="float64")
    table["loss"] = per_sample_loss(table["y"], table["p"])
    return table.sort_values("loss", ascending=False, kind="stable", ignore_index=True)
