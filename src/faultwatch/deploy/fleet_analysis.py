"""The analysis gate for a fleet bento (issue 23): each model group judged on its own.

A fleet colour serves every group of the project. Between the live colour and the staged one,
only the groups whose model changed (another store entry) need evidence; the others are the
same model on both colours. Each changed group is judged on its own rows of the prediction log
(the `model` column; its 5xx refusals in `rejected` carry the group too), with the single
model's checks (faultwatch.deploy.analysis): error rate, p99 against the same group on the live
colour, fault rate against that group's training fault rate.

Evidence. A rare-fault model on a canary share sees few requests and fewer faults, and a check
on a handful of them says nothing. For each changed group the analysis states what the
configured thresholds need, so that a person can plan the canary:
- requests: `deploy.min_requests`; at least 3 / `max_error_rate` (with no error in n requests,
  the 95 % upper bound of the error rate is about 3 / n: the "rule of three"); and the n at which
  the fault rate's 95 % interval around the training rate p0 is no wider than
  `max_fault_rate_delta` (1.96² p0 (1 - p0) / delta², with n p0 and n (1 - p0) at least 5);
- predicted faults: those n times p0, what the model would flag at its training rate;
- time: what is still missing at the rate the group's requests reached this colour.
A changed group passes only with that many answers and every check in bounds; it fails as soon
as a check is out of bounds over at least `min_requests` answers (failing needs less evidence
than passing); otherwise it is *inconclusive*, which never promotes. The fleet passes when every
changed group passed; it fails naming each group that failed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faultwatch.deploy.analysis import Analysis, DeployParams, Verdict, analyse, window_rows

Z95 = 1.96


@dataclass(frozen=True)
class Needed:
    """What a changed group needs to be judged at the configured thresholds."""

    requests: int
    faults: int  # predicted faults expected among them at the training fault rate
    seen_requests: int
    seen_faults: int
    rate_per_s: float  # the group's answered requests per second on this colour
    more_s: float | None  # seconds of such traffic still missing; None: none came

    def line(self) -> str:
        more = (
            "enough"
            if self.seen_requests >= self.requests
            else "never at no traffic"
            if self.more_s is None
            else f"{self.more_s:.0f} s more at {self.rate_per_s:.2f} requests/s"
        )
        return (
            f"needs {self.requests} requests ({self.faults} predicted faults at the training "
            f"rate); seen {self.seen_requests} ({self.seen_faults} faults): {more}"
        )


def needed_requests(p: DeployParams, fault_rate: float | None) -> tuple[int, int]:
    """(requests, predicted faults) a group needs (see the module docstring)."""
    n = p.min_requests
    if p.max_error_rate > 0:
        n = max(n, math.ceil(3 / p.max_error_rate))
    faults = 0
    if fault_rate is not None and 0 < fault_rate < 1 and p.max_fault_rate_delta > 0:
        p0, d = fault_rate, p.max_fault_rate_delta
        n_rate = math.ceil(Z95**2 * p0 * (1 - p0) / d**2)
        n = max(n, n_rate, math.ceil(5 / p0), math.ceil(5 / (1 - p0)))
        faults = math.ceil(n * p0)
    return n, faults


@dataclass
class GroupVerdict:
    group: str
    changed: bool
    verdict: Verdict | str  # pass, fail, inconclusive; "unchanged" for a group not changed
    analysis: Analysis | None = None
    needed: Needed | None = None

    def line(self) -> str:
        if not self.changed:
            return f"  {self.group}: unchanged (the same model on both colours): no evidence needed"
        assert self.analysis is not None and self.needed is not None
        body = self.analysis.summary().splitlines()
        head = f"  {self.group}: {self.verdict.upper()} ({self.analysis.reason})"
        return "\n".join([head, *(f"  {ln}" for ln in body[1:]), f"    {self.needed.line()}"])


@dataclass
class FleetAnalysis:
    """Duck-types faultwatch.deploy.analysis.Analysis where the canary reads it."""

    verdict: Verdict
    colour: str
    against: str
    since: float
    until: float
    requests: int
    groups: list[GroupVerdict] = field(default_factory=list)
    reason: str = ""
    checks: list = field(default_factory=list)  # per group, in `groups`

    @property
    def failed(self) -> list[str]:
        return [g.group for g in self.groups if g.verdict == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"analysis of {self.colour}: {self.verdict.upper()} ({self.reason})"]
        return "\n".join(lines + [g.line() for g in self.groups])


def analyse_fleet(
    log: Path | str,
    colour: str,
    against: str,
    since: float,
    params: DeployParams,
    changed: dict[str, float | None],
    unchanged: list[str],
    router_errors: int = 0,
    until: float | None = None,
) -> FleetAnalysis:
    """The verdict on a fleet colour over [since, until]: `changed` maps each changed group to
    its training fault rate (see the module docstring). Router errors (a broken response the
    router saw) name no group: over `min_requests` they are judged on the colour as a whole."""
    until = time.time() if until is None else until
    out = FleetAnalysis("inconclusive", colour, against, since, until, 0)
    total = 0
    for group, reference in changed.items():
        mine = window_rows(log, colour, since, until, model=group)
        total += mine["answered"] + mine["errors"]
        n, faults = needed_requests(params, reference)
        rate = mine["answered"] / max(until - since, 1e-9)
        missing = max(0, n - mine["answered"])
        more = None if rate == 0 else missing / rate
        need = Needed(n, faults, mine["answered"], mine["faults"], rate, more)
        a = analyse(log, colour, against, since, params, reference, until=until, model=group)
        verdict: str = a.verdict
        if verdict == "pass" and mine["answered"] < n:
            verdict = "inconclusive"
            a.reason = f"in bounds so far, but {mine['answered']} of the {n} answers it needs"
        out.groups.append(GroupVerdict(group, True, verdict, a, need))
    out.groups += [GroupVerdict(g, False, "unchanged") for g in unchanged]
    out.requests = total
    failed = out.failed
    router_bad = total >= params.min_requests and router_errors > params.max_error_rate * total
    if failed or router_bad:
        out.verdict = "fail"
        what = [f"{g} failed" for g in failed]
        if router_bad:
            what.append(f"{router_errors} router errors in {total} requests")
        out.reason = "; ".join(what)
    elif not changed:
        out.verdict, out.reason = "pass", "no group changed: the same models as the live colour"
    elif all(g.verdict == "pass" for g in out.groups if g.changed):
        out.verdict = "pass"
        out.reason = f"{len(changed)} changed group(s) in bounds with enough evidence"
    else:
        waiting = [g.group for g in out.groups if g.verdict == "inconclusive"]
        out.reason = f"not enough evidence yet for {', '.join(waiting)}: no promotion"
    out.checks = [c for g in out.groups if g.analysis for c in g.analysis.checks]
    return out
