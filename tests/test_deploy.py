"""`faultwatch deploy` with real processes on loopback: HAProxy and two bento servers.

One project (tests/helpers/gate_project.py) holds three registered versions of crafted models whose
behaviour is known: v0.0.1 flags every signal (approved, the first production), v0.0.2 detects
the faults (approved, better), v0.0.3 flags every signal again (rejected by the gate: not
better). The tests run in order on one deployment (module scope) and each states where it
leaves the traffic; the fixture stops every process it started, also on failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.cli import fw, project_env, run
from helpers.gate_project import LOAD_RATE, bodies, kill_leftover_deployment, make_project
from helpers.paths import VENV_BIN
from helpers.ports import free_port
from helpers.projects import copy_tree

from faultwatch.deploy import router as rt
from faultwatch.deploy.load import Load

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONCURRENCY = 16


def status(root: Path) -> dict:
    return json.loads(fw(root, "deploy", "status", "--json").stdout)


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, Any]:
    req = urllib.request.Request(
        f"{url}/predict", data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read()), r.headers  # case-insensitive


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, deploy_template):
    """The project with three registered versions, `deploy up v0.0.1` done; yields
    (root, router url, {registry version: model version}); `deploy down` and a kill of every
    recorded pid on leaving."""
    root = copy_tree(deploy_template[0], tmp_path_factory.mktemp("deploy") / "proj")
    versions = dict(deploy_template[1])
    shown = fw(root, "registry", "list").stdout
    assert "v0.0.3" in shown and "rejected" in shown, shown
    port = free_port()
    try:
        up = fw(root, "deploy", "up", "v0.0.1", "--port", str(port))
        # progress on stderr; stdout ends with what was done, where, and what to run next
        assert "deploy up: v0.0.1 as blue" in up.stderr, up.stderr
        assert up.stdout.count("smoke test passed") == 1, up.stdout  # said once, not twice
        assert up.stdout.splitlines()[-1] == (
            "done: v0.0.1 live on blue (router log .faultwatch/deploy/haproxy.log) in the "
            f"router at http://127.0.0.1:{port}; next: faultwatch deploy stage VERSION (a new "
            "version as green)"
        ), up.stdout
        yield root, f"http://127.0.0.1:{port}", versions
    finally:
        fw(root, "deploy", "down", check=False)
        kill_leftover_deployment(root)


def registry_rows(root: Path) -> dict[str, list[str]]:
    """`faultwatch registry list`: version -> its row's fields (version, stage, approval, ...)."""
    out = fw(root, "registry", "list").stdout.splitlines()[1:]
    return {line.split()[0]: line.split() for line in out if line.startswith("v")}


def entry_dir(root: Path, model_version: str) -> Path:
    return root / ".bentoml/models/fault_cnn" / model_version


# ---------------------------------------------------------------------- up
def test_up_puts_blue_behind_the_router_and_is_idempotent(deployed):
    root, url, versions = deployed
    code, answer, headers = post(url, bodies()[0])
    assert code == 200 and answer["model_version"] == versions["v0.0.1"]
    assert headers.get("X-Request-ID"), headers  # the router assigns one
    code, answer, headers = post(url, bodies()[0], {"X-Request-ID": "client-chosen-1"})
    assert headers["X-Request-ID"] == "client-chosen-1"
    s = status(root)
    assert s["live"] == "blue" and s["weights"] == {"blue": 100, "green": 0}
    assert s["colours"]["blue"]["smoke"]["passed"] is True
    again = fw(root, "deploy", "up", "v0.0.1")
    assert "already up" in again.stdout
    assert status(root)["colours"]["blue"]["pid"] == s["colours"]["blue"]["pid"]
    # the request id the router assigned is the one the prediction log holds
    with sqlite3.connect(root / "reports/serving/predictions.sqlite") as conn:
        logged = {r[0] for r in conn.execute("SELECT request_id FROM predictions")}
    assert "client-chosen-1" in logged and headers["X-Request-ID"] in logged


def test_another_version_while_up_is_refused_with_the_way_forward(deployed):
    root, _, _ = deployed
    r = fw(root, "deploy", "up", "v0.0.2", check=False)
    assert r.returncode == 1 and "deploy stage v0.0.2" in r.stderr


# ---------------------------------------------------------------------- stage and the smoke test


def test_a_green_failing_its_smoke_test_is_refused_and_blue_keeps_the_traffic(deployed):
    root, url, versions = deployed
    golden = entry_dir(root, versions["v0.0.3"]) / "golden.json"
    kept = golden.read_text()
    g = json.loads(kept)
    g["probabilities"] = [min(1.0, p + 0.25) if p < 0.5 else p - 0.25 for p in g["probabilities"]]
    golden.write_text(json.dumps(g))  # as if the served code no longer computed what was recorded
    try:
        r = fw(root, "deploy", "stage", "v0.0.3", check=False)
    finally:
        golden.write_text(kept)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "smoke test" in r.stdout and "blue keeps all the traffic" in r.stdout
    assert "v0.0.3 is 'rejected'" in r.stdout  # staged, and said so
    s = status(root)
    assert s["colours"]["green"]["smoke"]["passed"] is False
    assert s["colours"]["green"]["running"] is False and s["weights"]["green"] == 0
    answers = [post(url, b)[1]["model_version"] for b in bodies()[:30]]
    assert set(answers) == {versions["v0.0.1"]}
    for cmd in (["switch"], ["canary", "10"], ["shadow", "on"]):
        r = fw(root, "deploy", *cmd, check=False)
        assert r.returncode == 1 and "smoke test" in r.stderr + r.stdout, (cmd, r.stderr)
    assert status(root)["weights"] == {"blue": 100, "green": 0}


def test_stage_then_canary_10_gives_green_a_tenth(deployed):
    root, url, versions = deployed
    staged = fw(root, "deploy", "stage", "v0.0.2").stdout.splitlines()[-1]
    assert staged.count("smoke test passed") == 1, staged
    assert staged.startswith("done: v0.0.2 staged on green (port ") and staged.endswith(
        f"no traffic yet in the router at {url}; next: faultwatch deploy canary --steps "
        "(or: deploy shadow on, deploy switch)"
    ), staged
    s = status(root)
    assert s["colours"]["green"]["smoke"]["passed"] is True and s["weights"]["green"] == 0
    assert "already staged" in fw(root, "deploy", "stage", "v0.0.2").stdout
    canary = fw(root, "deploy", "canary", "10").stdout.splitlines()[-1]
    assert canary == (
        f"done: canary: green (v0.0.2) takes 10 %, blue 90 % in the router at {url}; "
        "next: faultwatch deploy analyse (then: deploy switch, or deploy rollback)"
    )
    load = Load(url, bodies(), concurrency=8, total=1000).start().join(120)
    assert not load.failed()
    share = sum(a.model_version == versions["v0.0.2"] for a in load.answers) / len(load.answers)
    print(f"canary 10: green answered {share:.1%} of {len(load.answers)}")
    assert abs(share - 0.10) <= 0.02  # HAProxy's weighted round robin: close to exact


# ---------------------------------------------------------------------- moving traffic under load
def _wait_for(load: Load, n: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while load.count() < n and not load.done():
        assert time.monotonic() < deadline, "the load stalled"
        time.sleep(0.02)


def _warm(load: Load) -> None:
    """Eight seconds of the paced load: the canary's start measures the live traffic of the
    last 10 s, and a load just begun would look too thin for its first step."""
    _wait_for(load, int(LOAD_RATE * 8))


def test_no_request_fails_across_a_canary_change_a_switch_and_a_rollback(deployed):
    root, url, versions = deployed
    blue, green = versions["v0.0.1"], versions["v0.0.2"]
    load = Load(
        url, bodies(), concurrency=CONCURRENCY, total=None, duration_s=240, rate=LOAD_RATE
    ).start()
    marks = {}
    try:
        # each command once 500 answers came since the last one finished (a busy machine
        # makes a command slower, not the windows between them empty)
        _wait_for(load, 500)
        for cmd in (["canary", "50"], ["switch"], ["rollback"]):
            t0 = time.time()
            fw(root, "deploy", *cmd)
            marks[cmd[0]] = (t0, time.time())
            _wait_for(load, load.count() + 500)
    finally:
        load.stop()
        load.join(300)
    assert len(load.answers) >= 2000
    assert load.failed() == [], load.failed()[:5]

    def versions_between(t_from: float, t_to: float) -> list[str]:
        return [a.model_version for a in load.answers if t_from <= a.sent < t_to]

    c_done, s_start = marks["canary"][1], marks["switch"][0]
    s_done, r_start, r_done = marks["switch"][1], marks["rollback"][0], marks["rollback"][1]
    half = versions_between(c_done, s_start)
    assert 0.35 <= half.count(green) / len(half) <= 0.65, (half.count(green), len(half))
    assert set(versions_between(s_done, r_start)) == {green}
    assert set(versions_between(r_done, float("inf"))) == {blue}
    s = status(root)
    assert s["live"] == "blue" and s["weights"] == {"blue": 100, "green": 0}
    actions = [h["action"] for h in s["history"]]
    assert actions[-3:] == ["canary", "switch", "rollback"]
    # the switch made v0.0.2 production; the rollback made v0.0.1 production again and left
    # its reason on v0.0.2
    rows = registry_rows(root)
    assert (rows["v0.0.1"][1], rows["v0.0.2"][1]) == ("prod", "rolled-back")
    events = run(["git", "tag", "-n9", "-l", "fault_cnn#*"], root).stdout
    assert "deploy switch: all traffic on green" in events
    assert "deploy rollback: all traffic back to blue (v0.0.1)" in events


# ---------------------------------------------------------------------- shadow
class SlowProxy:
    """A shadow target that answers after `delay_s`, forwarding to a real server: the slow shadow
    of the issue, in front of green so that its answers are still logged."""

    def __init__(self, target: str, delay_s: float):
        target_url, delay = target, delay_s

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                headers = {k: v for k, v in self.headers.items() if k.lower().startswith("x-")}
                req = urllib.request.Request(
                    target_url + self.path,
                    data=body,
                    headers={"Content-Type": "application/json", **headers},
                )
                with urllib.request.urlopen(req, timeout=30) as r:
                    data, code = r.read(), r.status
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_shadow_logs_green_answers_and_reports_agreement(deployed):
    root, url, _ = deployed
    fw(root, "deploy", "shadow", "on")
    # the shadow colour takes only the CPU the live one leaves: every thread of every process
    # of green (server and workers) in the idle class, blue's in the normal one
    tags = {c: status(root)["colours"][c]["tag"] for c in ("blue", "green")}
    assert scheduling(tags["green"]) == {os.SCHED_IDLE}
    assert scheduling(tags["blue"]) == {os.SCHED_OTHER}
    fw(root, "deploy", "shadow", "off")
    assert scheduling(tags["green"]) == {os.SCHED_OTHER}  # back to normal: it may take traffic
    # The answers are checked with the shadow in the normal class: where every core is busy
    # with other work (`make test` runs two workers on two cores), an idle-class process gets
    # almost no CPU, and its copies would wait until they are dropped.
    params_file = root / "params.yaml"
    before = params_file.read_text()
    p = yaml.safe_load(before)
    p["deploy"]["shadow_low_priority"] = False
    params_file.write_text(yaml.safe_dump(p, sort_keys=False))
    try:
        shadow_answers_agree(root, url, tags)
    finally:
        params_file.write_text(before)


def shadow_answers_agree(root: Path, url: str, tags: dict[str, str]) -> None:
    fw(root, "deploy", "shadow", "on")
    assert scheduling(tags["green"]) == {os.SCHED_OTHER}
    load = Load(url, bodies(), concurrency=4, total=208).start().join(120)
    assert not load.failed()
    deadline = time.monotonic() + 60
    while True:
        s = status(root)
        agr = s["shadow_agreement"]
        copies = s["shadow_copies"]
        if copies["inflight"] == 0 and agr["shadow_answers"] >= copies["answered"]:
            break
        assert time.monotonic() < deadline, (agr, copies)
        time.sleep(0.5)
    print("shadow agreement:", agr, "copies:", copies)
    assert s["shadow"] is True
    # every live request was copied, or dropped and counted (more than shadow_max_inflight
    # copies waiting: green shares two cores with blue here and falls behind a closed loop)
    assert copies["sent"] + copies["dropped_busy"] + copies["dropped_body"] == 208
    assert copies["answered"] + copies["failed"] == copies["sent"]
    assert copies["answered"] >= 20
    assert agr["joined"] == agr["shadow_answers"] >= copies["answered"]
    # blue flags everything, green only the faults: they agree on the faults' share
    assert 0.1 < agr["same_label"] < 0.5 and agr["mean_abs_diff"] > 0.1
    fw(root, "deploy", "shadow", "off")
    assert status(root)["shadow"] is False


def scheduling(tag: str) -> set[int]:
    """The scheduling classes of every thread of the processes tagged `tag`."""
    pids = rt.tagged_pids(tag)
    assert len(pids) >= 2, pids  # the server and its worker(s)
    return {
        os.sched_getscheduler(int(t.name))
        for pid in pids
        for t in Path(f"/proc/{pid}/task").iterdir()
    }


def test_a_slow_shadow_does_not_slow_live_answers(deployed):
    root, url, _ = deployed
    s = status(root)
    api = rt.RuntimeAPI(rt.socket_path(root / ".faultwatch/deploy"))
    map_path = root / ".faultwatch/deploy/router.map"
    slow = SlowProxy(f"http://127.0.0.1:{s['colours']['green']['port']}", 0.5)
    p50: dict[str, list[float]] = {"off": [], "on": []}
    try:
        Load(url, bodies(), concurrency=CONCURRENCY, total=300).start().join(120)  # warm
        for mode in ("off", "on", "off", "on"):  # interleaved: a slower machine moment hits both
            api.shadow(slow.url if mode == "on" else None, map_path)
            run_ = Load(url, bodies(), concurrency=CONCURRENCY, total=500).start().join(120)
            assert not run_.failed()
            p50[mode].append(run_.latency()["p50_ms"])
    finally:
        api.shadow(None, map_path)
        slow.close()
    p_off, p_on = sum(p50["off"]) / 2, sum(p50["on"]) / 2
    copies = api.shadow_stats()
    print(f"live p50 shadow off {p50['off']} ms, 500 ms shadow on {p50['on']} ms; {copies}")
    assert copies["sent"] > 0 and copies["dropped_busy"] > 0  # the shadow was slow indeed
    assert p_on <= 1.2 * p_off + 1.0  # within 20 % (and 1 ms of scheduling noise)


# ---------------------------------------------------------------------- the analysis gate
def test_canary_steps_the_traffic_cannot_judge_are_refused_at_the_start(deployed):
    """No traffic (or too little for deploy.min_requests within a step) is no evidence: the
    gradual canary refuses before it moves any traffic, with the numbers and the way out."""
    root, url, _ = deployed
    before = status(root)
    time.sleep(10)  # the traffic of the tests before has left the window the canary measures
    r = fw(root, "deploy", "canary", "--steps", "10,100", "--interval", "1", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the live traffic of the last 10 s is 0.0 answers/s" in r.stderr, r.stderr
    assert "below deploy.min_requests (20)" in r.stderr and "nothing was changed" in r.stderr
    # some traffic, still too little for 10 % of it over 1 s: refused, saying what would do
    load = Load(url, bodies(), concurrency=1, total=None, rate=20).start()
    try:
        time.sleep(3)
        r = fw(root, "deploy", "canary", "--steps", "10,100", "--interval", "1", check=False)
    finally:
        load.stop()
        load.join(60)
    assert r.returncode == 1 and "Raise --interval (at 10 %: " in r.stderr, r.stderr
    after = status(root)
    assert after["weights"] == before["weights"] == {"blue": 100, "green": 0}
    assert after["history"] == before["history"] and not load.failed()


def test_a_rejected_version_is_staged_but_never_takes_traffic(deployed):
    root, url, versions = deployed
    fw(root, "deploy", "stage", "v0.0.3")  # rejected by the gate: staged for its smoke test
    before = status(root)
    for cmd in (["switch"], ["canary", "10"], ["canary", "--steps", "10,100"]):
        r = fw(root, "deploy", *cmd, check=False)
        assert r.returncode == 1, (cmd, r.stdout, r.stderr)
        assert (
            "fault_cnn v0.0.3 is rejected by the promotion gate" in r.stderr
            and "only an approved version can" in r.stderr
        ), r.stderr
    r = fw(root, "registry", "production", "v0.0.3", "--reason", "by hand", check=False)
    assert r.returncode == 1 and "only an approved version can go to production" in r.stderr
    after = status(root)
    assert after["weights"] == before["weights"] == {"blue": 100, "green": 0}
    assert after["registry"]["production"] == "v0.0.1"


def test_a_green_failing_the_analysis_is_aborted_to_zero(deployed):
    root, url, versions = deployed
    from faultwatch import registry

    # as if the gate had passed it: a version approved offline that misbehaves online
    registry.assign("v0.0.3", registry.APPROVED, "approved by hand (test)", root)
    fw(root, "deploy", "stage", "v0.0.3")  # flags every signal: fault rate 1.0
    load = Load(url, bodies(), concurrency=8, total=None, duration_s=60, rate=LOAD_RATE).start()
    try:
        _warm(load)
        r = fw(root, "deploy", "canary", "--steps", "10,50,100", "--interval", "4", check=False)
        aborted = time.time()
        time.sleep(1)  # a second of traffic after the abort: blue answers all of it
    finally:
        load.stop()
        load.join(60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "FAIL fault_rate_delta" in r.stdout and "aborted at 10 %" in r.stdout
    s = status(root)
    assert s["weights"] == {"blue": 100, "green": 0} and s["last_analysis"]["verdict"] == "fail"
    assert not load.failed()
    late = [a for a in load.answers if a.sent > aborted]
    assert late, "no request was sent after the abort: nothing checked"
    assert all(a.model_version == versions["v0.0.1"] for a in late)
    # the registry records the refusal on the version, with its reason; production unchanged
    assert "registry: v0.0.3 canary-aborted (canary at 10 % on green: fail" in r.stdout
    rows = registry_rows(root)
    assert rows["v0.0.3"][1] == "canary-aborted" and rows["v0.0.1"][1] == "prod"
    assert s["registry"]["production"] == "v0.0.1" and s["registry"]["problem"] is None


ROLLOUT = """
import sys
from pathlib import Path
from faultwatch.retrain import ROLLOUT_STEPS, run_steps
from faultwatch.retrain.loop import Loop, Run
run = Run(Loop(Path.cwd(), print), None, steps=[10, 100], interval=4, version=sys.argv[1])
sys.exit(run_steps(run, ROLLOUT_STEPS))
"""


def test_the_retrain_loops_rollout_stops_with_exit_3_when_the_canary_refuses(deployed):
    """The retrain loop's own rollout steps (stage, canary, switch), in a process of their own
    as `faultwatch retrain` runs them, on a version that passed the gate offline and
    misbehaves online: the canary refuses, the loop stops with exit 3 before its switch, and
    nothing switched (a refusal taken for success would switch)."""
    root, url, versions = deployed
    from faultwatch import registry

    registry.assign("v0.0.3", registry.APPROVED, "approved by hand (test)", root)
    load = Load(url, bodies(), concurrency=8, total=None, duration_s=90, rate=LOAD_RATE).start()
    try:
        r = run([str(VENV_BIN / "python"), "-c", ROLLOUT, "v0.0.3"], root, check=False,
                **project_env(root))  # fmt: skip
    finally:
        load.stop()
        load.join(60)
    said = r.stdout
    assert r.returncode == 3, said + r.stderr
    assert "stopped at the canary analysis: blue (v0.0.1) keeps all the traffic" in said, said
    assert "canary    ABORTED" in said and "\nswitch" not in said and "done:" not in said, said
    s = status(root)
    assert s["weights"] == {"blue": 100, "green": 0} and s["live"] == "blue"
    assert s["registry"]["production"] == "v0.0.1" and not load.failed()


def test_a_good_green_advances_through_every_step(deployed):
    root, url, versions = deployed
    fw(root, "deploy", "stage", "v0.0.2")
    load = Load(url, bodies(), concurrency=8, total=None, duration_s=90, rate=LOAD_RATE).start()
    try:
        _warm(load)
        r = fw(root, "deploy", "canary", "--steps", "10,50,100", "--interval", "4", check=False)
    finally:
        load.stop()
        load.join(60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS") == 2 and "green (v0.0.2) is live" in r.stdout
    assert status(root)["live"] == "green" and not load.failed()
    # production follows the traffic: the registry, deploy status and the report page agree
    assert "registry: v0.0.2 is production (deploy canary: every step passed" in r.stdout
    rows = registry_rows(root)
    assert rows["v0.0.2"][1] == "prod" and rows["v0.0.1"][1] == "-"
    listed = fw(root, "registry", "list").stdout
    assert f"serving: v0.0.2 live on green at {url} (100 % of the traffic)" in listed
    assert "DISAGREE" not in listed and status(root)["registry"]["problem"] is None
    # a registry changed behind the deployment's back (a tag by hand): every view says so,
    # and `deploy up` of what serves records it again
    from faultwatch import registry

    registry.set_production("v0.0.1", "assigned by hand (test)", root)
    said = fw(root, "deploy", "status").stdout
    assert (
        "DISAGREE: v0.0.2 serves the traffic here (on green), but the registry's production is "
        "v0.0.1: `faultwatch deploy up v0.0.2` records it"
    ) in said, said
    assert "DISAGREE: v0.0.2 serves" in fw(root, "registry", "list").stdout
    fw(root, "deploy", "up", "v0.0.2")
    assert (
        status(root)["registry"]["problem"] is None and registry_rows(root)["v0.0.2"][1] == "prod"
    )


def test_each_colour_reports_its_own_metrics(deployed):
    """Blue and green share the project's BentoML store, where BentoML keeps the Prometheus files
    of a server's processes by default, and empties them at every server's start: each server
    has a folder of its own, so blue's /metrics counts what blue answered (every row of blue in
    the prediction log, over green's restarts) and nothing of green's."""
    root, _, _ = deployed
    s = status(root)
    with sqlite3.connect(root / "reports/serving/predictions.sqlite") as conn:
        logged = dict(conn.execute("SELECT colour, count(*) FROM predictions GROUP BY colour"))
    blue = s["colours"]["blue"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{blue['port']}/metrics", timeout=30).read()
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith("faultwatch_predictions_total{")
    )
    assert logged["green"] > 0 and counted == logged["blue"] > 0, (counted, logged)


# ---------------------------------------------------------------------- failures
def test_a_second_command_while_one_runs_waits_then_refuses_and_corrupts_nothing(deployed):
    root, _, _ = deployed
    state = root / ".faultwatch/deploy/state.json"
    before = state.read_bytes()
    with open(root / ".faultwatch/deploy/lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("a test holding the lock\n")
        f.flush()
        r = fw(root, "deploy", "rollback", check=False, FAULTWATCH_DEPLOY_LOCK_WAIT="1")
        fcntl.flock(f, fcntl.LOCK_UN)
    assert r.returncode == 1 and "holds the deployment lock" in r.stderr
    assert state.read_bytes() == before


def test_a_corrupt_state_file_is_named(deployed, tmp_path):
    root, _, _ = deployed
    other = make_project(tmp_path / "other", git=False)
    (other / ".faultwatch/deploy").mkdir(parents=True)
    (other / ".faultwatch/deploy/state.json").write_text("{not json")
    r = fw(other, "deploy", "status", check=False)
    assert r.returncode == 1 and "state.json: not a deployment state file" in r.stderr


def test_a_version_whose_model_is_not_in_the_store_is_refused_saying_how(deployed, tmp_path):
    root, _, versions = deployed
    entry = entry_dir(root, versions["v0.0.3"])
    away = tmp_path / entry.name  # out of the store (BentoML finds an entry by its model.yaml)
    shutil.move(entry, away)
    try:
        r = fw(root, "deploy", "stage", "v0.0.3", check=False)
    finally:
        shutil.move(away, entry)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "is not in the store" in r.stderr and "git worktree add" in r.stderr
    assert "dvc repro register" in r.stderr


def test_down_stops_everything_and_is_idempotent(deployed):
    root, url, _ = deployed
    s = status(root)
    tags = [c["tag"] for c in s["colours"].values()]
    assert rt.tagged_pids(s["colours"]["blue"]["tag"])  # blue runs
    down = fw(root, "deploy", "down").stdout.splitlines()[-1]
    assert down == (
        "done: the router and both colours stopped; the prediction log stays in "
        "reports/serving/predictions.sqlite; next: faultwatch deploy up (the production "
        "version as blue)"
    ), down
    assert not rt.pid_alive(s["router"]["pid"])
    assert all(not rt.tagged_pids(t) for t in tags)  # no worker left behind
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/readyz", timeout=2)
    assert "nothing deployed" in fw(root, "deploy", "down").stdout
    assert shutil.which("haproxy")


# ---------------------------------------------------------------------- nothing left behind
def test_a_failed_up_leaves_nothing_running_and_down_finds_what_the_state_lost(
    deploy_template, tmp_path
):
    """`deploy up` on a port another program holds refuses before it starts anything; a
    deployment whose state file was lost is still stopped by `deploy down` (its processes carry
    the project); `deploy status` says when nothing serves the registry's production."""
    import socket

    root = copy_tree(deploy_template[0], tmp_path / "proj")
    project = root.resolve()
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            r = fw(root, "deploy", "up", "v0.0.1", "--port", str(port), check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"127.0.0.1:{port}: cannot listen there (Address already in use)" in r.stderr
        assert "nothing was started" in r.stderr
        assert rt.project_tags(project) == set() and "deploy up: v0.0.1" not in r.stderr
        assert "nothing deployed" in fw(root, "deploy", "status").stdout

        port = free_port()
        fw(root, "deploy", "up", "v0.0.1", "--port", str(port))
        s = status(root)
        assert rt.project_tags(project) == {s["colours"]["blue"]["tag"]}
        (root / ".faultwatch/deploy/state.json").unlink()  # the state lost: a crash, a clean-up
        said = fw(root, "deploy", "status").stdout
        assert "DISAGREE: the registry's production is v0.0.1, but nothing serves it here" in said
        down = fw(root, "deploy", "down").stdout
        assert "stopped what no deployment state listed: server blue-" in down, down
        assert f"router pid {s['router']['pid']}" in down
        assert rt.project_tags(project) == set() and not rt.pid_alive(s["router"]["pid"])
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
    finally:
        fw(root, "deploy", "down", check=False)
        kill_leftover_deployment(root)
