"""The registry's tags as faultwatch reads them: one `git for-each-ref` for every artifact,
the versions with their stages and approval decisions (GTO writes the tags; faultwatch.registry
holds the operations on them)."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faultwatch.errors import FaultwatchError

ARTIFACT = "fault_cnn"
PRODUCTION = "prod"
APPROVED, REJECTED, PENDING = "approved", "rejected", "pending"
# the approval decisions on a version, the latest wins: the gate's (`approved` or `rejected`;
# with promote.require_approval a version the gate passed is `pending`) and a person's
# (`faultwatch approve` / `reject`, who and why in the tag's message)
DECISIONS = (APPROVED, REJECTED, PENDING)
GATE = "the promotion gate"
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
    decision: dict[str, Any] = field(default_factory=dict)  # the approval's who, when, why

    @property
    def approval(self) -> str:
        if REJECTED in self.stages:
            return REJECTED
        return APPROVED if APPROVED in self.stages else PENDING

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


def assignment_number(tag: Any) -> int:
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
    return {name: versions_of(tags) for name, tags in sorted(by_artifact.items())}


def _registered(tags: list[Tag]) -> dict[str, Tag]:
    """version -> its registration, for the versions whose last registration event is one
    (not a deregistration)."""
    last: dict[str, Tag] = {}
    for t in sorted((t for t in tags if t.version), key=lambda t: (t.created, t.number)):
        last[t.version] = t
    return {v: t for v, t in last.items() if not t.cancel}


def _active_stages(tags: list[Tag], at_commit: dict[str, str]) -> dict[str, dict[str, Tag]]:
    """version -> stage -> its last assignment, for the stages whose last event on that
    version is an assignment (GTO's `is_active`). An assignment names the version registered on
    its commit (one version per commit)."""
    events: dict[tuple[str, str], list[Tag]] = {}
    for t in tags:
        if t.stage and t.commit in at_commit:
            events.setdefault((at_commit[t.commit], t.stage), []).append(t)
    latest: dict[str, dict[str, Tag]] = {}
    for (version, stage), evs in events.items():
        evs.sort(key=lambda t: (t.created, t.number))
        if not evs[-1].cancel:
            latest.setdefault(version, {})[stage] = max(
                (t for t in evs if not t.cancel), key=lambda t: t.number
            )
    return latest


def versions_of(tags: list[Tag]) -> list[Version]:
    registered = _registered(tags)
    at_commit = {t.commit: v for v, t in registered.items()}
    latest = _active_stages(tags, at_commit)
    prod_at = {ver: st[PRODUCTION].number for ver, st in latest.items() if PRODUCTION in st}
    current_prod = max(prod_at, key=prod_at.get) if prod_at else None
    out = []
    for version, reg in registered.items():
        assigned = latest.get(version, {})
        stages = set(assigned) - {PRODUCTION, *DECISIONS, *OUTCOMES}
        decisions = {k: assigned[k] for k in DECISIONS if k in assigned}
        decision = max(decisions.values(), key=lambda t: t.number) if decisions else None
        if decision is not None:
            stages.add(str(decision.stage))
        outcomes = {k: assigned[k].number for k in OUTCOMES if k in assigned}
        prod_n = assigned[PRODUCTION].number if PRODUCTION in assigned else -1
        if outcomes and max(outcomes.values()) > prod_n:
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
                decision=_decision(decision),
            )
        )
    return sorted(out, key=lambda v: tuple(int(x) for x in v.version.lstrip("v").split(".")))


def _decision(tag: Tag | None) -> dict[str, Any]:
    """The approval decision a tag records: who (`by`: a person, or `the gate`), when, why."""
    if tag is None:
        return {}
    rec = _record(tag.message)
    at = datetime.datetime.fromtimestamp(tag.created, tz=datetime.UTC).isoformat()
    if "by" not in rec:  # the gate's own decision: its reasons are the message
        rec = {"by": GATE, "reason": rec.get("message", tag.message)}
    return {"decision": tag.stage, "at": at, **rec}


class RegistryError(FaultwatchError):
    """The registry (git tags) cannot be read or written."""
