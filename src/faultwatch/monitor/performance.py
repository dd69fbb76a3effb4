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
"""

from __future__ import annotations

import numpy as np


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


def calibrator(proba: np.ndarray, y: np.ndarray):
    """Isotonic map from score to the observed fault frequency, fitted on labelled rows."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(np.asarray(proba, dtype="float64"), np.asarray(y, dtype="float64"))
    return iso


def estimate_performance(
    proba: np.ndarray, y_pred: np.ndarray, calibrate=None
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
