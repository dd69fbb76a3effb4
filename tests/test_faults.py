"""Faults injected into a real deployment on loopback (HAProxy and two bento servers), each
with keep-alive clients running and every request's outcome counted: a serving process killed
mid-batch, the deploy CLI killed between its steps, the router killed.

The tests run in order on one deployment (module scope), v0.0.1 on blue and v0.0.2 on green
(tests/helpers/gate_project.py); each says where it leaves the traffic. The fixture stops every
process it started, also on failure; the tests kill only the processes of this deployment, by
the pids its state records or its tag.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from helpers.cli import fw, project_env, run
from helpers.gate_project import LOAD_RATE, bodies, kill_leftover_deployment
from helpers.paths import VENV_BIN
from helpers.ports import free_port
from helpers.projects import copy_tree

from faultwatch.deploy import router as rt
from faultwatch.deploy.load import Load

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONCURRENCY = 16


def status(root: Path) -> dict:
    return json.loads(fw(root, "deploy", "status", "--json").stdout)


def outcome(load: Load) -> str:
    """The count of every request's outcome, for the assertion messages and the note."""
    by: dict[str, int] = {}
    for a in load.answers:
        key = str(a.status) if a.status else (a.error or "error").split(":")[0]
        by[key] = by.get(key, 0) + 1
    return f"{len(load.answers)} sent: {by}"


def live_rows(root: Path) -> dict[str, int]:
    """Rows of live predictions in the log, by request id."""
    with sqlite3.connect(root / "reports/serving/predictions.sqlite") as db:
        rows = db.execute(
            "SELECT request_id, count(*) FROM predictions WHERE role = 'live' GROUP BY request_id"
        ).fetchall()
    return dict(rows)


def check_logged(root: Path, load: Load) -> None:
    """Every answered request has exactly one live row (a retried one too), none more."""
    rows = live_rows(root)
    answered = [a.request_id for a in load.answers if a.status == 200]
    assert all(answered), "an answer without its X-Request-ID"
    missing = [r for r in answered if r not in rows]
    twice = {r: rows[r] for r in answered if rows.get(r, 0) > 1}
    assert not missing and not twice, (len(missing), twice)


@pytest.fixture(scope="module")
def faulted(tmp_path_factory, deploy_template):
    """v0.0.1 up on blue, v0.0.2 staged on green; yields (root, router url, {registry version:
    model version}); `deploy down` and a kill of every recorded pid on leaving."""
    root = copy_tree(deploy_template[0], tmp_path_factory.mktemp("faults") / "proj")
    port = free_port()
    try:
        fw(root, "deploy", "up", "v0.0.1", "--port", str(port))
        fw(root, "deploy", "stage", "v0.0.2")
        yield root, f"http://127.0.0.1:{port}", dict(deploy_template[1])
    finally:
        fw(root, "deploy", "down", check=False)
        kill_leftover_deployment(root)


def wait_for(load: Load, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while load.count() < n and time.monotonic() < deadline and not load.done():
        time.sleep(0.05)
    assert load.count() >= n, outcome(load)


# ---------------------------------------------------------------------- the deploy CLI killed
def killed_at(root: Path, point: str, *verb: str) -> bool:
    """`faultwatch deploy VERB` killed with SIGKILL at `point` (faultwatch.deploy.failpoints);
    False when it finished first (0)."""
    r = fw(root, "deploy", *verb, check=False, FAULTWATCH_FAILPOINT=point)
    assert r.returncode in (0, -signal.SIGKILL), r.stdout + r.stderr
    return r.returncode != 0


def then_set_right(root: Path, *verb: str) -> list[str]:
    """After a kill: `deploy status` names the differences (the returned list); VERB run again
    says so, sets the router to the state, and does its work (what is left is checked by the
    next kill's status and at the end)."""
    apart = status(root)["router"]["differences"]
    r = fw(root, "deploy", *verb)
    assert ("the router and the state disagree" in r.stderr) == bool(apart), (apart, r.stderr)
    return apart


def test_a_deploy_command_killed_at_any_step_is_set_right_by_the_next(faulted):
    """`switch`, `rollback` and `canary --steps` killed with SIGKILL after each of their router
    changes (before the state is saved), under keep-alive load: the next command finds the
    router and the state apart, says so and sets the router to the state; no request fails."""
    root, url, _ = faulted
    load = Load(url, bodies(), concurrency=8, total=None, rate=LOAD_RATE).start()
    kills, apart = [], 0
    try:
        for k in range(1, 10):
            done = True
            for verb in (("switch",), ("rollback",)):  # blue live -> green live -> blue live
                if killed_at(root, f"router:{k}", *verb):
                    kills.append(f"{verb[0]} at router:{k}")
                    apart += bool(then_set_right(root, *verb))
                    done = False
                else:
                    assert status(root)["live"] == ("green" if verb == ("switch",) else "blue")
            if done:
                break
        steps = ("canary", "--steps", "50,100", "--interval", "2")
        for k in (2,):  # inside the first step: both colours weighed, nothing saved
            assert killed_at(root, f"router:{k}", *steps)
            kills.append(f"canary --steps at router:{k}")
            said = fw(root, "deploy", "status").stdout  # for a person too
            assert "the router and the state DISAGREE: " in said, said
            assert "green: weight 50 % on the router, 0 % in the state" in said, said
            apart += bool(then_set_right(root, *steps))
            assert status(root)["live"] == "green"
            fw(root, "deploy", "rollback")
        # killed once the state is saved, before the registry follows the traffic: every view
        # names the disagreement, and `deploy up` of what serves records it
        assert killed_at(root, "saved:1", "switch")
        kills.append("switch at saved:1")
        s = status(root)
        assert s["live"] == "green" and s["registry"]["problem"], s
        assert s["router"]["differences"] == [], s  # what the last rerun left
        fw(root, "deploy", "up", s["colours"]["green"]["version"])
        assert status(root)["registry"]["problem"] is None
        fw(root, "deploy", "rollback")
    finally:
        load.stop()
        load.join(60)
    print(f"deploy CLI killed {len(kills)} times ({', '.join(kills)}); {outcome(load)}")
    assert len(kills) >= 6 and apart >= 5, kills
    assert load.answers and not load.failed(), outcome(load)
    s = status(root)
    assert s["live"] == "blue" and s["weights"] == {"blue": 100, "green": 0}, s


# ---------------------------------------------------------------------- the retrain loop killed
ROLLOUT = """
import sys
from pathlib import Path
from faultwatch.retrain import ROLLOUT_STEPS, run_steps
from faultwatch.retrain.loop import Loop, Run
run = Run(Loop(Path.cwd(), print), None, steps=[50, 100], interval=2, version=sys.argv[1])
sys.exit(run_steps(run, ROLLOUT_STEPS))
"""


def rollout(root: Path, version: str, **env: str):
    """The retrain loop's rollout steps (stage, canary, switch) in a process of their own, as
    `faultwatch retrain` runs them after its gate (tests/test_retrain.py runs the whole loop)."""
    return run([str(VENV_BIN / "python"), "-c", ROLLOUT, version], root, check=False,
               **project_env(root), **env)  # fmt: skip


def test_the_retrains_rollout_killed_at_its_steps_never_leaves_a_half_switch(faulted):
    """`faultwatch retrain`'s rollout killed inside its canary (after the first step's router
    changes) and before its switch: each time the traffic is on the state's
    colours, and running it again finishes with the new version live; no request fails."""
    root, url, versions = faulted
    load = Load(url, bodies(), concurrency=8, total=None, rate=LOAD_RATE).start()
    try:
        for point in ("router:2", "step_switch"):
            r = rollout(root, "v0.0.2", FAULTWATCH_FAILPOINT=point)
            assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
            s = status(root)
            assert s["live"] == "blue" or s["weights"] == {"blue": 0, "green": 100}, s
            again = rollout(root, "v0.0.2")
            assert again.returncode == 0, again.stdout + again.stderr
            s = status(root)
            assert s["live"] == "green" and s["weights"] == {"blue": 0, "green": 100}, s
            assert s["router"]["differences"] == [], s
            fw(root, "deploy", "rollback")
    finally:
        load.stop()
        load.join(60)
    print(f"retrain rollout killed twice: {outcome(load)}")
    assert load.answers and not load.failed(), outcome(load)
    assert status(root)["live"] == "blue"


# ---------------------------------------------------------------------- the router killed
def test_the_router_killed_is_said_and_one_command_brings_it_back_as_it_was(faulted):
    """HAProxy killed (SIGKILL): `deploy status` says the router is down; `deploy up` starts it
    again with the state's weights, the colours' processes untouched."""
    root, url, _ = faulted
    before = status(root)
    pids = {c: rt.tagged_pids(v["tag"]) for c, v in before["colours"].items()}
    load = Load(url, bodies(), concurrency=4, total=None, rate=200).start()
    try:
        wait_for(load, 50)
        os.kill(before["router"]["pid"], signal.SIGKILL)
        down_at = time.time()
        time.sleep(0.5)
        s = status(root)
        assert s["router"]["up"] is False and s["answering"] == [], s
        said = fw(root, "deploy", "status").stdout
        assert "the router is DOWN" in said and "`faultwatch deploy up`" in said, said
        asked_at = time.time()
        r = fw(root, "deploy", "up")
        back_at = time.time()
        assert "the router was down: started again" in r.stdout, r.stdout
        while time.time() < back_at + 3 and not load.done():
            time.sleep(0.1)
    finally:
        load.stop()
        load.join(60)
    after = status(root)
    assert after["router"]["up"] and after["router"]["pid"] != before["router"]["pid"]
    assert after["weights"] == before["weights"] and after["answering"] == ["blue"], after
    assert after["router"]["differences"] == []
    assert {c: rt.tagged_pids(v["tag"]) for c, v in after["colours"].items()} == pids
    during = [a for a in load.answers if down_at <= a.sent <= back_at]
    late = [a for a in load.answers if a.sent > back_at]
    print(
        f"router killed: {outcome(load)}; {len(during)} sent while it was down; `deploy up` "
        f"took {back_at - asked_at:.1f} s, {back_at - down_at:.1f} s after the kill"
    )
    assert late and all(a.status == 200 for a in late), outcome(load)


# ---------------------------------------------------------------------- a serving process dies
def test_the_live_colour_killed_mid_batch_loses_no_request_and_status_says_so(faulted):
    """SIGKILL to every process of the live colour (supervisor and workers, a crash) under 16
    keep-alive clients: the requests in flight are retried on the other colour, each logged
    once; `deploy status` says the live colour is down and which colour answers."""
    root, url, versions = faulted
    s = status(root)
    assert s["live"] == "blue" and s["colours"]["green"]["running"], s
    load = Load(url, bodies(), concurrency=CONCURRENCY, total=1200).start()
    try:
        wait_for(load, 300)
        killed_at = time.time()
        for pid in rt.tagged_pids(s["colours"]["blue"]["tag"]):
            os.kill(pid, signal.SIGKILL)
    finally:
        load.join(120)
    near = [a for a in load.answers if killed_at - 0.5 <= a.sent <= killed_at + 2]
    print(
        f"live colour killed under load: {outcome(load)}; {len(near)} sent from 0.5 s before "
        f"the kill to 2 s after, the slowest answered in {max(a.ms for a in near):.0f} ms"
    )
    assert len(load.answers) == 1200
    # an answer whose status line had left the dying server when it died is cut (the client
    # reads a 200 and then the end): the router cannot retry what it has begun to forward
    # (HAProxy forwards a response as it comes), nor can any proxy. The window is the moment
    # between the server's two writes of one answer; every other request must be answered.
    cut = [a for a in load.failed() if (a.error or "").startswith("IncompleteRead")]
    assert len(cut) <= 2 and len(load.failed()) == len(cut), outcome(load)
    after = [a for a in load.answers if a.sent > killed_at + 0.5]
    assert after and {a.model_version for a in after} == {versions["v0.0.2"]}
    check_logged(root, load)
    s = status(root)
    assert s["colours"]["blue"]["running"] is False
    assert s["answering"] == ["green"], s
    text = fw(root, "deploy", "status").stdout
    assert "blue (live) is down" in text and "green answers" in text, text
