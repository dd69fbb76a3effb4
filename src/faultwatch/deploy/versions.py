"""The registry version a colour serves: its model in the store, its golden set (the smoke
test) and the fault rate it was evaluated with (the canary's reference)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultwatch import registry
from faultwatch.deploy import fleet
from faultwatch.deploy.analysis import DeployParams
from faultwatch.deploy.errors import VersionUnavailable
from faultwatch.deploy.state import Colour
from faultwatch.paths import bentoml_home
from faultwatch.serve.golden import GoldenError, load_golden, smoke_test


@dataclass(frozen=True)
class Resolved:
    """A registry version and its model store entry; or a fleet bento (its tag as `version`,
    its first group's entry, and every group's model in `models`)."""

    version: str
    model_tag: str
    entry: Path  # the store entry's folder
    approval: str  # the promotion gate's decision
    models: dict[str, fleet.FleetModel] | None = None


def _resolve_fleet(root: Path, bento_tag: str) -> Resolved:
    models = fleet.fleet_models(root, bento_tag)
    first = next(iter(models.values()))
    states = []
    for m in models.values():
        if m.registry_version is None:
            states.append(f"{m.group} candidate")
            continue
        approval = registry.get(m.registry_version, root, m.group).approval
        if approval != registry.APPROVED:
            states.append(f"{m.group} {approval}")
    return Resolved(bento_tag, first.tag, first.entry, ", ".join(states) or "approved", models)


def resolve(root: Path, version: str | None) -> Resolved:
    """`version` (default: the production version, else the latest approved one) and its model
    in the store; VersionUnavailable says how to get it back when the store lacks it."""
    import bentoml  # heavy: only the commands that start a colour pay for it
    from bentoml.exceptions import NotFound

    if version is None:  # a project with groups: the package stage's fleet bento
        version = fleet.packaged_fleet(root)
    if fleet.is_fleet(version):
        assert version is not None
        return _resolve_fleet(root, version)
    if version is None:
        v = registry.production(root) or registry.latest_approved(root)
        if v is None:
            raise VersionUnavailable(
                "no production or approved version in the registry: promote one "
                "(`faultwatch promote`) or name a version (`faultwatch registry list`)"
            )
    else:
        v = registry.get(version, root)
    if not v.model_tag:
        raise VersionUnavailable(f"registry version {v.version} names no model store entry")
    try:
        entry = bentoml.models.get(v.model_tag)
    except NotFound:
        home = bentoml_home(root)
        raise VersionUnavailable(
            f"model {v.model_tag} of registry version {v.version} is not in the store {home}. "
            f"Rebuild it from its commit {v.commit[:12]}: `git worktree add ../fw-{v.version} "
            f"{v.commit}`, then in that folder `dvc pull` (or `dvc repro register`) with "
            f"BENTOML_HOME={home}; then stage it again"
        ) from None
    return Resolved(v.version, str(entry.tag), Path(entry.path), v.approval)


def require_approved(root: Path, version: str, what: str) -> None:
    """Only an approved version takes production traffic (live, a canary share, a switch, a
    rollback to it): a pending or rejected one is registry.NotApproved, raised before the
    router or a colour is touched. Staging one (no traffic: smoke test, shadow) is allowed.
    A fleet bento: every group's model."""
    if fleet.is_fleet(version):
        fleet.require_approved(root, fleet.fleet_models(root, version), what)
        return
    repo, artifact = registry.where(root)
    registry.require_approved(registry.get(version, repo, artifact), artifact, what)


def training_fault_rate(entry_path: Path) -> float | None:
    """The fault share of the split the model was evaluated on, recorded at registration."""
    try:
        return load_golden(entry_path).fault_rate
    except GoldenError:
        return None


def smoke(c: Colour, r: Resolved | Path, p: DeployParams) -> dict[str, Any]:
    """The colour's answers on the golden set of its model, from each replica; the dict the
    state keeps (the first replica's, or the first that failed, named). A fleet bento: every
    group's golden set, the group named in the requests."""
    if isinstance(r, Resolved) and r.models:
        return fleet.smoke(c, r.models, p)
    entry_path = r.entry if isinstance(r, Resolved) else r
    try:
        golden = load_golden(entry_path)
    except Exception as e:  # a missing or malformed golden set is a failed smoke test
        return {"passed": False, "message": str(e)}
    first: dict[str, Any] | None = None
    for i, r in enumerate(c.servers, 1):
        result = smoke_test(f"http://{p.host}:{r.port}", golden, tolerance=p.smoke_tolerance)
        d = {**result.as_dict(), "passed": bool(result.passed)}
        if not result.passed and len(c.servers) > 1:
            d["message"] = f"replica {i} of {len(c.servers)} (port {r.port}): {d['message']}"
        if not result.passed:
            return d
        first = first or d
    assert first is not None
    return first
