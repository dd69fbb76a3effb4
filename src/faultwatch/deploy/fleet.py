"""A fleet bento as a colour (issue 23): the deployment's unit is the bento of every model group.

In a project with model groups the package stage builds one bento of every group's model
(reports/package.json lists them under `models`). `faultwatch deploy up` and `stage` without a
version take that bento; a bento tag (`faultwatch:TAG`) names another. The colour then serves
the bento (its version, in the state and in `deploy status`, is the bento tag) and records each
group's store entry. What a single model's version goes through, each group's model goes
through:
- approval: every group's model must be a registry version of that group that is approved
  (`promote GROUP`, `approve`); a group whose model is a candidate, pending or rejected keeps the
  fleet from production traffic, named (it can still be staged, for the smoke test);
- the smoke test: each group's golden set (recorded at its registration) against the colour,
  the group named in the request;
- the registry follows the traffic per group: a switch makes each group's version `prod`; an
  aborted canary or a rollback records the refusal on the groups that changed only;
- the canary analysis judges each changed group on its own (faultwatch.deploy.fleet_analysis).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultwatch import registry
from faultwatch.deploy.analysis import DeployParams
from faultwatch.deploy.errors import VersionUnavailable
from faultwatch.deploy.results import PRODUCTION, RegistryRecord
from faultwatch.deploy.state import Colour
from faultwatch.errors import FaultwatchError
from faultwatch.serve.golden import load_golden, smoke_test

BENTO_PREFIX = "faultwatch:"
PACKAGE_FILE = Path("reports/package.json")


@dataclass(frozen=True)
class FleetModel:
    """One group's model in a fleet bento."""

    group: str
    tag: str  # its store entry
    entry: Path  # the store entry's folder
    registry_version: str | None  # None: the group's candidate, not promoted


def is_fleet(version: str | None) -> bool:
    return version is not None and version.startswith(BENTO_PREFIX)


def packaged_fleet(root: Path) -> str | None:
    """The bento tag of the package stage's fleet bento, when it built one."""
    try:
        record = json.loads((root / PACKAGE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record.get("bento_tag") if record.get("models") else None


def fleet_models(root: Path, bento_tag: str) -> dict[str, FleetModel]:
    """Each group's model in the bento `bento_tag` (its `models` argument), with the registry
    version the package stage chose for it (its labels; else looked up by store tag)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bento = bentoml.bentos.get(bento_tag)
    except NotFound:
        raise VersionUnavailable(
            f"no bento {bento_tag} in the store: `dvc repro -f -s package` builds the fleet's"
        ) from None
    raw = bento.info.args.get("models")
    if not raw:
        raise VersionUnavailable(f"bento {bento_tag} is not a fleet bento (no models argument)")
    models = json.loads(raw) if isinstance(raw, str) else dict(raw)
    out = {}
    for group, tag in models.items():
        try:
            entry = bentoml.models.get(tag)
        except NotFound:
            raise VersionUnavailable(
                f"bento {bento_tag}: model {tag} of group {group} is not in the store"
            ) from None
        out[group] = FleetModel(
            group, str(entry.tag), Path(entry.path), _version_of(root, group, tag)
        )
    return out


def _version_of(root: Path, group: str, tag: str) -> str | None:
    """The registry version of `group` whose model is `tag` (None: none registers it)."""
    try:
        known = registry.versions(root, group)
    except FaultwatchError:
        return None
    found = [v.version for v in known if v.model_tag == tag]
    return found[-1] if found else None


def require_approved(root: Path, models: dict[str, FleetModel], what: str) -> None:
    """Every group's model approved (registry.NotApproved or a named error otherwise)."""
    for m in models.values():
        if m.registry_version is None:
            raise registry.NotApproved(
                f"group {m.group}: its model {m.tag} is a candidate no promotion gated: "
                f"`faultwatch promote {m.group}`, then package again; it cannot {what}"
            )
        v = registry.get(m.registry_version, root, m.group)
        registry.require_approved(v, m.group, f"{what} (group {m.group})")


def smoke(c: Colour, models: dict[str, FleetModel], p: DeployParams) -> dict[str, Any]:
    """Each group's golden set against each replica of the colour; the first failure, named."""
    done: dict[str, Any] = {}
    n = 0
    for m in models.values():
        try:
            golden = load_golden(m.entry)
        except Exception as e:  # a group without a golden set fails the fleet's smoke test
            return {"passed": False, "message": f"group {m.group}: {e}"}
        for i, r in enumerate(c.servers, 1):
            url = f"http://{p.host}:{r.port}"
            result = smoke_test(url, golden, tolerance=p.smoke_tolerance, model=m.group)
            if not result.passed:
                where = f" on replica {i}" if len(c.servers) > 1 else ""
                d = result.as_dict()
                return {**d, "passed": False, "message": f"group {m.group}{where}: {d['message']}"}
            done = done or result.as_dict()
            n += result.n
    return {**done, "passed": True, "n": n, "groups": list(models)}


def changed(
    live: dict[str, str], staged: dict[str, FleetModel]
) -> tuple[dict[str, FleetModel], list[str]]:
    """(the staged groups whose model differs from the live colour's, the others)."""
    diff = {g: m for g, m in staged.items() if live.get(g) != m.tag}
    return diff, [g for g in staged if g not in diff]


def mark_live(root: Path, models: dict[str, FleetModel], why: str) -> RegistryRecord | None:
    """Each group's version becomes `prod` (the registry follows the traffic); one record
    naming the groups that changed, None when none did."""
    moved, problems = [], []
    for m in models.values():
        if m.registry_version is None:
            continue
        try:
            if registry.set_production(m.registry_version, why, root, m.group):
                moved.append(f"{m.group} {m.registry_version}")
        except FaultwatchError as e:
            problems.append(f"{m.group}: {e}")
    if not moved and not problems:
        return None
    return RegistryRecord(", ".join(moved) or "-", PRODUCTION, why, "; ".join(problems) or None)


def mark_refused(
    root: Path, models: dict[str, FleetModel], outcome: str, why: str
) -> RegistryRecord | None:
    """The refusal recorded on each group of `models` (the changed ones) that has a version."""
    named, problems = [], []
    for m in models.values():
        if m.registry_version is None:
            continue
        try:
            registry.record_outcome(m.registry_version, outcome, why, root, m.group)
            named.append(f"{m.group} {m.registry_version}")
        except FaultwatchError as e:
            problems.append(f"{m.group}: {e}")
    if not named and not problems:
        return None
    return RegistryRecord(", ".join(named) or "-", outcome, why, "; ".join(problems) or None)
