"""The canary analysis of a fleet bento (issue 23): each changed group judged on its own rows of
a real prediction log, the unchanged ones left alone, and what a group lacking evidence needs."""

from __future__ import annotations

import time

import pytest
from helpers.canary_log import answers, two_colours

from faultwatch.deploy.analysis import DeployParams
from faultwatch.deploy.fleet_analysis import analyse_fleet, needed_requests

PARAMS = DeployParams(min_requests=20, max_error_rate=0.05, max_fault_rate_delta=0.2)


@pytest.fixture
def log(tmp_path):
    with two_colours(tmp_path) as opened:
        yield opened


def test_the_group_that_regresses_fails_and_is_named_the_others_pass_or_need_nothing(log):
    path, blue, green = log
    since = time.time() - 1
    for g in ("pump", "fan", "valve"):
        answers(blue, 120, 0.3, model=g)
    answers(green, 120, 0.3, model="pump")  # changed, as trained: passes with enough answers
    answers(green, 120, 0.95, model="fan")  # changed, flags nearly everything: the regression
    answers(green, 30, 0.3, model="valve")  # unchanged model: no evidence needed
    result = analyse_fleet(
        path, "green", "blue", since, PARAMS, {"pump": 0.3, "fan": 0.3}, ["valve"]
    )
    verdicts = {g.group: g.verdict for g in result.groups}
    assert verdicts == {"pump": "pass", "fan": "fail", "valve": "unchanged"}
    assert result.verdict == "fail" and result.failed == ["fan"]
    assert "fan failed" in result.reason
    summary = result.summary()
    assert "fan: FAIL" in summary and "fault_rate_delta" in summary
    assert "valve: unchanged" in summary


def test_a_changed_group_with_too_little_traffic_is_inconclusive_and_says_what_it_needs(log):
    path, blue, green = log
    since = time.time() - 10
    answers(blue, 200, 0.3, model="pump")
    answers(green, 25, 0.3, model="pump")  # in bounds, but 25 answers in 10 s
    result = analyse_fleet(path, "green", "blue", since, PARAMS, {"pump": 0.3}, [])
    (pump,) = result.groups
    assert (result.verdict, pump.verdict) == ("inconclusive", "inconclusive")
    # 3 / max_error_rate = 60 (the fault rate's +-0.2 around 0.3 needs only 21)
    assert pump.needed.requests == needed_requests(PARAMS, 0.3)[0] == 60
    assert pump.needed.faults == 18  # 60 x 0.3
    assert pump.needed.seen_requests == 25
    assert pump.needed.more_s == pytest.approx((60 - 25) / 2.5, rel=0.1)  # at 2.5 answers/s
    assert "needs 60 requests (18 predicted faults" in pump.line()


def test_what_evidence_the_thresholds_need():
    # the error rate alone: with no error in n requests the 95 % bound is about 3 / n
    assert needed_requests(DeployParams(min_requests=50, max_error_rate=0.01), None) == (300, 0)
    # a rare fault: a fault-rate interval of +-0.02 around 2 % needs ~190 signals, 4 faults...
    n, faults = needed_requests(
        DeployParams(min_requests=10, max_error_rate=0.5, max_fault_rate_delta=0.02), 0.02
    )
    assert (n, faults) == (250, 5)  # ... but n p0 >= 5 asks for 250: five predicted faults
    # nothing changed: nothing to judge, the fleet passes at once
    assert analyse_fleet("/nonexistent.sqlite", "g", "b", 0, PARAMS, {}, ["a"]).verdict == "pass"
