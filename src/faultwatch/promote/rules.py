"""The promotion gate's rules, pure: the candidate's and the yardstick's figures (or the
baselines') in, the decision and its reasons out (faultwatch.promote runs them on real models).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import Field

from faultwatch.params import Section

Metric = Literal["f1", "pr_auc", "roc_auc", "recall", "precision"]
# prod + margin is a float sum: 0.8 + 0.1 is 0.9000000000000001, and a candidate at 0.9 reaches it
TOLERANCE = 1e-9


class PromoteParams(Section):
    primary_metric: Metric = "f1"
    margin: float = Field(
        0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="candidate > production and candidate >= production + margin",
    )
    # true: a version the gate passed is `pending` until a person approves it (`faultwatch
    # approve NAME VERSION --by WHO`) or rejects it; false: the gate's approval is final
    require_approval: bool = False


@dataclass
class Decision:
    approved: bool
    reasons: list[str] = field(default_factory=list)
    candidate: dict[str, Any] = field(default_factory=dict)
    production: dict[str, Any] | None = None
    baselines: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _figure(metrics: dict[str, Any] | None, key: str) -> float | None:
    """The figure as a finite float, or None when it is missing, null, not a number or inf/nan."""
    value = (metrics or {}).get(key)
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _missing_reason(who: str, metrics: dict[str, Any] | None, key: str) -> str:
    value = (metrics or {}).get(key)
    what = "missing" if value is None else f"not a finite number ({value!r})"
    return f"{who} {key} is {what}: no decision without it"


def _named(figure: float, family: str | None, show: bool) -> str:
    return f"{figure:.4f} ({family})" if show and family else f"{figure:.4f}"


def decide(
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    baselines: dict[str, dict[str, Any]],
    p: PromoteParams,
    name: str = "production",
    families: tuple[str | None, str | None] = (None, None),
) -> Decision:
    """Pure: metrics in, decision and reasons out. `production` is the yardstick's figures and
    `name` what the reasons call it (production, or an approved version not deployed yet);
    `families` (the candidate's, the yardstick's) are named where either is not the CNN."""
    key = p.primary_metric
    show = any(f not in (None, "cnn") for f in families)
    c_fam, p_fam = families
    d = Decision(True, [], candidate, production, baselines)
    needed = [("candidate", candidate, key)]
    if production is not None:
        needed += [(name, production, key)]
        needed += [("candidate", candidate, "recall"), (name, production, "recall")]
    else:
        needed += [(f"baseline {name}", base, key) for name, base in baselines.items()]
    missing = [_missing_reason(*n) for n in needed if _figure(n[1], n[2]) is None]
    if missing:
        d.approved = False
        d.reasons = missing
        return d

    cand = _figure(candidate, key)
    if production is None:
        if not baselines:
            d.approved = False
            d.reasons.append("no production model and no baselines to compare with")
        c = _named(cand, c_fam, show)
        for name, base in baselines.items():
            b = _figure(base, key)
            if cand > b:
                d.reasons.append(f"{key} {c} beats baseline {name} ({b:.4f})")
            else:
                d.approved = False
                tie = " (equal is not beating)" if cand == b else ""
                d.reasons.append(f"{key} {c} does not beat baseline {name} ({b:.4f}){tie}")
        return d

    prod = _figure(production, key)
    target = prod + p.margin
    c, pr = _named(cand, c_fam, show), _named(prod, p_fam, show)
    if p.margin == 0:
        if cand > prod:
            d.reasons.append(f"{key} {c} beats {name} {pr}")
        else:
            d.approved = False
            tie = f" (equal: {name} stays)" if cand == prod else ""
            d.reasons.append(f"{key} {c} does not beat {name} {pr}{tie}")
    elif cand > prod and cand >= target - TOLERANCE:
        d.reasons.append(f"{key} {c} >= {name} {pr} + margin {p.margin:g}")
    else:
        d.approved = False
        d.reasons.append(f"{key} {c} < {name} {pr} + margin {p.margin:g} ({target:.4f})")
    c_rec, p_rec = _figure(candidate, "recall"), _figure(production, "recall")
    c, pr = _named(c_rec, c_fam, show), _named(p_rec, p_fam, show)
    if c_rec >= p_rec:
        d.reasons.append(f"recall {c} >= {name} {pr}")
    else:
        d.approved = False
        d.reasons.append(f"recall {c} < {name} {pr}")
    return d
