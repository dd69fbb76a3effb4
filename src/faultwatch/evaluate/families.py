"""The two model families side by side: the candidate (the family the train stage saved in the
model folder) and the other family, scored on the same test split, and the train stage's
choice between them (reports/train/family.json, optional: projects trained before the
`train.family` parameter have none).

The classical family is the evaluate stage's random-forest baseline (faultwatch.model.
classical fits it with the same code). When the candidate is classical, that baseline is the
candidate's own model retrained here, not a model of its own: the comparison says so and
shows it once. The CNN, when it lost the train stage's choice, is not kept: its figures are
the validation ones of the decision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faultwatch.errors import FaultwatchError
from faultwatch.evaluate.metrics import rounded
from faultwatch.paths import display_path

FAMILIES = ("cnn", "classical")
FAMILY_FILE = Path("reports/train/family.json")  # written by the train stage
CLASSICAL_KIND = "random_forest"  # the classical family's estimator (evaluate.baseline_model)
HEALTHY = "always healthy"


def read_family_decision(path: Path | str, root: Path | None = None) -> dict[str, Any] | None:
    """The train stage's choice of family; None when the file is absent (an older project). A
    file that is not a JSON object with `family` is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    shown = display_path(path, root)
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FaultwatchError(
            f"{shown}: not valid JSON (the train stage's family choice): {e}"
        ) from None
    if not isinstance(value, dict) or value.get("family") not in FAMILIES:
        raise FaultwatchError(
            f"{shown}: expected an object with 'family' one of {list(FAMILIES)} (the train "
            "stage's family choice): run the train stage again"
        )
    return value


def other_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}: expected one of {list(FAMILIES)}")
    return FAMILIES[1 - FAMILIES.index(family)]


def baseline_role(family: str, kind: str) -> str:
    """What the classical baseline is to the candidate: `other family` (a CNN candidate, a
    random forest baseline), `candidate retrained` (a classical candidate, a random forest
    baseline: the same code), or `another model` (another estimator)."""
    if kind != CLASSICAL_KIND:
        return "another model"
    return "candidate retrained" if family == "classical" else "other family"


def model_label(family: str) -> str:
    return f"{family} (candidate)"


def side_by_side(family: str, kind: str, candidate: Any, classical: Any, healthy: Any) -> dict:
    """One entry per model, the candidate first and named by its family, then the classical
    baseline (unless it is the candidate retrained: shown once), then always healthy. The
    values are whatever the caller compares: test figures, (y, p) pairs for a plot."""
    rows = {model_label(family): candidate}
    if baseline_role(family, kind) != "candidate retrained":
        rows[f"classical ({kind})"] = classical
    rows[HEALTHY] = healthy
    return rows


def family_record(
    family: str,
    kind: str,
    candidate_test: Mapping[str, Any],
    classical_test: Mapping[str, Any],
    same_scores: bool,
) -> dict[str, Any]:
    """scores.json's `family`: the candidate's family, the test figures of each family on the
    same split (None for the CNN when the candidate is classical: the train stage keeps the
    winner only), and what the classical baseline is to the candidate."""
    role = baseline_role(family, kind)
    test: dict[str, Any] = {f: None for f in FAMILIES}
    test[family] = rounded(candidate_test)
    if role == "other family":
        test["classical"] = rounded(classical_test)
    record = {"candidate": family, "test": test, "baseline_classical": role}
    if role == "candidate retrained":
        record["baseline_scores_equal"] = bool(same_scores)  # the same probabilities on test
    return record


def _figure(v: Any) -> str:
    return "—" if v is None else f"{float(v):.4f}"


def decision_lines(decision: Mapping[str, Any] | None, family: str) -> list[str]:
    """The train stage's choice in words: requested, chosen, the figures it was made on, why.
    Without a decision file: the model folder's family, and that nothing was compared."""
    if decision is None:
        return [
            f"family {family}: no reports/train/family.json (trained before train.family "
            "existed, or outside the pipeline): no choice between families was made"
        ]
    lines = [f"requested {decision.get('requested')}, chosen {decision.get('family')}"]
    if decision.get("family") != family:
        lines.append(
            f"warning: the model folder holds a {family} model, the decision says "
            f"{decision.get('family')}: the train stage ran again since, or the folder was replaced"
        )
    metric = decision.get("metric") or "pr_auc"
    for name, figures in (decision.get("validation") or {}).items():
        shown = ", ".join(f"{k} {_figure(v)}" for k, v in (figures or {}).items())
        lines.append(f"validation {name}: {shown}")
    if not decision.get("validation"):
        lines.append(f"no validation comparison ({metric}): the family was the parameter")
    lines.append(f"reason: {decision.get('reason')}")
    seconds = decision.get("train_seconds") or {}
    if seconds:
        lines.append(
            "train seconds: " + ", ".join(f"{k} {float(v):.1f}" for k, v in seconds.items())
        )
    return lines


def baseline_note(family: str, kind: str, same_scores: bool) -> str:
    """What the comparison shows of each family, in a sentence."""
    role = baseline_role(family, kind)
    if role == "candidate retrained":
        same = "the same" if same_scores else "not the same (other settings)"
        return (
            f"The classical baseline ({kind}) is the candidate's own family, retrained here on "
            f"the training split by the same code: {same} probabilities on test. It is shown "
            "once, as the candidate. The CNN is not kept by the train stage when it loses: its "
            "figures are the validation ones of the train stage's decision."
        )
    if role == "other family":
        return (
            f"The classical baseline ({kind}) is the other family: the same code the train "
            "stage fits the classical model with, on the training split."
        )
    return (
        f"The classical baseline ({kind}) is not the classical family (a random forest): "
        "a model of its own; the other family has no test figures here."
    )


def baselines_to_beat(
    baselines: Mapping[str, Mapping[str, Any]], family: str | None
) -> tuple[dict[str, Any], list[str]]:
    """The baselines (scores.json's `baseline_*`, prefix removed) a candidate of `family` must
    beat, and a reason for each left out: a classical candidate's own family, the random-forest
    baseline (the same code retrained: at best a tie, which would refuse every one)."""
    own = [
        name
        for name, base in baselines.items()
        if family == "classical"
        and name == "classical"
        and base.get("model", CLASSICAL_KIND) == CLASSICAL_KIND
    ]
    notes = [
        f"baseline {name} is the candidate's own family (the same {CLASSICAL_KIND}, retrained "
        "by the evaluate stage): not a yardstick"
        for name in own
    ]
    return {n: b for n, b in baselines.items() if n not in own}, notes
