"""Rare-fault evaluation: threshold on validation, metrics, baselines, error analysis, DVC plots.

notebooks/04_evaluate.ipynb calls these (`from faultwatch import evaluate as ev`). Every model
(the CNN, "always healthy", the classical baseline) is scored by the same `fault_metrics`; a
score `p >= threshold` means "fault". Nothing here imports torch, scikit-learn or matplotlib at
import time.
"""

from faultwatch.evaluate.baselines import (
    ClassicalKind,
    always_healthy_scores,
    classical_baseline,
    fault_probability,
)
from faultwatch.evaluate.error_analysis import per_sample_loss, sorted_by_loss
from faultwatch.evaluate.metrics import (
    CLASS_NAMES,
    FIXED_THRESHOLD,
    choose_threshold,
    comparison_table,
    evaluate_scores,
    fault_metrics,
    rounded,
)
from faultwatch.evaluate.params import EvaluateParams
from faultwatch.evaluate.plots import plot_pr_curves, plot_worst
from faultwatch.evaluate.records import (
    HEADLINE,
    SCORES_FILE,
    check_channels,
    confusion_rows,
    headline,
    load_split,
    pr_curve_points,
    scores_record,
    threshold_record,
    write_confusion,
    write_json,
    write_pr_curve,
    write_table,
)
from faultwatch.features import FEATURE_STATS, feature_names, signal_features
from faultwatch.splits import frame_channels

__all__ = [
    "CLASS_NAMES",
    "FEATURE_STATS",
    "FIXED_THRESHOLD",
    "HEADLINE",
    "SCORES_FILE",
    "ClassicalKind",
    "EvaluateParams",
    "always_healthy_scores",
    "check_channels",
    "choose_threshold",
    "classical_baseline",
    "comparison_table",
    "confusion_rows",
    "evaluate_scores",
    "fault_metrics",
    "fault_probability",
    "feature_names",
    "frame_channels",
    "headline",
    "load_split",
    "per_sample_loss",
    "plot_pr_curves",
    "plot_worst",
    "pr_curve_points",
    "rounded",
    "scores_record",
    "signal_features",
    "sorted_by_loss",
    "threshold_record",
    "write_confusion",
    "write_json",
    "write_pr_curve",
    "write_table",
]
