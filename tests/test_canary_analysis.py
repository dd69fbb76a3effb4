"""The canary analysis of one model (faultwatch.deploy.analysis.analyse) on rows of a real
prediction log: the evidence it asks for and the colour it compares with."""

from __future__ import annotations

import time

import pytest
from helpers.canary_log import answers, two_colours

from faultwatch.deploy.analysis import DeployParams, analyse

PARAMS = DeployParams(
    min_requests=20, max_error_rate=0.05, max_fault_rate_delta=0.2, max_p99_ratio=1.5,
    p99_slack_ms=20,
)  # fmt: skip


@pytest.fixture
def log(tmp_path):
    with two_colours(tmp_path) as opened:
        yield opened


def test_fewer_answers_than_min_requests_are_inconclusive_however_good_they_look(log):
    """Some traffic, all in bounds, but below deploy.min_requests: no evidence, no promotion
    (an analysis that passes on 12 answers is the Flagger complaint)."""
    path, blue, green = log
    since = time.time() - 1
    answers(blue, 200, latency_ms=5)
    answers(green, 12, latency_ms=5)  # 0 < 12 < 20
    a = analyse(path, "green", "blue", since, PARAMS, reference_fault_rate=0.3)
    assert a.verdict == "inconclusive" and a.checks == [], a
    assert "12 answered requests on green" in a.reason
    assert "fewer than deploy.min_requests=20" in a.reason
    # with enough of the same answers, the same window passes
    answers(green, 20, latency_ms=5, first=12)
    assert analyse(path, "green", "blue", since, PARAMS, 0.3).verdict == "pass"


def test_greens_p99_is_judged_against_blues_over_the_same_window(log):
    """Green answers in 100 ms where blue answers in 5: over max(5 x 1.5, 5 + 20) = 25 ms, a
    failure naming blue's figure; green as fast as blue passes."""
    path, blue, green = log
    since = time.time() - 1
    answers(blue, 100, latency_ms=5)
    answers(green, 100, latency_ms=100)
    a = analyse(path, "green", "blue", since, PARAMS, 0.3)
    p99 = next(c for c in a.checks if c.name == "p99_latency_ms")
    assert (a.verdict, p99.passed) == ("fail", False), a
    assert p99.value == pytest.approx(100) and p99.threshold == pytest.approx(25)
    assert p99.detail == "blue: 5.0 ms" and "p99_latency_ms out of bounds" in a.reason
    # the other way round: blue, the slow one, judged against green is in bounds
    b = analyse(path, "blue", "green", since, PARAMS, 0.3)
    assert next(c for c in b.checks if c.name == "p99_latency_ms").passed
