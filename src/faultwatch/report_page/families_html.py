"""The model families on the page: the candidate's family (the CNN or the classical model), the
train stage's choice between them on validation (reports/train/family.json) and both families'
figures on test from the evaluation (reports/evaluate/scores.json `family`), with who won and
by how much. A project from before the families shows its candidate as a CNN with no choice."""

from __future__ import annotations

from html import escape
from typing import Any

from faultwatch.evaluate.families import FAMILIES, FAMILY_FILE, other_family
from faultwatch.report_page.markup import badge, e, table

TEST_FIGURES = ("f1", "pr_auc")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def margin(name: str, winner: str, a: Any, loser: str, b: Any) -> str | None:
    """`f1: classical 0.9300 against cnn 0.8800 (+0.0500)`; None without both figures."""
    a, b = _num(a), _num(b)
    if a is None or b is None:
        return None
    return f"{name}: {winner} {a:.4f} against {loser} {b:.4f} ({a - b:+.4f})"


def test_margins(families: dict[str, Any]) -> list[str]:
    """The candidate against the other family on test, per figure; a sentence saying why when
    the other family has no test figures."""
    candidate, evaluation = families.get("candidate"), families.get("evaluation")
    if candidate not in FAMILIES or not evaluation:
        return []
    other = other_family(candidate)
    test = evaluation.get("test") or {}
    mine, theirs = test.get(candidate) or {}, test.get(other)
    if theirs is None:
        why = (
            "not kept by the train stage (it saves the winner only): validation figures only"
            if other == "cnn"
            else "not scored (evaluate.baseline_model is not the random forest)"
        )
        return [f"{other} on test: {why}"]
    shown = [margin(k, candidate, mine.get(k), other, theirs.get(k)) for k in TEST_FIGURES]
    return [f"test {s}" for s in shown if s]


def validation_margin(decision: dict[str, Any]) -> str | None:
    """The decision's own figure on validation, the chosen family first."""
    chosen, validation = decision.get("family"), decision.get("validation") or {}
    if chosen not in FAMILIES or not validation:
        return None
    other, metric = other_family(chosen), decision.get("metric") or "pr_auc"
    figures = margin(
        metric,
        chosen,
        (validation.get(chosen) or {}).get(metric),
        other,
        (validation.get(other) or {}).get(metric),
    )
    return f"validation {figures}" if figures else None


def families_block(families: dict[str, Any]) -> str:
    """The candidate's family, the train stage's decision and the two families side by side."""
    candidate = families.get("candidate")
    if candidate is None:
        return ""
    decision, evaluation = families.get("decision"), families.get("evaluation") or {}
    if decision:
        said = (
            f"requested <code>{e(decision.get('requested'))}</code>, chosen "
            f"<b>{e(decision.get('family'))}</b>: {escape(str(decision.get('reason')))}"
        )
    else:
        said = (
            f"no <code>{escape(str(FAMILY_FILE))}</code>: the candidate's family was not "
            "chosen between the two (trained before <code>train.family</code>)"
        )
    lines = [said, *filter(None, [validation_margin(decision or {})]), *test_margins(families)]
    validation = (decision or {}).get("validation") or {}
    rows = []
    for f in FAMILIES:
        val = validation.get(f) or {}
        test = (evaluation.get("test") or {}).get(f) or {}
        mark = badge("candidate", "good") if f == candidate else ""
        rows.append(
            [
                f"<b>{escape(f)}</b> {mark}",
                e(val.get("pr_auc")),
                e(val.get("f1")),
                e(test.get("f1")),
                e(test.get("pr_auc")),
            ]
        )
    headers = ["family", "validation pr_auc", "validation f1", "test f1", "test pr_auc"]
    return (
        '<div id="families"><h3>Model families: the CNN and the classical model</h3>'
        + "".join(f'<p class="family-line">{line}</p>' for line in lines[:1])
        + '<ul class="links">'
        + "".join(f"<li>{escape(line)}</li>" for line in lines[1:])
        + "</ul>"
        + table(headers, rows, {1, 2, 3, 4})
        + "</div>"
    )
