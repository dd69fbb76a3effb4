"""The model registry on git tags (GTO): versions, stages and approval status.

Each promotion attempt registers a version of the artifact `fault_cnn` (git tag
`fault_cnn@vX.Y.Z`, its message a JSON record: the BentoML model tag, key metrics, the
provenance) and assigns stages: `approved` + `prod` when the gate approves, `rejected` when it
does not. The BentoML model store holds the weights; the tags hold the history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARTIFACT = "fault_cnn"
PRODUCTION = "prod"
APPROVED, REJECTED = "approved", "rejected"
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


def _record(message: str) -> dict[str, Any]:
    try:
        rec = json.loads(message)
    except (TypeError, json.JSONDecodeError):
        return {"message": message}
    return rec if isinstance(rec, dict) else {"message": message}


def versions(repo: Path | str = ".") -> list[Version]:
    """Every registered version, oldest first, with its active stages."""
    from gto import api

    shown = api.show(str(repo), ARTIFACT) if _has_artifact(repo) else []
    out = []
    for v in shown:
        reg = (v.get("registrations") or [{}])[-1]
        stages = tuple(sorted(s["stage"] for s in v.get("stages", []) if s.get("is_active")))
        out.append(
            Version(
                version=v["version"],
                commit=v["commit_hexsha"],
                created_at=str(v.get("created_at")),
                record=_record(reg.get("message", "")),
                stages=stages,
            )
        )
    return sorted(out, key=lambda v: tuple(int(x) for x in v.version.lstrip("v").split(".")))


def _has_artifact(repo: Path | str) -> bool:
    import git

    tags = git.Repo(str(repo), search_parent_directories=True).tags
    return any(t.name.startswith(f"{ARTIFACT}@") for t in tags)


def production(repo: Path | str = ".") -> Version | None:
    """The version in the `prod` stage (the latest assignment wins)."""
    in_prod = [v for v in versions(repo) if PRODUCTION in v.stages]
    return in_prod[-1] if in_prod else None


def latest_approved(repo: Path | str = ".") -> Version | None:
    approved = [v for v in versions(repo) if v.approval == APPROVED]
    return approved[-1] if approved else None


def get(version: str, repo: Path | str = ".") -> Version:
    for v in versions(repo):
        if v.version == version:
            return v
    from faultwatch.errors import FaultwatchError

    known = ", ".join(v.version for v in versions(repo)) or "none"
    raise FaultwatchError(f"registry: no version {version} of {ARTIFACT} (registered: {known})")


def register(record: dict[str, Any], repo: Path | str = ".") -> str:
    """Register a new version on HEAD; returns its version string.

    GTO keeps one version per commit: a version names the commit whose dvc.lock pins the data,
    the params and the model, so a new candidate is committed before it is promoted.
    """
    from gto import api

    reg = api.register(
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

    api.assign(
        str(repo),
        ARTIFACT,
        stage,
        version=version,
        message=reason,
        author=AUTHOR[0],
        author_email=AUTHOR[1],
        force=True,
    )
