"""The model registry on git tags (GTO): versions, stages and approval status.

Each promotion attempt registers a version of the artifact `fault_cnn` (git tag
`fault_cnn@vX.Y.Z`, its message a JSON record: the BentoML model tag, key metrics, the
provenance) and assigns the gate's decision: `approved` or `rejected`. Approval is offline; a
version is `prod` only while it serves: `faultwatch deploy` assigns `prod` when a version
takes all the traffic (`up`, `switch`, a canary reaching 100 %, a rollback to it), and records
a canary aborted by its analysis (`canary-aborted`) or a rollback away from a version
(`rolled-back`) on that version, the reason in the tag's message. The BentoML model store
holds the weights; the tags hold the history.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faultwatch.errors import FaultwatchError

ARTIFACT = "fault_cnn"
PRODUCTION = "prod"
APPROVED, REJECTED = "approved", "rejected"
# what the deployment's online gates said of a version after its approval
CANARY_ABORTED, ROLLED_BACK = "canary-aborted", "rolled-back"
OUTCOMES = (CANARY_ABORTED, ROLLED_BACK)
AUTHOR = ("faultwatch promote", "faultwatch@localhost")


@dataclass(frozen=True)
class Version:
    version: str
    commit: str
    created_at: str
    record: dict[str, Any]
    stages: tuple[str, ...] = field(default_factory=tuple)

    @property
    def approval(self) -> str:
        if REJECTED in self.stages:
            return REJECTED
        return APPROVED if APPROVED in self.stages else "pending"

    @property
    def model_tag(self) -> str:
        return str(self.record.get("model_tag", ""))

    @property
    def refused_online(self) -> str | None:
        """`canary-aborted` or `rolled-back` when the deployment refused it since it last
        took all the traffic; None otherwise."""
        return next((s for s in self.stages if s in OUTCOMES), None)


def _record(message: str) -> dict[str, Any]:
    try:
        rec = json.loads(message)
    except (TypeError, json.JSONDecodeError):
        return {"message": message}
    return rec if isinstance(rec, dict) else {"message": message}


def _assignment_number(tag: Any) -> int:
    """GTO numbers its assignment tags (`fault_cnn#prod#7`) across the artifact: the order of
    events, which the tags' one-second timestamps cannot give."""
    name = tag.get("tag") if isinstance(tag, dict) else str(tag)
    try:
        return int(str(name).rsplit("#", 1)[1])
    except (IndexError, ValueError):
        return -1


def versions(repo: Path | str = ".") -> list[Version]:
    """Every registered version, oldest first, with its current stages: `prod` on the version
    that was assigned it last (one production at a time); on each version the later of its
    `approved` / `rejected` decisions (each version keeps its own), and the later of its
    `canary-aborted` / `rolled-back` outcomes when it came after the version's last `prod`."""
    from gto import api

    shown = (
        _gto_call(
            f"reading the versions of {ARTIFACT}",
            api.show,
            str(repo),
            ARTIFACT,
            versions_per_stage=-1,  # GTO's default keeps one version per stage
        )
        if _has_artifact(repo)
        else []
    )
    latest: dict[str, dict[str, int]] = {}  # version -> stage -> number of its last assignment
    for v in shown:
        for s in v.get("stages", []):
            if s.get("is_active"):
                n = max((_assignment_number(a) for a in s.get("assignments") or []), default=-1)
                n = max(n, _assignment_number(s.get("ref")))
                latest.setdefault(v["version"], {})[s["stage"]] = n
    prod_at = {ver: st[PRODUCTION] for ver, st in latest.items() if PRODUCTION in st}
    current_prod = max(prod_at, key=prod_at.get) if prod_at else None
    out = []
    for v in shown:
        reg = (v.get("registrations") or [{}])[-1]
        assigned = latest.get(v["version"], {})
        stages = set(assigned) - {PRODUCTION, APPROVED, REJECTED, *OUTCOMES}
        decisions = {k: assigned[k] for k in (APPROVED, REJECTED) if k in assigned}
        if decisions:
            stages.add(max(decisions, key=decisions.get))
        outcomes = {k: assigned[k] for k in OUTCOMES if k in assigned}
        if outcomes and max(outcomes.values()) > assigned.get(PRODUCTION, -1):
            stages.add(max(outcomes, key=outcomes.get))
        if v["version"] == current_prod:
            stages.add(PRODUCTION)
        out.append(
            Version(
                version=v["version"],
                commit=v["commit_hexsha"],
                created_at=str(v.get("created_at")),
                record=_record(reg.get("message", "")),
                stages=tuple(sorted(stages)),
            )
        )
    return sorted(out, key=lambda v: tuple(int(x) for x in v.version.lstrip("v").split(".")))


class RegistryError(FaultwatchError):
    """The registry (git tags) cannot be read or written."""


def _has_artifact(repo: Path | str) -> bool:
    import git

    try:
        tags = git.Repo(str(repo), search_parent_directories=True).tags
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise RegistryError(
            f"{repo}: not a git repository: the model registry lives in git tags "
            "(`git init` and commit the project first)"
        ) from None
    return any(t.name.startswith(f"{ARTIFACT}@") for t in tags)


def _gto_call(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A GTO call whose failure (no commit yet, a bad ref) is a named error, not a traceback."""
    from gto.exceptions import GTOException

    try:
        return call(*args, **kwargs)
    except GTOException as e:
        raise RegistryError(f"registry: {what} failed: {e}") from None


def production(repo: Path | str = ".") -> Version | None:
    """The version in the `prod` stage (the latest assignment wins)."""
    in_prod = [v for v in versions(repo) if PRODUCTION in v.stages]
    return in_prod[-1] if in_prod else None


def latest_approved(repo: Path | str = ".") -> Version | None:
    approved = [v for v in versions(repo) if v.approval == APPROVED]
    return approved[-1] if approved else None


def current(known: list[Version]) -> Version | None:
    """The model to ship, which the gate compares candidates with and `package` builds: the
    newest version approved after production and not refused online (a rollout waiting to
    happen), else production, else None."""
    prod = next((v for v in reversed(known) if PRODUCTION in v.stages), None)
    newer = known[known.index(prod) + 1 :] if prod else known
    pending = [v for v in newer if v.approval == APPROVED and not v.refused_online]
    return pending[-1] if pending else prod


def set_production(version: str, reason: str, repo: Path | str = ".") -> bool:
    """`version` takes all the traffic: it becomes `prod` (the previous one leaves the stage).
    False when it already was."""
    prod = production(repo)
    if prod is not None and prod.version == version:
        return False
    assign(version, PRODUCTION, reason, repo)
    return True


def record_outcome(version: str, outcome: str, reason: str, repo: Path | str = ".") -> None:
    """The deployment refused `version` online (`canary-aborted`, `rolled-back`)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r}: expected one of {OUTCOMES}")
    assign(version, outcome, reason, repo)


def get(version: str, repo: Path | str = ".") -> Version:
    for v in versions(repo):
        if v.version == version:
            return v
    known = ", ".join(v.version for v in versions(repo)) or "none"
    raise FaultwatchError(f"registry: no version {version} of {ARTIFACT} (registered: {known})")


def register(record: dict[str, Any], repo: Path | str = ".") -> str:
    """Register a new version on HEAD; returns its version string.

    GTO keeps one version per commit: a version names the commit whose dvc.lock pins the data,
    the params and the model, so a new candidate is committed before it is promoted.
    """
    from gto import api

    _has_artifact(repo)  # a repository, or a named error
    reg = _gto_call(
        f"registering a version of {ARTIFACT} on HEAD",
        api.register,
        str(repo),
        ARTIFACT,
        "HEAD",
        message=json.dumps(record, sort_keys=True),
        author=AUTHOR[0],
        author_email=AUTHOR[1],
    )
    return reg.version


def assign(version: str, stage: str, reason: str, repo: Path | str = ".") -> None:
    from gto import api

    _gto_call(
        f"assigning stage {stage!r} to {ARTIFACT} {version}",
        api.assign,
        str(repo),
        ARTIFACT,
        stage,
        version=version,
        message=reason,
        author=AUTHOR[0],
        author_email=AUTHOR[1],
        force=True,
    )


def events(repo: Path | str = ".") -> list[dict[str, Any]]:
    """The registry's history, newest first: every registration and stage assignment with its
    time, version, stage, commit and message (the gate's reasons)."""
    from gto import api

    if not _has_artifact(repo):
        return []
    history = _gto_call(f"reading the history of {ARTIFACT}", api.history, str(repo), ARTIFACT)
    # GTO's timestamps have one-second steps: within one, the assignments' numbers give the order
    return sorted(
        history,
        key=lambda e: (str(e.get("timestamp")), _assignment_number(e.get("ref"))),
        reverse=True,
    )
