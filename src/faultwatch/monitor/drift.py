"""Drift scores: Evidently's per-column tests on the logged features, and a domain classifier
on the embeddings. The scores are computed by faultwatch.monitor.stattests (NumPy, the same
numbers as Evidently's); Evidently itself (4-8 s of import on this machine) is imported only
here, by save_drift_report, when its HTML page is asked for.

Per column, `wasserstein` is Evidently's Wasserstein distance normalised by the reference's
standard deviation (a mean shift of d standard deviations scores about d), `psi` the population
stability index; both drift when the score reaches the threshold. Not KS: at these volumes its
p-value flags negligible differences.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.monitor.stattests import drift_score

DRIFT_COLUMNS_OUT = ("score", "threshold", "drifted", "n_current", "n_reference", "note")


def column_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    columns: Sequence[str],
    stattest: str,
    threshold: float,
    html: Path | None = None,
) -> pd.DataFrame:
    """One row per column: Evidently's drift score of `current` against `reference`.

    The scores are those Evidently's DataDriftPreset computes per numerical column (computed
    by faultwatch.monitor.stattests, without importing Evidently); Evidently's Report itself,
    its import and its plots, is built only when `html` asks for its page, with the same
    method and threshold.
    Rows with a missing value in a column are left out of that column's test only. A column
    constant in the reference (the normalised Wasserstein distance divides by its spread) or
    with fewer than 2 values on a side is not tested: score NaN, `note` says why.
    """
    rows = {}
    tested = []
    for c in columns:
        ref = reference[c].dropna().astype("float64")
        cur = current[c].dropna().astype("float64")
        note, score = "", float("nan")
        if len(ref) < 2 or len(cur) < 2:
            note = f"too few values ({len(cur)} current, {len(ref)} reference)"
        elif float(ref.std()) == 0.0:
            note = "constant in the reference"
        else:
            score = drift_score(stattest, ref.to_numpy(), cur.to_numpy())
            tested.append(c)
        rows[c] = {
            "score": score,
            "threshold": threshold,
            "drifted": bool(np.isfinite(score) and score >= threshold),
            "n_current": len(cur),
            "n_reference": len(ref),
            "note": note,
        }
    if html is not None and tested:
        save_drift_report(current[tested], reference[tested], stattest, threshold, html)
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(DRIFT_COLUMNS_OUT))
    out.index.name = "column"
    return out


def save_drift_report(
    current: pd.DataFrame, reference: pd.DataFrame, stattest: str, threshold: float, html: Path
) -> Path:
    """Evidently's data drift report (DataDriftPreset, current first) as an HTML page."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(current.columns)
    definition = DataDefinition(numerical_columns=columns)  # never read as categorical
    preset = DataDriftPreset(columns=columns, method=stattest, threshold=threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Evidently's pandas/numpy deprecation chatter
        snapshot = Report([preset]).run(
            Dataset.from_pandas(current.astype("float64"), data_definition=definition),
            Dataset.from_pandas(reference.astype("float64"), data_definition=definition),
        )
    html.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html))
    return html


def embedding_drift(
    current: np.ndarray, reference: np.ndarray, sample: int, seed: int = 0
) -> dict[str, float | int | None]:
    """How well a classifier tells window embeddings from reference ones: the cross-validated
    ROC-AUC of a logistic regression on up to `sample` rows of each side (0.5: no drift).

    The method Evidently calls the domain classifier, on a subsample so that it takes well under
    a second (Evidently's own run took 50-140 s on 5k x 2k). Rows with a NaN (no embedding
    logged) are left out; fewer than 20 rows on a side: auc None.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    current = np.asarray(current, dtype="float64")
    reference = np.asarray(reference, dtype="float64")
    current = current[np.isfinite(current).all(axis=1)] if current.size else current
    reference = reference[np.isfinite(reference).all(axis=1)] if reference.size else reference
    n = min(sample, len(current), len(reference))
    if n < 20:
        return {"auc": None, "n": int(n)}
    rng = np.random.default_rng(seed)
    cur = current[rng.choice(len(current), n, replace=False)]
    ref = reference[rng.choice(len(reference), n, replace=False)]
    x = np.vstack([ref, cur])
    y = np.r_[np.zeros(n), np.ones(n)]
    # strong regularisation: with a few hundred rows in 64 dimensions an unregularised model
    # separates noise in-fold; out of fold that only lowers the AUC below 0.5, never raises it
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    proba = cross_val_predict(clf, x, y, cv=folds, method="predict_proba")[:, 1]
    return {"auc": float(roc_auc_score(y, proba)), "n": int(n)}
