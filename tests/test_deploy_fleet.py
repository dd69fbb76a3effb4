"""`faultwatch deploy` of a fleet bento (issue 23): one bento of three model groups per colour,
behind HAProxy on loopback, each group gated, smoke-tested and judged on its own.

The project is the deploy tests' (tests/helpers/gate_project.py: crafted models whose behaviour
on the test split is known), with three groups registered on its store entries: pump, fan and
valve, each v0.0.1 the fault detector. The staged fleet changes two groups: pump to another
detector (in bounds), fan to the model that flags every signal (a fault rate of 1.0 against
0.23 in training): its canary is aborted naming fan, fan's new version alone is refused in the
registry, and no request fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.cli import fw, git_commit, project_env, run
from helpers.gate_project import LOAD_RATE, bodies, kill_leftover_deployment, put_model
from helpers.ports import free_port
from helpers.projects import copy_tree

from faultwatch.deploy.load import Load

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GROUPS = ("pump", "fan", "valve")
BUILD = """
import json, sys
import bentoml
from faultwatch import settings
models = sys.argv[1]
with settings.temporarily({"FAULTWATCH_MODELS": models}):
    b = bentoml.bentos.build_bentofile(
        "bentofile.yaml", build_ctx=".", labels={"model_tag": json.loads(models)["pump"]},
        args={"models": models, "max_loaded_models": "10", "warm": ""},
    )
print(b.tag)
"""


def build_fleet(root: Path, models: dict[str, str]) -> str:
    """A fleet bento of `models` (group -> store tag), built as the package stage builds it."""
    r = subprocess.run(
        [sys.executable, "-c", BUILD, json.dumps(models)],
        cwd=root,
        env={**project_env(root), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.strip().splitlines()[-1]


def approve(root: Path, group: str, tag: str) -> str:
    """A version of `group` whose model is `tag`, gated and approved (as `promote` leaves it)."""
    from faultwatch import registry

    version = registry.register({"model_tag": tag, "decision": "approved"}, root, group)
    registry.assign(version, registry.APPROVED, "the gate (test)", root, group)
    return version


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, deploy_template):
    root = copy_tree(deploy_template[0], tmp_path_factory.mktemp("deploy-fleet") / "proj")
    # the canary here is about a group's fault rate: latency is judged loosely, as in the
    # retrain loop (helpers.loop.DEPLOY). With the template's p99 bounds (1.5 times blue's,
    # 60 ms slack), one stall of a loaded CI machine in a 4 s step failed the group in bounds
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["deploy"].update(max_p99_ratio=20.0, p99_slack_ms=500)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    v = deploy_template[1]
    always, detector = f"fault_cnn:{v['v0.0.1']}", f"fault_cnn:{v['v0.0.2']}"
    put_model(root, "detector", threshold=0.6)  # the same network at another threshold:
    # another store entry that answers the same labels
    run(["faultwatch", "register"], root, **project_env(root))
    other = json.loads((root / "reports/register.json").read_text())["model_tag"]
    run(["git", "add", "-A"], root)
    git_commit(root, "another detector")
    for g in GROUPS:
        assert approve(root, g, detector) == "v0.0.1"
    run(["git", "commit", "-q", "--allow-empty", "-m", "the second versions"], root)
    assert other != detector
    assert approve(root, "pump", other) == approve(root, "fan", always) == "v0.0.2"
    first = build_fleet(root, dict.fromkeys(GROUPS, detector))
    second = build_fleet(root, {"pump": other, "fan": always, "valve": detector})
    port = free_port()
    try:
        up = fw(root, "deploy", "up", first, "--port", str(port))
        assert "smoke test passed" in up.stdout, up.stdout
        yield root, f"http://127.0.0.1:{port}", first, second
    finally:
        fw(root, "deploy", "down", check=False)
        kill_leftover_deployment(root)


def group_bodies() -> list[bytes]:
    """The test split's signals, each group in turn."""
    out = []
    for i, b in enumerate(bodies()):
        body = json.loads(b)
        out.append(json.dumps({**body, "model": GROUPS[i % 3]}).encode())
    return out


def test_up_serves_every_group_and_makes_each_groups_version_production(fleet):
    root, url, first, _ = fleet
    s = json.loads(fw(root, "deploy", "status", "--json").stdout)
    assert s["colours"]["blue"]["version"] == first
    assert sorted(s["colours"]["blue"]["models"]) == sorted(GROUPS)
    import httpx

    models = httpx.get(f"{url}/models", timeout=30).json()["models"]
    assert [m["model"] for m in models] == list(GROUPS)
    for g in GROUPS:
        listed = fw(root, "registry", "list", g).stdout
        assert "prod" in listed.splitlines()[1], listed  # v0.0.1 of each group


def test_a_canary_where_one_group_regresses_is_aborted_naming_it(fleet):
    root, url, _, second = fleet
    stage = fw(root, "deploy", "stage", second)
    assert "smoke test passed" in stage.stdout, stage.stdout  # every group's golden set
    load = Load(
        url, group_bodies(), concurrency=8, total=None, duration_s=60, rate=LOAD_RATE
    ).start()
    try:
        r = fw(root, "deploy", "canary", "--steps", "50,100", "--interval", "4", check=False)
    finally:
        load.stop()
        load.join(60)
    out = r.stdout
    print(out)
    assert r.returncode == 3, out + r.stderr
    assert "aborted at 50 %" in out and "fan failed" in out, out
    assert "fan: FAIL" in out and "FAIL fault_rate_delta" in out, out
    assert "valve: unchanged" in out, out
    assert "pump: " in out and "needs " in out, out  # pump's evidence, planned
    assert not load.failed()
    s = json.loads(fw(root, "deploy", "status", "--json").stdout)
    assert s["weights"] == {"blue": 100, "green": 0}
    # the refusal is recorded on fan's new version only; pump's was not judged bad
    fan = fw(root, "registry", "list", "fan").stdout
    pump = fw(root, "registry", "list", "pump").stdout
    assert "canary-aborted" in next(ln for ln in fan.splitlines() if "v0.0.2" in ln), fan
    assert "canary-aborted" not in pump, pump


def test_a_fleet_whose_group_is_not_approved_takes_no_traffic_and_names_it(fleet):
    root = fleet[0]
    from faultwatch import registry
    from faultwatch.deploy import fleet as deploy_fleet

    def model(group: str, version: str | None) -> deploy_fleet.FleetModel:
        return deploy_fleet.FleetModel(group, f"fault_cnn:{group}", root, version)

    approved = {"pump": model("pump", "v0.0.1"), "valve": model("valve", "v0.0.1")}
    deploy_fleet.require_approved(root, approved, "take traffic")  # every group approved
    never_gated = {**approved, "fan": model("fan", None)}
    with pytest.raises(registry.NotApproved, match=r"group fan: .* a candidate no promotion"):
        deploy_fleet.require_approved(root, never_gated, "take traffic")
    registry.assign("v0.0.1", registry.PENDING, "waits for a person (test)", root, "valve")
    with pytest.raises(registry.NotApproved, match=r"valve v0\.0\.1 is .*only an approved version"):
        deploy_fleet.require_approved(root, approved, "take traffic")
