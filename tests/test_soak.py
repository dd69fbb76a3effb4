"""Load held, in 30 seconds: bench/soak.py's soak (faultwatch.deploy.soak) of a real deployment,
HAProxy in front of a bento server, short enough for `make test`.

The capacity is measured (4 s of 16 keep-alive clients in closed loop), then 80 % of it is held,
paced, for 16 s, sampling the live colour's resident memory every 2 s; then 5 s of the same load
alone and 5 s beside 200 slowloris connections to the router. Every request must be answered,
each 200 must have its row in the prediction log and the rows as many as the answers; the
memory's slope and the p99 with slow clients are bounded generously, for a loaded 2-core
machine (the bench measures them over 10 minutes).
"""

from __future__ import annotations

import math

import pytest
from helpers.cli import fw
from helpers.gate_project import bodies, kill_leftover_deployment
from helpers.ports import free_port
from helpers.projects import copy_tree

from faultwatch.deploy import soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PARAMS = soak.SoakParams(
    seconds=16,
    capacity_s=4,
    capacity_warm_s=1,
    interval_s=2,
    warmup_s=4,
    slow_clients=200,
    slow_s=5,
)
# a leak of 1 KiB per request at this rate would be about 30 MiB/min; a fresh server's first
# seconds grow by about 25 MiB/min here (the bench's 10 minutes show what stays)
MAX_SLOPE_MIB_PER_MIN = 100
# the p99 beside the slow clients: at most this factor of the one without, or this many ms more
# (5 s phases on two shared cores: a neighbour's burst moves a p99 by more than the slow clients)
P99_FACTOR, P99_SLACK_MS = 4.0, 250.0


@pytest.fixture
def deployed(tmp_path, deploy_template):
    """The deploy tests' project with v0.0.2 (the detector) live on blue behind the router;
    `deploy down` and a kill of whatever it could not stop on leaving."""
    root = copy_tree(deploy_template[0], tmp_path / "proj")
    try:
        fw(root, "deploy", "up", "v0.0.2", "--port", str(free_port()))
        yield root
    finally:
        fw(root, "deploy", "down", check=False)
        kill_leftover_deployment(root)


def test_a_held_load_loses_nothing_and_slow_clients_starve_no_one(deployed):
    r = soak.run(deployed, bodies(), PARAMS)
    shown = "\n".join(soak.report_lines(r))
    print(shown)  # the figures, with `pytest -rP`
    # the load was held: paced at 80 % of the capacity (a quarter of that is enough here: a
    # neighbour's burst on two cores can take most of the CPU the capacity was measured with)
    assert r["capacity_rps"] > 20, shown
    assert r["hold"]["answered"] >= 0.25 * r["rate_rps"] * PARAMS.seconds, shown
    # nothing failed, and every answer is in the log, once
    assert r["failed"] == 0, shown
    assert r["log"]["answered_without_row"] == 0, shown
    assert r["log"]["logged"] == r["log"]["answered"] > 0, shown
    # the memory was sampled throughout, and did not climb
    m = r["memory"]
    assert len(r["samples"]) >= PARAMS.seconds / PARAMS.interval_s, shown
    assert m["processes"] >= 1 and m["first_mib"] > 10, shown
    assert math.isfinite(m["slope_mib_per_min"]), shown
    assert m["slope_mib_per_min"] < MAX_SLOPE_MIB_PER_MIN, shown
    # the slow clients stayed connected and dribbling all along, and the normal ones were
    # answered as before: none failed, as many answered, the p99 within bounds
    slow = r["slow"]
    sc = slow["slow_clients"]
    assert sc["opened"] >= PARAMS.slow_clients and sc["failed_to_open"] == 0, shown
    assert sc["open_at_end"] >= 0.9 * PARAMS.slow_clients, shown
    assert sc["bytes_sent"] >= PARAMS.slow_clients * PARAMS.slow_s / 2, shown
    assert slow["with"]["failed"] == 0 and slow["without"]["failed"] == 0, shown
    assert slow["with"]["answered"] >= 0.5 * slow["without"]["answered"], shown
    p99, base = slow["with"]["p99_ms"], slow["without"]["p99_ms"]
    assert p99 <= max(P99_FACTOR * base, base + P99_SLACK_MS), shown
