"""The model registry on git tags (GTO): versions, stages and approval status.

Each promotion attempt registers a version of the artifact `fault_cnn` (git tag
`fault_cnn@vX.Y.Z`, its message a JSON record: the BentoML model tag, key metrics, the
provenance) and assigns the gate's decision: `approved` or `rejected`, or `pending` with
promote.require_approval until a person decides (`decide`: who and why in the tag's message).
A model group (faultwatch.groups) is an artifact of its own, named after it; every operation
here takes the artifact, or finds it from the folder it is given (`where`). Only an approved
version becomes `prod` (`require_approved`). Approval is offline; a
version is `prod` only while it serves: `faultwatch deploy` assigns `prod` when a version
takes all the traffic (`up`, `switch`, a canary reaching 100 %, a rollback to it), and records
a canary aborted by its analysis (`canary-aborted`) or a rollback away from a version
(`rolled-back`) on that version, the reason in the tag's message. The BentoML model store
holds the weights; the tags hold the history.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faultwatch.errors import FaultwatchError
from faultwatch.paths import group_of
from faultwatch.registry.tags import (  # noqa: F401 (the registry's names, in one place)
    APPROVED,
    ARTIFACT,
    AUTHOR,
    CANARY_ABORTED,
    DECISIONS,
    GATE,
    OUTCOMES,
    PENDING,
    PRODUCTION,
    REJECTED,
    ROLLED_BACK,
    RegistryError,
    Tag,
    Version,
    artifacts,
    assignment_number,
    read_tags,
    versions_of,
)


def where(repo: Path | str = ".", artifact: str | None = None) -> tuple[Path, str]:
    """(the git repository, the artifact) for a project or a model group's folder: a group's
    folder (groups/<name>/) means its artifact in the project's repository; the project
    itself means ARTIFACT. An explicit `artifact` wins."""
    path = Path(repo)
    found = group_of(path.resolve()) if path.exists() else None
    if found is not None:
        return found[0], artifact or found[1]
    return path, artifact or ARTIFACT


def _has_artifact(repo: Path | str, artifact: str = ARTIFACT) -> bool:
    """Whether `artifact` has a registered version (a RegistryError outside a git repository)."""
    return any(t.artifact == artifact and t.version for t in read_tags(repo))


def _gto_call(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A GTO call whose failure (no commit yet, a bad ref) is a named error, not a traceback."""
    from gto.exceptions import GTOException

    try:
        return call(*args, **kwargs)
    except GTOException as e:
        raise RegistryError(f"registry: {what} failed: {e}") from None


def versions(repo: Path | str = ".", artifact: str | None = None) -> list[Version]:
    """Every registered version, oldest first, with its current stages: `prod` on the version
    that was assigned it last (one production at a time); on each version the latest of its
    approval decisions (`approved`, `rejected`, `pending`; each version keeps its own), and the
    later of its `canary-aborted` / `rolled-back` outcomes when it came after the version's
    last `prod`."""
    repo, artifact = where(repo, artifact)
    return versions_of([t for t in read_tags(repo) if t.artifact == artifact])


def production(repo: Path | str = ".", artifact: str | None = None) -> Version | None:
    """The version in the `prod` stage (the latest assignment wins)."""
    in_prod = [v for v in versions(repo, artifact) if PRODUCTION in v.stages]
    return in_prod[-1] if in_prod else None


def latest_approved(repo: Path | str = ".", artifact: str | None = None) -> Version | None:
    approved = [v for v in versions(repo, artifact) if v.approval == APPROVED]
    return approved[-1] if approved else None


def current(known: list[Version]) -> Version | None:
    """The model to ship, which the gate compares candidates with and `package` builds: the
    newest version approved after production and not refused online (a rollout waiting to
    happen), else production, else None."""
    prod = next((v for v in reversed(known) if PRODUCTION in v.stages), None)
    newer = known[known.index(prod) + 1 :] if prod else known
    pending = [v for v in newer if v.approval == APPROVED and not v.refused_online]
    return pending[-1] if pending else prod


class NotApproved(RegistryError):
    """A version that is not approved was to take production traffic."""


def require_approved(v: Version, artifact: str, what: str) -> None:
    """Only an approved version takes production traffic: a pending or rejected one is a
    named error saying who decided and how to change it."""
    if v.approval == APPROVED:
        return
    d = v.decision
    if v.approval == PENDING:
        why = (
            "pending: the gate passed it and it waits for a person's decision "
            f"(`faultwatch approve {artifact} {v.version} --by NAME`)"
            if d.get("decision") == PENDING
            else "not gated yet (`faultwatch promote`)"
        )
    else:
        by = d.get("by", GATE)
        why = f"rejected by {by}" + (f": {d['reason']}" if d.get("reason") else "")
    raise NotApproved(
        f"registry: {artifact} {v.version} is {why}; only an approved version can {what}"
    )


def set_production(
    version: str, reason: str, repo: Path | str = ".", artifact: str | None = None
) -> bool:
    """`version` takes all the traffic: it becomes `prod` (the previous one leaves the stage).
    False when it already was. A version that is not approved is refused (NotApproved)."""
    repo, artifact = where(repo, artifact)
    v = get(version, repo, artifact)
    prod = production(repo, artifact)
    if prod is not None and prod.version == version:
        return False
    require_approved(v, artifact, "go to production")
    assign(version, PRODUCTION, reason, repo, artifact)
    return True


def record_outcome(
    version: str, outcome: str, reason: str, repo: Path | str = ".", artifact: str | None = None
) -> None:
    """The deployment refused `version` online (`canary-aborted`, `rolled-back`)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r}: expected one of {OUTCOMES}")
    assign(version, outcome, reason, repo, artifact)


def get(version: str, repo: Path | str = ".", artifact: str | None = None) -> Version:
    repo, artifact = where(repo, artifact)
    known = versions(repo, artifact)
    for v in known:
        if v.version == version:
            return v
    listed = ", ".join(v.version for v in known) or "none"
    raise FaultwatchError(f"registry: no version {version} of {artifact} (registered: {listed})")


def register(record: dict[str, Any], repo: Path | str = ".", artifact: str | None = None) -> str:
    """Register a new version on HEAD; returns its version string.

    GTO keeps one version per commit: a version names the commit whose dvc.lock pins the data,
    the params and the model, so a new candidate is committed before it is promoted.
    """
    from gto import api

    repo, artifact = where(repo, artifact)
    _has_artifact(repo, artifact)  # a repository, or a named error
    reg = _gto_call(
        f"registering a version of {artifact} on HEAD",
        api.register,
        str(repo),
        artifact,
        "HEAD",
        message=json.dumps(record, sort_keys=True),
        author=AUTHOR[0],
        author_email=AUTHOR[1],
    )
    return reg.version


def assign(
    version: str, stage: str, reason: str, repo: Path | str = ".", artifact: str | None = None
) -> None:
    from gto import api

    repo, artifact = where(repo, artifact)
    _gto_call(
        f"assigning stage {stage!r} to {artifact} {version}",
        api.assign,
        str(repo),
        artifact,
        stage,
        version=version,
        message=reason,
        author=AUTHOR[0],
        author_email=AUTHOR[1],
        force=True,
    )


def decide(
    version: str,
    decision: str,
    by: str,
    reason: str | None,
    repo: Path | str = ".",
    artifact: str | None = None,
) -> Version:
    """A person's approval (`approved`) or rejection (`rejected`) of `version`: who, when (the
    tag's time) and why, in the registry. A version the gate refused cannot be approved."""
    if decision not in (APPROVED, REJECTED):
        raise ValueError(f"decision {decision!r}: expected {APPROVED} or {REJECTED}")
    if not by.strip():
        raise RegistryError("--by: name the person who decides (it is kept in the registry)")
    repo, artifact = where(repo, artifact)
    v = get(version, repo, artifact)
    gate = v.record.get("decision")
    if decision == APPROVED and gate == REJECTED:
        reasons = "; ".join(v.record.get("reasons") or []) or "no reason recorded"
        raise RegistryError(
            f"registry: {artifact} {version} was refused by the promotion gate ({reasons}); a "
            "person approves only what the gate passed: train a better candidate"
        )
    if decision == APPROVED and gate is None:
        raise RegistryError(
            f"registry: {artifact} {version} was never gated: `faultwatch promote` first"
        )
    message = json.dumps({"by": by.strip(), "reason": reason or ""}, sort_keys=True)
    assign(version, decision, message, repo, artifact)
    return get(version, repo, artifact)


def events(repo: Path | str = ".", artifact: str | None = None) -> list[dict[str, Any]]:
    """The registry's history, newest first: every registration and stage assignment with its
    time, version, stage, commit and message (the gate's reasons)."""
    from gto import api

    repo, artifact = where(repo, artifact)
    if not _has_artifact(repo, artifact):
        return []
    history = _gto_call(f"reading the history of {artifact}", api.history, str(repo), artifact)
    # GTO's timestamps have one-second steps: within one, the assignments' numbers give the order
    return sorted(
        history,
        key=lambda e: (str(e.get("timestamp")), assignment_number(e.get("ref"))),
        reverse=True,
    )
