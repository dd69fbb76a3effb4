"""Realised performance from delayed labels, and an estimate for rows still waiting for one.

Realised: precision, recall and F1 of the fault class over the labelled rows, with the label
coverage beside them (labelled rows / rows old enough for their label to have arrived).

Estimated: confidence-based performance estimation (CBPE, as NannyML does it; a few lines here
because NannyML does not install with the lock). If the probabilities are calibrated, a row
predicted fault is a true positive with probability p and a false positive with 1 - p; a row
predicted healthy is a false negative with probability p. Summing gives the expected confusion
matrix, hence expected precision, recall and F1 without a single label. The model's raw scores
are not calibrated (it trains with a class weight on oversampled faults), so the probabilities
are first calibrated (isotonic regression) on the labelled rows when there are enough of them.

`performance_figures` gives both for one model version's rows of a window (monitor.json).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from faultwatch.monitor.params import MonitorParams, parse_duration

if TYPE_CHECKING:  # scikit-learn is imported when a calibrator is fitted
    from sklearn.isotonic import IsotonicRegression


def _scores(tp: float, fp: float, fn: float) -> dict[str, float | None]:
    """Precision, recall and F1 of the fault class from (expected) counts; None where 0/0."""
    precision = tp / (tp + fp) if tp + fp > 0 else None
    recall = tp / (tp + fn) if tp + fn > 0 else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else None
    return {"precision": precision, "recall": recall, "f1": f1}


def realised_performance(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | int | None]:
    """Precision, recall, F1 of the fault class (1) over labelled rows, with the counts."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = int((y_true & y_pred).sum())
    fp = int((~y_true & y_pred).sum())
    fn = int((y_true & ~y_pred).sum())
    return {**_scores(tp, fp, fn), "n": int(len(y_true)), "tp": tp, "fp": fp, "fn": fn}


def calibrator(proba: np.ndarray, y: np.ndarray) -> IsotonicRegression:
    """Isotonic map from score to the observed fault frequency, fitted on labelled rows."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(np.asarray(proba, dtype="float64"), np.asarray(y, dtype="float64"))
    return iso


def estimate_performance(
    proba: np.ndarray, y_pred: np.ndarray, calibrate: IsotonicRegression | None = None
) -> dict[str, float | int | None]:
    """CBPE: expected precision, recall and F1 of the fault class from probabilities.

    `proba`: the model's fault probabilities; `y_pred`: its decisions (probability at or above
    the version's threshold); `calibrate`: a fitted calibrator (`calibrator`) or None to take the
    probabilities as calibrated. Returns the expected counts beside the scores.
    """
    p = np.clip(np.asarray(proba, dtype="float64"), 0.0, 1.0)
    if calibrate is not None and len(p):
        p = np.clip(calibrate.predict(p), 0.0, 1.0)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = float(p[y_pred].sum())
    fp = float((1 - p[y_pred]).sum())
    fn = float(p[~y_pred].sum())
    return {
        **_scores(tp, fp, fn),
        "n": int(len(p)),
        "expected_tp": tp,
        "expected_fp": fp,
        "expected_fn": fn,
    }


def true_fault(rows: pd.DataFrame) -> pd.Series:
    """Whether each labelled row's true label is the fault class (NaN where unlabelled): the
    fault class's name is the predicted label of rows predicted fault (else: not the healthy
    one's)."""
    labelled = rows["true_label"].notna()
    faults = rows.loc[rows["is_fault"] == 1, "label"]
    if len(faults):
        hit = rows["true_label"].astype("string") == str(faults.mode().iloc[0])
    else:
        healthy = rows.loc[rows["is_fault"] == 0, "label"]
        hit = rows["true_label"].astype("string") != str(healthy.mode().iloc[0])
    return hit.astype("float64").where(labelled)


def performance_figures(rows: pd.DataFrame, params: MonitorParams, end: float) -> dict[str, Any]:
    """Realised scores over labelled rows with their coverage; CBPE for the unlabelled ones."""
    y_true = true_fault(rows) if len(rows) else pd.Series(dtype="float64")
    labelled = y_true.notna()
    matured = rows["time"] <= end - parse_duration(params.label_delay)
    n_matured = int(matured.sum())
    realised = realised_performance(
        y_true[labelled].to_numpy(), rows.loc[labelled, "is_fault"].to_numpy()
    )
    realised["coverage"] = float((labelled & matured).sum() / n_matured) if n_matured else None
    realised["n_matured"] = n_matured
    cal = None
    lab_y = y_true[labelled].to_numpy()
    if labelled.sum() >= params.min_labels and 0 < lab_y.sum() < len(lab_y):
        cal = calibrator(rows.loc[labelled, "probability"].to_numpy(), lab_y)
    waiting = rows[~labelled]
    estimated = estimate_performance(
        waiting["probability"].to_numpy(), waiting["is_fault"].to_numpy().astype(bool), cal
    )
    estimated["calibrated"] = cal is not None
    return {"realised": realised, "estimated": estimated}
