"""Rare-fault evaluation: threshold on validation, metrics, baselines, error analysis, DVC plots.

notebooks/04_evaluate.ipynb calls these. Every model (the CNN, "always healthy", the classical
baseline) is scored by the same `fault_metrics`; a score `p >= threshold` means "fault".
Nothing here imports torch, scikit-learn or matplotlib at import time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
from pydantic import Field

from faultwatch.params import Section
from faultwatch.paths import write_text_atomic
from faultwatch.preprocess import EPS, to_matrix

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

ClassicalKind = Literal["random_forest", "gradient_boosting", "logistic_regression"]
CLASS_NAMES = ("healthy", "fault")
# "always healthy" has no score to tune: a threshold chosen on its constant p = 0 would turn it
# into "always fault", so it is scored at this fixed threshold
FIXED_THRESHOLD = 0.5


class EvaluateParams(Section):
    model_dir: str = "models/fault_cnn"
    data_dir: str = "data/prepared"
    out_dir: str = "reports/evaluate"
    baseline_model: ClassicalKind = "random_forest"
    baseline_n_estimators: int = Field(300, ge=1)
    baseline_feature_length: int = Field(256, ge=16, description="resampled length for the FFT")
    baseline_fft_bands: int = Field(8, ge=1)
    seed: int = 42
    worst_n: int = Field(6, ge=1, description="worst test signals plotted")


# --- threshold and metrics ---------------------------------------------------------------------


def _as_arrays(y: Iterable[int], p: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
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
    y, p = _as_arrays(y_val, p_val)
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
    y_arr, p_arr = _as_arrays(y, p)
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


def always_healthy_scores(n: int) -> np.ndarray:
    """The 'always healthy' baseline: fault probability 0 for every signal."""
    return np.zeros(n)


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


# --- the classical baseline --------------------------------------------------------------------

FEATURE_STATS = (
    "mean", "std", "min", "max", "ptp", "q05", "q25", "median", "q75", "q95",
    "rms", "crest", "skew", "kurtosis", "zero_crossings", "roughness", "log_length",
)  # fmt: skip


def signal_features(
    signals: Iterable[np.ndarray], feature_length: int = 256, fft_bands: int = 8
) -> np.ndarray:
    """Simple per-signal features: amplitude statistics of the raw signal, its length, and the
    share of spectral energy in `fft_bands` equal frequency bands of the resampled, normalised
    signal. Rows follow `signals`; columns follow `feature_names`."""
    rows = []
    signals = [np.asarray(s, dtype="float64") for s in signals]
    for v in signals:
        centred = v - v.mean()
        std = v.std()
        rms = math.sqrt(float(np.mean(v**2)))
        z = centred / max(std, EPS)
        q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
        rows.append(
            [
                v.mean(), std, v.min(), v.max(), np.ptp(v), *q, rms,
                np.abs(v).max() / max(rms, EPS),
                float(np.mean(z**3)), float(np.mean(z**4)),
                float(np.mean(np.diff(np.signbit(centred)) != 0)) if len(v) > 1 else 0.0,
                float(np.mean(np.abs(np.diff(v)))) / max(std, EPS) if len(v) > 1 else 0.0,
                math.log(len(v)),
            ]
        )  # fmt: skip
    stats = np.asarray(rows, dtype="float64").reshape(len(signals), len(FEATURE_STATS))
    x = to_matrix(signals, feature_length).astype("float64")
    power = np.abs(np.fft.rfft(x, axis=1))[:, 1:] ** 2  # drop DC: zero after normalising
    bands = np.array_split(np.arange(power.shape[1]), fft_bands)
    energy = np.stack([power[:, b].sum(axis=1) for b in bands], axis=1)
    energy /= np.maximum(energy.sum(axis=1, keepdims=True), EPS)
    return np.concatenate([stats, energy], axis=1)


def feature_names(fft_bands: int = 8) -> list[str]:
    return [*FEATURE_STATS, *(f"fft_band_{i}" for i in range(fft_bands))]


def classical_baseline(
    kind: ClassicalKind = "random_forest",
    n_estimators: int = 300,
    feature_length: int = 256,
    fft_bands: int = 8,
    seed: int = 42,
) -> Pipeline:
    """An unfitted scikit-learn pipeline: signals -> `signal_features` -> a class-weighted model.

    `fit(signals, y)` takes a list of 1-D arrays of any lengths; `predict_proba(signals)[:, 1]`
    is the fault probability.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    features = FunctionTransformer(
        signal_features, kw_args={"feature_length": feature_length, "fft_bands": fft_bands}
    )
    if kind == "random_forest":
        model = RandomForestClassifier(
            n_estimators=n_estimators,
            class_weight="balanced_subsample",
            min_samples_leaf=1,
            random_state=seed,
            n_jobs=1,  # the same trees whatever the machine
        )
        return make_pipeline(features, model)
    if kind == "gradient_boosting":
        model = HistGradientBoostingClassifier(
            max_iter=n_estimators, class_weight="balanced", random_state=seed
        )
        return make_pipeline(features, model)
    if kind == "logistic_regression":
        model = LogisticRegression(class_weight="balanced", max_iter=5000, random_state=seed)
        return make_pipeline(features, StandardScaler(), model)
    raise ValueError(
        f"unknown classical baseline {kind!r}: expected one of {get_args(ClassicalKind)}"
    )


def fault_probability(model: Any, signals: Sequence[np.ndarray]) -> np.ndarray:
    """P(fault) from a fitted scikit-learn classifier whose classes are 0 and 1."""
    proba = model.predict_proba(list(signals))
    return proba[:, list(model.classes_).index(1)].astype("float64")


# --- error analysis ----------------------------------------------------------------------------


def per_sample_loss(y: Iterable[int], p: Iterable[float], eps: float = 1e-7) -> np.ndarray:
    """Binary cross-entropy of each score against its label (scores clipped to [eps, 1-eps])."""
    y_arr, p_arr = _as_arrays(y, p)
    p_arr = np.clip(p_arr, eps, 1 - eps)
    return -(y_arr * np.log(p_arr) + (1 - y_arr) * np.log(1 - p_arr))


def sorted_by_loss(split: pd.DataFrame, p: Sequence[float]) -> pd.DataFrame:
    """The split's signals, worst first: id, label, y, p, loss (ties keep the split's order)."""
    table = split[["id", "label", "y"]].reset_index(drop=True).copy()
    table["y"] = table["y"].astype(int)
    table["p"] = np.asarray(p, dtype="float64")
    table["loss"] = per_sample_loss(table["y"], table["p"])
    return table.sort_values("loss", ascending=False, kind="stable", ignore_index=True)


# --- DVC plots and report files ----------------------------------------------------------------


def pr_curve_points(
    y: Iterable[int], p: Iterable[float], digits: int = 6
) -> list[dict[str, float]]:
    """Precision-recall curve as [{precision, recall}, ...] (DVC's JSON plot format)."""
    from sklearn.metrics import precision_recall_curve

    y_arr, p_arr = _as_arrays(y, p)
    if y_arr.sum() == 0:
        return []
    precision, recall, _ = precision_recall_curve(y_arr, p_arr)
    return [
        {"precision": round(float(pr), digits), "recall": round(float(rc), digits)}
        for pr, rc in zip(precision, recall, strict=True)
    ]


def confusion_rows(
    y: Iterable[int], p: Iterable[float], threshold: float, names: Sequence[str] = CLASS_NAMES
) -> pd.DataFrame:
    """One row per sample with its actual and predicted class name (DVC's confusion template)."""
    import pandas as pd

    y_arr, p_arr = _as_arrays(y, p)
    pred = (p_arr >= threshold).astype(int)
    return pd.DataFrame(
        {"actual": [names[i] for i in y_arr], "predicted": [names[i] for i in pred]}
    )


def write_json(path: Path | str, data: Any) -> Path:
    return write_text_atomic(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n")


SCORES_FILE = "scores.json"
HEADLINE = ("f1", "precision", "recall", "pr_auc")


def scores_record(
    cnn: Mapping[str, Any], classical: Mapping[str, Any], healthy: Mapping[str, Any], model: str
) -> dict[str, Any]:
    """Everything the evaluation measured (out_dir/scores.json, which register and promote
    read): the CNN on val and test, both baselines on test, counts included."""
    return {
        "threshold": round(float(cnn["threshold"]), 6),
        "test": rounded(cnn["test"]),
        "val": rounded(cnn["val"]),
        "baseline_always_healthy": rounded(healthy["test"]),
        "baseline_classical": {"model": model, **rounded(classical["test"])},
    }


def headline(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The few figures worth comparing across runs (reports/metrics/evaluate.json, the DVC
    metrics): the CNN's test F1/precision/recall/PR-AUC, its threshold, and what the baselines
    reach; the full record stays in scores.json, so `dvc metrics show` stays one screen wide."""
    classical, healthy = scores["baseline_classical"], scores["baseline_always_healthy"]
    return {
        "test": {k: scores["test"][k] for k in HEADLINE},
        "threshold": scores["threshold"],
        "baseline": {
            "classical_f1": classical["f1"],
            "classical_pr_auc": classical["pr_auc"],
            "always_healthy_accuracy": healthy["accuracy"],
        },
    }


def write_pr_curve(path: Path | str, y: Iterable[int], p: Iterable[float]) -> Path:
    return write_json(path, pr_curve_points(y, p))


def write_confusion(
    path: Path | str, y: Iterable[int], p: Iterable[float], threshold: float
) -> Path:
    return write_text_atomic(Path(path), confusion_rows(y, p, threshold).to_csv(index=False))


def write_table(path: Path | str, table: pd.DataFrame, digits: int = 6) -> Path:
    return write_text_atomic(Path(path), table.round(digits).to_csv(index=False))


def threshold_record(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """What the registry needs to know about the decision threshold."""
    return {
        "threshold": round(float(evaluation["threshold"]), 6),
        "chosen_on": "val",
        "rule": "fault when p >= threshold",
        "criterion": "max F1 on validation; ties to the highest threshold; midpoint of the gap",
        "val_f1": round(float(evaluation["val"]["f1"]), 6),
    }


# --- plots -------------------------------------------------------------------------------------


def plot_pr_curves(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], title: str = ""):
    """PR curves of several models on one split, with the fault ratio as the chance line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (y, p) in curves.items():
        pts = pr_curve_points(y, p)
        if not pts:
            continue
        ap = fault_metrics(y, p, FIXED_THRESHOLD)["pr_auc"]
        ax.step(
            [q["recall"] for q in pts], [q["precision"] for q in pts], where="post",
            label=f"{name} (AP {ap:.3f})",
        )  # fmt: skip
    y_any = np.asarray(next(iter(curves.values()))[0]) if curves else np.zeros(1)
    ax.axhline(float(np.mean(y_any)), color="grey", ls="--", lw=0.8, label="chance (fault ratio)")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05), title=title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_worst(split: pd.DataFrame, worst: pd.DataFrame, n: int):
    """The `n` highest-loss signals, raw, titled with their label, score and loss."""
    import matplotlib.pyplot as plt

    top = worst.head(n)
    values = split.set_index("id")["values"]
    fig, axes = plt.subplots(len(top), 1, figsize=(9, 1.6 * max(len(top), 1)), squeeze=False)
    for ax, row in zip(axes[:, 0], top.itertuples(), strict=False):
        ax.plot(values[row.id], lw=0.6, color="tab:red" if row.y else "tab:blue")
        kind = "fault" if row.y else "healthy"
        ax.set_title(
            f"{row.id}  label {row.label} ({kind})  p={row.p:.3f}  loss={row.loss:.2f}", fontsize=8
        )
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def load_split(data_dir: Path | str, name: str) -> pd.DataFrame:
    """One prepared split (train, val or test)."""
    import pandas as pd

    return pd.read_parquet(Path(data_dir) / f"{name}.parquet")
