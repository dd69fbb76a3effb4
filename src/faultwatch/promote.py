"""The promotion gate: a candidate replaces production only when it is at least as good.

Rules (params.yaml: promote):
- with a production model: both are scored by the same code on the same test split; the
  candidate must reach production's primary metric plus `margin`, and no lower recall;
- with no production model yet: the candidate must beat both baselines ("always healthy" and
  the classical model, from the evaluate stage) on the primary metric.
The decision and its reasons go to reports/promotion.json and to the registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from faultwatch.params import Section

Metric = Literal["f1", "pr_auc", "roc_auc", "recall", "precision"]


class PromoteParams(Section):
    primary_metric: Metric = "f1"
    margin: float = Field(0.0, ge=0.0, description="candidate >= production + margin")


@dataclass
class Decision:
    approved: bool
    reasons: list[str] = field(default_factory=list)
    candidate: dict[str, Any] = field(default_factory=dict)
    production: dict[str, Any] | None = None
    baselines: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _value(metrics: dict[str, Any], key: str) -> float:
    v = metrics.get(key)
    return float("-inf") if v is None else float(v)


def decide(
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    baselines: dict[str, dict[str, Any]],
    p: PromoteParams,
) -> Decision:
    """Pure: metrics in, decision and reasons out."""
    key = p.primary_metric
    d = Decision(True, [], candidate, production, baselines)
    cand = _value(candidate, key)
    if production is None:
        for name, base in baselines.items():
            b = _value(base, key)
            if cand > b:
                d.reasons.append(f"{key} {cand:.4f} beats baseline {name} ({b:.4f})")
            else:
                d.approved = False
                d.reasons.append(f"{key} {cand:.4f} does not beat baseline {name} ({b:.4f})")
        if not baselines:
            d.approved = False
            d.reasons.append("no production model and no baselines to compare with")
        return d
    prod = _value(production, key)
    if cand >= prod + p.margin:
        d.reasons.append(f"{key} {cand:.4f} >= production {prod:.4f} + margin {p.margin}")
    else:
        d.approved = False
        d.reasons.append(f"{key} {cand:.4f} < production {prod:.4f} + margin {p.margin}")
    c_rec, p_rec = _value(candidate, "recall"), _value(production, "recall")
    if c_rec >= p_rec:
        d.reasons.append(f"recall {c_rec:.4f} >= production {p_rec:.4f}")
    else:
        d.approved = False
        d.reasons.append(f"recall {c_rec:.4f} < production {p_rec:.4f}")
    return d


PROMOTION_FILE = "reports/promotion.json"


def score_on_test(model_tag: str, test_file: Path) -> dict[str, Any]:
    """Load a store entry (sha256 checked) and score it on the test split with its own threshold."""
    import bentoml
    import pandas as pd

    from faultwatch.evaluate import fault_metrics
    from faultwatch.serve.store import load_from_store, read_threshold

    test = pd.read_parquet(test_file)
    model = load_from_store(model_tag)
    threshold = read_threshold(bentoml.models.get(model_tag).path)
    p = model.predict_proba(list(test["values"]))
    return fault_metrics(test["y"].to_numpy(), p, threshold)


def promote_if_better(root: Path, p: PromoteParams, data_dir: str = "data/prepared") -> Decision:
    """Gate the registered candidate against production; record the decision everywhere."""
    import json

    from faultwatch import registry
    from faultwatch.errors import FaultwatchError
    from faultwatch.register import REGISTER_FILE, git_commit

    reg_file = root / REGISTER_FILE
    if not reg_file.exists():
        raise FaultwatchError(
            f"{REGISTER_FILE}: not found; run `dvc repro` (the register stage) first"
        )
    candidate_tag = json.loads(reg_file.read_text())["model_tag"]
    evaluation = json.loads((root / "reports/metrics/evaluate.json").read_text())
    baselines = {
        k.removeprefix("baseline_"): v for k, v in evaluation.items() if k.startswith("baseline_")
    }
    test_file = root / data_dir / "test.parquet"

    prod = registry.production(root)
    candidate = score_on_test(candidate_tag, test_file)
    production = score_on_test(prod.model_tag, test_file) if prod else None
    if prod and prod.model_tag == candidate_tag:
        decision = Decision(
            True,
            [f"{candidate_tag} is already in production ({prod.version})"],
            candidate,
            production,
        )
    else:
        decision = decide(candidate, production, baselines, p)

    head = git_commit(root)["commit"]
    same_commit = [v for v in registry.versions(root) if v.commit == head]
    if same_commit and same_commit[-1].model_tag != candidate_tag:
        raise FaultwatchError(
            f"registry: commit {head[:12]} already holds {same_commit[-1].version} "
            f"({same_commit[-1].model_tag}); commit dvc.lock for the new candidate first"
        )
    record = {
        "model_tag": candidate_tag,
        "test": {
            k: candidate[k] for k in ("f1", "precision", "recall", "pr_auc", "roc_auc", "threshold")
        },
        "decision": "approved" if decision.approved else "rejected",
        "reasons": decision.reasons,
        "production_before": prod.version if prod else None,
    }
    version = same_commit[-1].version if same_commit else registry.register(record, root)
    reason = "; ".join(decision.reasons)
    if decision.approved:
        registry.assign(version, registry.APPROVED, reason, root)
        if not (prod and prod.version == version):
            registry.assign(version, registry.PRODUCTION, reason, root)
    else:
        registry.assign(version, registry.REJECTED, reason, root)
    out = root / PROMOTION_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"version": version, **record, **decision.to_dict()},
            indent=2,
            sort_keys=True,
            default=str,
        )
        + "\n"
    )
    return decision
