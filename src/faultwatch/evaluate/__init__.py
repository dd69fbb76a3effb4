"""Rare-fault evaluation: threshold on validation, metrics, baselines, the two model families
side by side, error analysis, DVC plots.

notebooks/04_evaluate.ipynb calls these (`from faultwatch import evaluate as ev`). Every model
(the candidate of either family, "always healthy", the classical baseline) is scored by the
same `fault_metrics`; a score `p >= threshold` means "fault". Nothing here imports torch, scikit-learn or matplotlib at
import time.
"""

from faultwatch.evaluate.baselines import (
    ClassicalKind,
    always_healthy_scores,
    classical_baseline,
    fault_probability,
)
from faultwatch.evaluate.error_analysis import per_sample_loss, sorted_by_loss
from faultwatch.evaluate.families import (
    FAMILIES,
    FAMILY_FILE,
    baseline_note,
    baseline_role,
    baselines_to_beat,
    decision_lines,
    family_record,
    other_family,
    read_family_decision,
    side_by_side,
)
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
    "FAMILIES",
    "FAMILY_FILE",
    "FEATURE_STATS",
    "FIXED_THRESHOLD",
    "HEADLINE",
    "SCORES_FILE",
    "ClassicalKind",
    "EvaluateParams",
    "always_healthy_scores",
    "baseline_note",
    "baseline_role",
    "baselines_to_beat",
    "check_channels",
    "choose_threshold",
    "classical_baseline",
    "comparison_table",
    "confusion_rows",
    "decision_lines",
    "evaluate_scores",
    "family_record",
    "fault_metrics",
    "fault_probability",
    "feature_names",
    "frame_channels",
    "headline",
    "load_split",
    "other_family",
    "per_sample_loss",
    "plot_pr_curves",
    "plot_worst",
    "pr_curve_points",
    "read_family_decision",
    "rounded",
    "scores_record",
    "side_by_side",
    "signal_features",
    "sorted_by_loss",
    "threshold_record",
    "write_confusion",
    "write_json",
    "write_pr_curve",
    "write_table",
]
