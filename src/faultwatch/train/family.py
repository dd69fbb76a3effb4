"""The model family of a train stage (`train.family`): the CNN, the classical model, or both with
the better one on validation kept.

`best` trains both, scores both on the validation split with the same code (the evaluate
stage's `fault_metrics`: PR-AUC, and F1 at the threshold each gets on validation), and keeps
the higher validation PR-AUC in `model_dir`; a tie keeps the CNN. The test split is no
dependency of the train stage (dvc.yaml), so the choice cannot have seen it. The decision, the
figures it was made on and each family's training time go to `reports/train/family.json`
(a train stage output), which register, the evaluation notebook and the report page read.

With `cnn` the stage is what it always was (the same model folder, run record and metrics);
with `classical` the CNN is not trained.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from faultwatch.errors import DataError
from faultwatch.evaluate.metrics import choose_threshold, fault_metrics
from faultwatch.model.classical import fit_classical, save_classical
from faultwatch.model.io import load_model
from faultwatch.model.params import TrainParams
from faultwatch.paths import output, resolve, write_text_atomic
from faultwatch.splits import read_split, split_channels
from faultwatch.train.export import TrainResult

FAMILY_FILE = "family.json"
METRIC = "pr_auc"  # what `best` compares: threshold-free, as the CNN's epochs are kept by it
FAMILIES = ("cnn", "classical")


@dataclass
class FamilyRun:
    """What the train stage did: the CNN's run (None when it was not trained), the family kept
    in `model_dir`, and the decision record (family.json)."""

    family: str
    cnn: TrainResult | None
    decision: dict[str, Any]
    model_dir: Path
    classical_seconds: float | None = None
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def best_val_pr_auc(self) -> float:
        """The kept model's validation PR-AUC."""
        if self.family == "cnn" and self.cnn is not None:
            return self.cnn.best_val_pr_auc
        return float(self.decision["validation_pr_auc"])


def _split(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(str(path), "file_exists", "no such split file (run the earlier stages)")
    df = read_split(path)
    if int(df["y"].sum()) == 0:
        raise DataError(str(path), "fault_present", "no fault signal to learn from")
    return df


def train_classical(params: TrainParams, root: Path, model_dir: Path) -> tuple[dict, float]:
    """Fit the classical model on `train.classical.train_path` (the prepared training split, as
    the evaluate stage's baseline is fitted) and save it in `model_dir`; returns its
    description and the seconds it took."""
    c = params.classical
    path = resolve(c.train_path, root)
    df = _split(path)
    start = time.perf_counter()
    fitted = fit_classical(
        list(df["values"]), df["y"].to_numpy(), c.n_estimators, c.feature_length, c.fft_bands,
        params.seed,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    positive = str(df.loc[df["y"] == 1, "label"].iloc[0])
    meta: dict[str, Any] = {"positive_label": positive, "train_split": c.train_path}
    channels = split_channels(path)
    if channels is not None:
        meta["channels"] = list(channels)
    return save_classical(model_dir, fitted, meta), seconds


def validation_scores(model_dir: Path, val: pd.DataFrame) -> dict[str, Any]:
    """A saved model's validation figures by the evaluate stage's code: PR-AUC, and precision,
    recall and F1 at the threshold chosen on this same split (optimistic, as any validation
    figure; the same for both families)."""
    p = load_model(model_dir).predict_proba(list(val["values"]))
    y = val["y"].to_numpy()
    m = fault_metrics(y, p, choose_threshold(y, p))
    keys = ("pr_auc", "f1", "precision", "recall", "threshold")
    return {k: (None if m[k] is None else round(float(m[k]), 6)) for k in keys}


def choose(validation: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The family kept and why: the higher validation PR-AUC; a tie keeps the CNN."""
    cnn, classical = validation["cnn"][METRIC], validation["classical"][METRIC]
    if classical is not None and (cnn is None or classical > cnn):
        return "classical", (
            f"classical: validation {METRIC} {classical:.4f} against cnn {cnn or 0:.4f} "
            f"(+{classical - (cnn or 0):.4f})"
        )
    tie = " (a tie keeps the cnn)" if cnn == classical else ""
    return "cnn", (
        f"cnn: validation {METRIC} {cnn or 0:.4f} against classical {classical or 0:.4f} "
        f"({(cnn or 0) - (classical or 0):+.4f}){tie}"
    )


def train_family(
    params: TrainParams, root: Path, callbacks: Sequence[Any] = (), progress_bar: bool = False
) -> FamilyRun:
    """Train what `params.family` asks for into `params.model_dir`; see the module's doc."""
    from faultwatch.train.run import train

    model_dir = output(params.model_dir, root)
    if params.family == "classical":
        meta, seconds = train_classical(params, root, model_dir)
        val = _split(resolve(params.val_path, root))
        scores = validation_scores(model_dir, val)
        decision = record("classical", "classical", {}, "train.family is classical",
                          {"classical": seconds}, scores[METRIC])  # fmt: skip
        return FamilyRun("classical", None, decision, model_dir, seconds)

    result = train(params, root, callbacks, progress_bar)
    if params.family == "cnn":
        decision = record("cnn", "cnn", {}, "train.family is cnn",
                          {"cnn": result.train_seconds}, result.best_val_pr_auc)  # fmt: skip
        return FamilyRun("cnn", result, decision, result.model_dir)

    val = _split(resolve(params.val_path, root))
    with tempfile.TemporaryDirectory(prefix=".classical-", dir=result.model_dir.parent) as tmp:
        _, seconds = train_classical(params, root, Path(tmp))
        validation = {
            "cnn": validation_scores(result.model_dir, val),
            "classical": validation_scores(Path(tmp), val),
        }
        family, reason = choose(validation)
        if family == "classical":  # the kept model is the one in model_dir
            for f in ("weights.safetensors", "model.json"):
                shutil.copy2(Path(tmp) / f, result.model_dir / f)
    times = {"cnn": result.train_seconds, "classical": seconds}
    decision = record(family, "best", validation, reason, times, validation[family][METRIC])
    return FamilyRun(family, result, decision, result.model_dir, seconds, validation)


def record(
    family: str,
    requested: str,
    validation: dict[str, dict[str, Any]],
    reason: str,
    seconds: dict[str, float],
    val_pr_auc: float | None,
) -> dict[str, Any]:
    return {
        "family": family,
        "requested": requested,
        "metric": METRIC,
        "validation": validation,
        "validation_pr_auc": None if val_pr_auc is None else round(float(val_pr_auc), 6),
        "reason": reason,
        "train_seconds": {k: round(v, 3) for k, v in seconds.items()},
    }


def write_family_record(run: FamilyRun, report_dir: Path) -> list[Path]:
    """`family.json` in `report_dir`; a classical-only run also writes the run record the stage
    declares (run.json with its time, an empty history.csv: no epochs)."""
    text = json.dumps(run.decision, indent=2, sort_keys=True) + "\n"
    written = [write_text_atomic(report_dir / FAMILY_FILE, text)]
    if run.cnn is None:
        from faultwatch.train.export import HISTORY_FILE, RUN_FILE, history_columns

        seconds = {"family": run.family, "train_seconds": round(run.classical_seconds or 0, 3)}
        written += [
            write_text_atomic(report_dir / RUN_FILE, json.dumps(seconds, indent=2) + "\n"),
            write_text_atomic(report_dir / HISTORY_FILE, ",".join(history_columns()) + "\n"),
        ]
    return written


def kept_summary(run: FamilyRun) -> pd.Series:
    """The notebook's table of what was kept and why."""
    rows: dict[str, Any] = {"family kept": run.family, "train.family": run.decision["requested"],
                            "why": run.decision["reason"]}  # fmt: skip
    for fam, secs in run.decision["train_seconds"].items():
        rows[f"{fam} training s"] = secs
    for fam, scores in run.validation.items():
        for k in ("pr_auc", "f1"):
            rows[f"{fam} validation {k}"] = scores[k]
    return pd.Series(rows, dtype=object)
