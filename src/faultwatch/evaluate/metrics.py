"""Threshold and metrics: every model (the CNN, "always healthy", the classical baseline) is
scored by the same `fault_metrics`; a score `p >= threshold` means "fault"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

CLASS_NAMES = ("healthy", "fault")
# "always healthy" has no score to tune: a threshold chosen on its constant p = 0 would turn it
# into "always fault", so it is scored at this fixed threshold
FIXED_THRESHOLD = 0.5


def as_arrays(y: Iterable[int], p: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0/1 ints) and finite float64 scores of the same length, or a ValueError saying
    what is wrong."""
    y_arr = np.asarray(list(y) if not isinstance(y, np.ndarray) else y).ravel()
    p_arr = np.asarray(list(p) if not isinstance(p, np.ndarray) else p, dtype="float64").ravel()
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"{len(y_arr)} labels but {len(p_arr)} scores")
    if not np.isin(y_arr, [0, 1]).all():
        bad = sorted({str(v) for v in y_arr[~np.isin(y_arr, [0, 1])]})
        raise ValueError(f"labels must be 0 (healthy) or 1 (fault), got {', '.join(bad)}")
    y_arr = y_arr.astype(int)
    if not np.isfinite(p_arr).all():
        raise ValueError("scores must be finite")
    return y_arr, p_arr


def choose_threshold(y_val: Iterable[int], p_val: Iterable[float]) -> float:
    """The decision threshold with the best F1 on validation (predict fault when p >= threshold).

    F1 only changes at the observed scores, so the candidates are the distinct validation scores.
    Ties between candidates go to the highest one (fewer false alarms for the same F1). The value
    returned is the midpoint between the winning score and the next lower distinct score: any
    threshold in that gap gives the same validation F1, and the middle leaves the most margin on
    both sides for unseen signals. Only validation data is passed in; test data cannot move it.
    """
    y, p = as_arrays(y_val, p_val)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("the validation split has no fault examples: no threshold can be chosen")
    order = np.argsort(-p, kind="stable")
    p_desc, y_desc = p[order], y[order]
    # the last position of each distinct score: predicting fault for p >= that score
    last = np.flatnonzero(np.append(p_desc[1:] != p_desc[:-1], True))
    scores = p_desc[last]
    tp = np.cumsum(y_desc)[last]
    fp = (last + 1) - tp
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    best = int(np.argmax(f1))  # argmax keeps the first maximum: the highest score
    upper = float(scores[best])
    if best + 1 == len(scores):
        return upper
    lower = float(scores[best + 1])
    mid = (upper + lower) / 2
    return mid if lower < mid <= upper else upper


def _binary_auc(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    """PR-AUC (average precision) and ROC-AUC; None where undefined (one class only)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    n_pos = int(y.sum())
    pr_auc = float(average_precision_score(y, p)) if n_pos > 0 else None
    roc_auc = float(roc_auc_score(y, p)) if 0 < n_pos < len(y) else None
    return pr_auc, roc_auc


def fault_metrics(y: Iterable[int], p: Iterable[float], threshold: float) -> dict[str, Any]:
    """Fault-class precision, recall, F1, PR-AUC, ROC-AUC, accuracy and the confusion counts.

    Predicting no fault at all gives precision 0 and F1 0 (not undefined). PR-AUC is the
    average precision, undefined (None) without fault examples; ROC-AUC is None unless both
    classes are present. Constant scores give ROC-AUC 0.5 and PR-AUC = the fault ratio.
    """
    y_arr, p_arr = as_arrays(y, p)
    pred = (p_arr >= threshold).astype(int)
    tp = int(((pred == 1) & (y_arr == 1)).sum())
    fp = int(((pred == 1) & (y_arr == 0)).sum())
    fn = int(((pred == 0) & (y_arr == 1)).sum())
    tn = int(((pred == 0) & (y_arr == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    pr_auc, roc_auc = _binary_auc(y_arr, p_arr)
    n = len(y_arr)
    return {
        "threshold": float(threshold),
        "n": n,
        "n_fault": int(y_arr.sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pr_auc": pr_auc,
        "roc_auc": roc_auc,
        "accuracy": (tp + tn) / n if n else 0.0,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
    }


def evaluate_scores(
    y_val: Sequence[int],
    p_val: Sequence[float],
    y_test: Sequence[int],
    p_test: Sequence[float],
    threshold: float | None = None,
) -> dict[str, Any]:
    """One model's evaluation: threshold chosen on val (unless given), metrics on val and test."""
    t = choose_threshold(y_val, p_val) if threshold is None else float(threshold)
    return {
        "threshold": t,
        "val": fault_metrics(y_val, p_val, t),
        "test": fault_metrics(y_test, p_test, t),
    }


def rounded(metrics: Mapping[str, Any], digits: int = 6) -> dict[str, Any]:
    """Floats rounded for a metrics JSON (nested dicts too); ints, None and strings unchanged."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            out[k] = rounded(v, digits)
        elif isinstance(v, float):
            out[k] = round(v, digits)
        else:
            out[k] = v
    return out


def comparison_table(models: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Models side by side (rows) on the metrics that matter, accuracy next to fault F1."""
    import pandas as pd

    cols = [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "pr_auc",
        "roc_auc",
        "threshold",
        "tp",
        "fp",
        "fn",
        "tn",
    ]
    return pd.DataFrame([{c: m.get(c) for c in cols} for m in models.values()], index=list(models))
