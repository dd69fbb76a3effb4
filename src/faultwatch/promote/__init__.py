"""The promotion gate: a candidate replaces production only when it is better.

Rules (params.yaml: promote):
- the gate decides only on figures it has: a missing or non-finite figure (the candidate's,
  production's or a baseline's) is a refusal whose reason names the figure;
- the yardstick is the current model (faultwatch.registry.current): the newest version
  approved since production and not refused online, else production. With one, both are
  scored by the same code on the same test split; the candidate must beat its primary metric
  (strictly: a tie keeps it, since replacing it gains nothing) and reach it + `margin`
  (margin 0: strictly better;
  margin 0.02: at least 0.02 better), with no lower recall (equal recall is fine: recall is a
  guard against regressions, not a figure to beat);
- with no current model yet: the candidate must beat every baseline ("always healthy" and
  the classical model, from the evaluate stage) on the primary metric; equal is not beating
  (a classical candidate's own family, the classical baseline, is left out: `baselines_to_beat`);
- either side may be of either model family, scored by the same code on the same split; where
  one is classical the reasons name each figure's family, and the record holds both.
The decision and its reasons go to the registry (git tags: `approved` or `rejected`) and to
reports/promotion.json. Approval is not production: a version becomes `prod` when the
deployment puts all the traffic on it (faultwatch.deploy). The rules themselves, pure, are
in faultwatch.promote.rules (`decide`); this module runs them on the store's models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultwatch import registry
from faultwatch.errors import FaultwatchError
from faultwatch.evaluate import baselines_to_beat, fault_metrics
from faultwatch.paths import write_text_atomic
from faultwatch.promote.rules import Decision, PromoteParams, decide
from faultwatch.register import (
    EVALUATE_FILE,
    REGISTER_FILE,
    head_commit,
    read_json,
    store_entry,
    task,
    trained_on,
)
from faultwatch.serve.store import StoreError, load_entry, read_threshold

if TYPE_CHECKING:
    import pandas as pd


PROMOTION_FILE = Path("reports/promotion.json")


def baselines_of(evaluation: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """The baselines of the evaluate stage's scores; a file without them (or without the
    primary metric in one of them) was not written by this evaluate stage: a named error.
    A figure present but null or non-finite is the gate's to refuse, naming it."""
    baselines = {
        k.removeprefix("baseline_"): v for k, v in evaluation.items() if k.startswith("baseline_")
    }
    if not baselines:
        raise FaultwatchError(
            f"{EVALUATE_FILE}: no baseline_* entries (the evaluate stage writes "
            "baseline_always_healthy and baseline_classical): re-run it with `dvc repro`"
        )
    for name, base in baselines.items():
        if not isinstance(base, dict) or key not in base:
            raise FaultwatchError(
                f"{EVALUATE_FILE}: baseline_{name} has no '{key}' (promote.primary_metric): "
                "re-run the evaluate stage with `dvc repro`"
            )
    return baselines


def read_test_split(path: Path, root: Path) -> pd.DataFrame:
    """The test split's signals and labels ((channels, samples) signals for a multichannel
    split); a named error for a missing or unreadable file."""
    from faultwatch.splits import read_split

    shown = path.relative_to(root) if path.is_relative_to(root) else path
    if not path.is_file():
        raise FaultwatchError(f"{shown}: not found (the prepare stage writes it; run `dvc repro`)")
    try:
        test = read_split(path, columns=["values", "y"])
    except Exception as e:  # pyarrow raises several types for a bad file or a missing column
        raise FaultwatchError(f"{shown}: cannot read the test split: {e}") from None
    return test


def score_on_test(
    model_tag: str, test: pd.DataFrame, role: str = "model", root: Path | None = None
) -> dict[str, Any]:
    """Load a store entry (sha256 checked against the weights and the registration record) and
    score it on the test split with its own threshold."""
    entry = store_entry(model_tag, role, root)
    try:
        model = load_entry(entry)
        threshold = read_threshold(entry.path)
    except FaultwatchError as e:
        raise StoreError(f"{role}: {e}") from None
    p = model.predict_proba(list(test["values"]))
    return fault_metrics(test["y"].to_numpy(), p, threshold)


def entry_family(model_tag: str, role: str, root: Path | None = None) -> str:
    """A store entry's model family, from its model.json (faultwatch.model.io.family)."""
    from faultwatch.model.io import family, read_meta  # torch: loaded for scoring anyway

    return family(read_meta(store_entry(model_tag, role, root).path))


@dataclass(frozen=True)
class Yardstick:
    """What the candidate is measured against: the current model (production, or a newer
    approved version waiting for its rollout), or none (then the baselines)."""

    current: registry.Version | None
    deployed: bool
    name: str  # what the reasons call it
    who: str  # the same with production's version, for messages and the record


def _candidate_tag(root: Path) -> str:
    reg = read_json(root / REGISTER_FILE, "the register stage's record", root)
    candidate_tag = reg.get("model_tag")
    if not isinstance(candidate_tag, str) or not candidate_tag:
        raise FaultwatchError(f"{REGISTER_FILE}: no 'model_tag' (run the register stage)")
    return candidate_tag


def _check_commit(known: list[registry.Version], head: str, candidate_tag: str) -> None:
    """A commit names one version: refused where it already holds another model."""
    same_commit = [v for v in known if v.commit == head]
    if same_commit and same_commit[-1].model_tag != candidate_tag:
        raise FaultwatchError(
            f"registry: commit {head[:12]} already holds {same_commit[-1].version} "
            f"({same_commit[-1].model_tag}); commit dvc.lock for the new candidate first"
        )


def _yardstick(known: list[registry.Version]) -> Yardstick:
    prod = registry.current(known)
    deployed = prod is not None and registry.PRODUCTION in prod.stages
    name = "production" if deployed or prod is None else f"approved {prod.version}"
    return Yardstick(prod, deployed, name, f"{name} {prod.version}" if deployed else name)


def _other_task(yard: Yardstick, candidate_tag: str, root: Path) -> str | None:
    """Why the current model cannot be the yardstick, where it was trained for another task
    (data source, fault class): its score on this test split says nothing."""
    prod = yard.current
    if not prod or prod.model_tag == candidate_tag:
        return None
    was = trained_on(store_entry(prod.model_tag, yard.who, root))
    now = trained_on(store_entry(candidate_tag, "candidate", root))
    if (was["source"], was["positive_label"]) == (now["source"], now["positive_label"]):
        return None
    return (
        f"{yard.who} ({prod.model_tag}) was trained on {task(was)}, the "
        f"candidate on {task(now)}: not comparable, the candidate is gated on the baselines"
    )


def _gate(
    yard: Yardstick,
    candidate_tag: str,
    scores: tuple[dict[str, Any], dict[str, Any] | None],
    baselines: dict[str, dict[str, Any]],
    p: PromoteParams,
    root: Path,
    families: tuple[str, str | None],
) -> Decision:
    """The decision: already current, gated on the baselines (no current model, or one of
    another task), or `decide`."""
    candidate, production = scores
    prod = yard.current
    other_task = _other_task(yard, candidate_tag, root)
    if prod and prod.model_tag == candidate_tag:
        where = "in production" if yard.deployed else "approved"
        return Decision(
            True,
            [f"{candidate_tag} is already {where} ({prod.version})"],
            candidate,
            production,
            baselines,
        )
    if other_task or prod is None:
        kept, notes = baselines_to_beat(baselines, families[0])
        decision = decide(candidate, None, kept, p, families=(families[0], None))
        decision.production, decision.baselines = production, baselines  # all, for the record
        decision.reasons = [*([other_task] if other_task else []), *notes, *decision.reasons]
        return decision
    return decide(candidate, production, baselines, p, yard.name, families)


def _score_current(
    yard: Yardstick, candidate_tag: str, test: pd.DataFrame, root: Path
) -> dict[str, Any] | None:
    """The current model's figures on the candidate's test split; None without one. One
    trained for another task (another data source) is scored for the record only, and where
    its input does not fit this split (other channels, another length) it has no figures: the
    gate judges the candidate on the baselines then anyway."""
    prod = yard.current
    if prod is None:
        return None
    try:
        return score_on_test(prod.model_tag, test, yard.who, root)
    except (ValueError, FaultwatchError):
        if _other_task(yard, candidate_tag, root) is None:
            raise
        return None


FIGURES = ("f1", "precision", "recall", "pr_auc", "roc_auc", "threshold")


def _record(
    candidate_tag: str,
    decision: Decision,
    yard: Yardstick,
    scores: tuple[dict[str, Any], dict[str, Any] | None],
    baselines: dict[str, dict[str, Any]],
    key: str,
    families: tuple[str, str | None],
) -> dict[str, Any]:
    """The registry tag's message: the decision, the figures it was made on, and each side's
    model family (`family`: the candidate's; `production_family`: the yardstick's)."""
    (candidate, production), prod = scores, yard.current
    return {
        "model_tag": candidate_tag,
        "family": families[0],
        "production_family": families[1],
        "test": {k: candidate.get(k) for k in FIGURES},
        "decision": "approved" if decision.approved else "rejected",
        "reasons": decision.reasons,
        "production_before": prod.version if prod else None,  # the yardstick's version
        "compared_with": yard.who if prod else "the baselines",
        "production_test": {k: production.get(k) for k in FIGURES} if production else None,
        "baselines": {name: base.get(key) for name, base in baselines.items()},
    }


def _write_decision(root: Path, version: str, record: dict[str, Any], decision: Decision) -> None:
    text = json.dumps(
        {"version": version, **record, **decision.to_dict()}, indent=2, sort_keys=True, default=str
    )
    try:
        write_text_atomic(root / PROMOTION_FILE, text + "\n")
    except OSError as e:
        raise FaultwatchError(
            f"{PROMOTION_FILE}: could not write the decision ({e}); the registry holds it: "
            f"`faultwatch registry show {version}`"
        ) from None


def promote_if_better(
    root: Path, p: PromoteParams, data_dir: str = "data/prepared"
) -> tuple[Decision, str]:
    """Gate the registered candidate against production; record the decision in the registry
    and in reports/promotion.json (replaced atomically). Returns the decision and the version.

    Every input is read and checked before the registry is touched: a missing file, a store
    entry that fails its sha256 check, or a commit that holds another model stops here.
    """
    candidate_tag = _candidate_tag(root)
    evaluation = read_json(root / EVALUATE_FILE, "the evaluate stage's scores", root)
    baselines = baselines_of(evaluation, p.primary_metric)
    test = read_test_split(root / data_dir / "test.parquet", root)

    head = head_commit(root)
    known = registry.versions(root)
    _check_commit(known, head, candidate_tag)
    # one version per model: the same candidate on a later commit is not registered again
    same_model = [v for v in known if v.model_tag == candidate_tag]
    yard = _yardstick(known)

    candidate = score_on_test(candidate_tag, test, "candidate", root)
    production = _score_current(yard, candidate_tag, test, root)
    scores = (candidate, production)
    families = (
        entry_family(candidate_tag, "candidate", root),
        entry_family(yard.current.model_tag, yard.who, root) if yard.current else None,
    )
    decision = _gate(yard, candidate_tag, scores, baselines, p, root, families)
    record = _record(candidate_tag, decision, yard, scores, baselines, p.primary_metric, families)
    version = same_model[-1].version if same_model else registry.register(record, root)
    reason = "; ".join(decision.reasons)
    person = same_model[-1].decision.get("by") if same_model else None
    if person not in (None, registry.GATE):
        # a person's approval or rejection stands: the gate never overrides it
        decision.reasons.append(
            f"{version} was {same_model[-1].approval} by {person}: the registry keeps that"
        )
    elif decision.approved and p.require_approval:
        # a person decides: until then it is pending, which no path to production accepts
        registry.assign(version, registry.PENDING, reason, root)
    elif decision.approved:  # production only when the deployment puts the traffic on it
        registry.assign(version, registry.APPROVED, reason, root)
    else:
        registry.assign(version, registry.REJECTED, reason, root)
    _write_decision(root, version, record, decision)
    return decision, version
