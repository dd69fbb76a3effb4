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

import datetime
import json
import re
import subprocess
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


# GTO's tag names, the part of them this registry writes: `artifact@vX.Y.Z` (a registration;
# `!`: deregistered) and `artifact#stage#N` (an assignment, numbered across the artifact; `!`:
# unassigned). GTO writes the tags; reading them is one `git for-each-ref` (GTO's own reader
# takes 1.3 s to import and over a second per artifact with hundreds of tags).
_NAME = r"[a-zA-Z0-9](?:[a-zA-Z0-9-/_]*[a-zA-Z0-9])?"
_TAG = re.compile(
    rf"^(?P<artifact>{_NAME})(?:@(?P<version>v\d+\.\d+\.\d+)|#(?P<stage>{_NAME}))"
    r"(?P<cancel>!?)(?:#(?P<number>\d+))?$"
)
_FORMAT = (
    "%(refname:strip=2)%00%(objecttype)%00%(*objectname)%00%(taggerdate:unix)%00%(contents)%00%00"
)


@dataclass(frozen=True)
class Tag:
    """One registry tag: a registration (`version`) or an assignment (`stage`) of `artifact`."""

    artifact: str
    version: str | None
    stage: str | None
    cancel: bool  # a deregistration or an unassignment
    number: int  # an assignment's number (-1 for a registration)
    commit: str
    created: int  # unix seconds
    message: str


def read_tags(repo: Path | str = ".") -> list[Tag]:
    """Every registry tag of the repository (annotated tags in GTO's naming), in one git call."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "for-each-ref", "refs/tags", f"--format={_FORMAT}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RegistryError(
            f"{repo}: not a git repository: the model registry lives in git tags "
            "(`git init` and commit the project first)"
        )
    out = []
    for record in proc.stdout.split("\0\0\n"):
        fields = record.split("\0")
        if len(fields) != 5 or fields[1] != "tag":  # GTO's tags are annotated
            continue
        name, _, commit, created, message = fields
        m = _TAG.match(name)
        if m is None or not commit:
            continue
        out.append(
            Tag(
                artifact=m["artifact"],
                version=m["version"],
                stage=m["stage"],
                cancel=m["cancel"] == "!",
                number=int(m["number"]) if m["number"] and m["stage"] else -1,
                commit=commit,
                created=int(created or 0),
                message=message.rstrip("\n"),
            )
        )
    return out


def artifacts(repo: Path | str = ".") -> dict[str, list[Version]]:
    """Every artifact of the registry with its versions (as `versions` gives them), one read."""
    by_artifact: dict[str, list[Tag]] = {}
    for t in read_tags(repo):
        by_artifact.setdefault(t.artifact, []).append(t)
    return {name: _versions_of(tags) for name, tags in sorted(by_artifact.items())}


def versions(repo: Path | str = ".", artifact: str = ARTIFACT) -> list[Version]:
    """Every registered version, oldest first, with its current stages: `prod` on the version
    that was assigned it last (one production at a time); on each version the later of its
    `approved` / `rejected` decisions (each version keeps its own), and the later of its
    `canary-aborted` / `rolled-back` outcomes when it came after the version's last `prod`."""
    return _versions_of([t for t in read_tags(repo) if t.artifact == artifact])


def _registered(tags: list[Tag]) -> dict[str, Tag]:
    """version -> its registration, for the versions whose last registration event is one
    (not a deregistration)."""
    last: dict[str, Tag] = {}
    for t in sorted((t for t in tags if t.version), key=lambda t: (t.created, t.number)):
        last[t.version] = t
    return {v: t for v, t in last.items() if not t.cancel}


def _active_stages(tags: list[Tag], at_commit: dict[str, str]) -> dict[str, dict[str, int]]:
    """version -> stage -> the number of its last assignment, for the stages whose last event
    on that version is an assignment (GTO's `is_active`). An assignment names the version
    registered on its commit (one version per commit)."""
    events: dict[tuple[str, str], list[Tag]] = {}
    for t in tags:
        if t.stage and t.commit in at_commit:
            events.setdefault((at_commit[t.commit], t.stage), []).append(t)
    latest: dict[str, dict[str, int]] = {}
    for (version, stage), evs in events.items():
        evs.sort(key=lambda t: (t.created, t.number))
        if not evs[-1].cancel:
            n = max(t.number for t in evs if not t.cancel)
            latest.setdefault(version, {})[stage] = n
    return latest


def _versions_of(tags: list[Tag]) -> list[Version]:
    registered = _registered(tags)
    at_commit = {t.commit: v for v, t in registered.items()}
    latest = _active_stages(tags, at_commit)
    prod_at = {ver: st[PRODUCTION] for ver, st in latest.items() if PRODUCTION in st}
    current_prod = max(prod_at, key=prod_at.get) if prod_at else None
    out = []
    for version, reg in registered.items():
        assigned = latest.get(version, {})
        stages = set(assigned) - {PRODUCTION, APPROVED, REJECTED, *OUTCOMES}
        decisions = {k: assigned[k] for k in (APPROVED, REJECTED) if k in assigned}
        if decisions:
            stages.add(max(decisions, key=decisions.get))
        outcomes = {k: assigned[k] for k in OUTCOMES if k in assigned}
        if outcomes and max(outcomes.values()) > assigned.get(PRODUCTION, -1):
            stages.add(max(outcomes, key=outcomes.get))
        if version == current_prod:
            stages.add(PRODUCTION)
        created = datetime.datetime.fromtimestamp(reg.created, tz=datetime.UTC)
        out.append(
            Version(
                version=version,
                commit=reg.commit,
                created_at=str(created),
                record=_record(reg.message),
                stages=tuple(sorted(stages)),
            )
        )
    return sorted(out, key=lambda v: tuple(int(x) for x in v.version.lstrip("v").split(".")))


class RegistryError(FaultwatchError):
    """The registry (git tags) cannot be read or written."""


def _has_artifact(repo: Path | str) -> bool:
    """Whether ARTIFACT has a registered version (a RegistryError outside a git repository)."""
    return any(t.artifact == ARTIFACT and t.version for t in read_tags(repo))


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
