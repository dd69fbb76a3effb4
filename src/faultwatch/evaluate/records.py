"""What the evaluation writes: the records register and promote read, DVC's plot files, tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultwatch.errors import DataError
from faultwatch.evaluate.metrics import CLASS_NAMES, as_arrays, rounded
from faultwatch.paths import write_text_atomic
from faultwatch.splits import frame_channels, read_split

if TYPE_CHECKING:
    import pandas as pd


def pr_curve_points(
    y: Iterable[int], p: Iterable[float], digits: int = 6
) -> list[dict[str, float]]:
    """Precision-recall curve as [{precision, recall}, ...] (DVC's JSON plot format)."""
    from sklearn.metrics import precision_recall_curve

    y_arr, p_arr = as_arrays(y, p)
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

    y_arr, p_arr = as_arrays(y, p)
    pred = (p_arr >= threshold).astype(int)
    return pd.DataFrame(
        {"actual": [names[i] for i in y_arr], "predicted": [names[i] for i in pred]}
    )


def write_json(path: Path | str, data: Any) -> Path:
    return write_text_atomic(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n")


SCORES_FILE = "scores.json"
HEADLINE = ("f1", "precision", "recall", "pr_auc")


def scores_record(
    cnn: Mapping[str, Any],
    classical: Mapping[str, Any],
    healthy: Mapping[str, Any],
    model: str,
    family: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the evaluation measured (out_dir/scores.json, which register and promote
    read): the candidate (`cnn`: the model under evaluation, of either family) on val and
    test, both baselines on test, counts included; `family` (faultwatch.evaluate.families.
    family_record): the candidate's family and each family's test figures."""
    record = {
        "threshold": round(float(cnn["threshold"]), 6),
        "test": rounded(cnn["test"]),
        "val": rounded(cnn["val"]),
        "baseline_always_healthy": rounded(healthy["test"]),
        "baseline_classical": {"model": model, **rounded(classical["test"])},
    }
    if family is not None:
        record["family"] = dict(family)
    return record


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


def load_split(data_dir: Path | str, name: str) -> pd.DataFrame:
    """One prepared split (train, val or test), read by faultwatch.splits.read_split: a
    multichannel split's values are (channels, samples) arrays, its names `attrs["channels"]`."""
    return read_split(Path(data_dir) / f"{name}.parquet")


def check_channels(expected: Sequence[str] | None, splits: Mapping[str, pd.DataFrame]) -> None:
    """Every split has the channels `expected` (the model's), in its order, or a DataError
    naming the split and both lists."""
    want = None if expected is None else tuple(expected)
    for name, split in splits.items():
        found = frame_channels(split)
        if found != want:
            raise DataError(
                f"<{name} split>",
                "channels_match",
                f"the model reads channels {list(want) if want else 'none (univariate)'}, the "
                f"split has {list(found) if found else 'none (univariate)'}",
            )
