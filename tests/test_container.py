"""The bento as an OCI image, built with buildah and run with podman on loopback; blue/green with
the colours as containers (`faultwatch deploy up --runtime container`).

One project (tests/helpers/gate_project.py) holds three registered versions of crafted models:
v0.0.1 flags every signal, v0.0.2 detects the faults, v0.0.3 has no image (refused). The images
of v0.0.1 and v0.0.2 are built once for the module (`faultwatch image build VERSION`); buildah's
layer cache keeps the Python packages' layer between runs on a machine that keeps its image
store, so only the bento's own layer is built again. A machine where containers cannot run
fails here with podman's reason (`faultwatch image check`), never skips.

Every container a test starts is named `fwtest-<run>-...` and removed on leaving, also on
failure.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from helpers.cli import fw, run
from helpers.gate_project import LOAD_RATE, split_frame
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.projects import copy_tree
from helpers.ready import until_ready

from faultwatch.deploy.load import Load

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUN_ID = uuid.uuid4().hex[:8]
ENGINE = "podman"
# the project's folder, so its images are faultwatch-fwimages:<version>: not the README
# walk-through's (its project is proj, its images faultwatch-proj)
PROJECT = "fwimages"
IMAGE = f"faultwatch-{PROJECT}"


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {p.stderr}")
    return p


def post(url: str, payload: object, path: str = "/predict") -> tuple[int, dict]:
    req = urllib.request.Request(
        url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def remove_test_containers() -> None:
    names = podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
    mine = [n for n in names if n.startswith(f"fwtest-{RUN_ID}")]
    if mine:
        podman("rm", "-f", *mine, check=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory, deploy_template):
    """(project root, {registry version: model store version}) with the images of v0.0.1 and
    v0.0.2 built; every container started here removed on leaving."""
    check = run(["faultwatch", "image", "check"], REPO, check=False)
    assert check.returncode == 0, (
        "containers cannot be built or run on this machine:\n" + check.stdout + check.stderr
    )
    root = copy_tree(deploy_template[0], tmp_path_factory.mktemp("image") / PROJECT)
    versions = dict(deploy_template[1])
    builds = {}
    try:
        for v in ("v0.0.1", "v0.0.2"):
            out = fw(root, "image", "build", v, "--json")
            builds[v] = json.loads(out.stdout[out.stdout.index("{") :])
            builds[v]["progress"] = out.stderr
        yield root, versions, builds
    finally:
        fw(root, "deploy", "down", check=False)
        remove_test_containers()


def test_images_are_named_by_project(tmp_path):
    """Two projects on one host each tag their own v0.0.1: the name carries the project's
    folder, made an OCI name; `faultwatch image name` prints it."""
    from faultwatch.image import image_name

    assert image_name(Path("/srv/proj")) == "faultwatch-proj"
    assert image_name(Path("/home/u/My Clone_2")) == "faultwatch-my-clone-2"
    assert image_name(Path("/x/.__")) == "faultwatch-project"
    folder = tmp_path / "Pump Lab"
    folder.mkdir()
    (folder / "params.yaml").write_text("{}\n")
    assert run(["faultwatch", "image", "name"], folder).stdout == "faultwatch-pump-lab\n"


def test_image_build_shows_buildahs_output(images):
    """`image build` says that buildah's output follows, and it does: its steps, indented."""
    _, _, builds = images
    for v, b in builds.items():
        lines = b["progress"].splitlines()
        (said,) = [i for i, ln in enumerate(lines) if ln.startswith("[3/3] building the image")]
        assert lines[said].endswith("buildah's output follows"), lines[said]
        followed = [ln for ln in lines[said + 1 :] if ln.startswith("  | ")]
        assert any(ln.startswith("  | STEP ") for ln in followed), (v, lines[said:][:20])
        assert any("COMMIT" in ln for ln in followed), (v, followed[-5:])


def test_image_is_labelled_non_root_cpu_only_and_without_compilers(images):
    root, versions, builds = images
    b = builds["v0.0.2"]
    assert b["tags"] == [f"{IMAGE}:v0.0.2", f"{IMAGE}:{versions['v0.0.2']}"], b
    info = json.loads(podman("image", "inspect", f"{IMAGE}:v0.0.2").stdout)[0]
    labels = info["Config"]["Labels"]
    entry = root / ".bentoml/models/fault_cnn" / versions["v0.0.2"] / "model.yaml"
    meta = yaml.safe_load(entry.read_text())["metadata"]
    from faultwatch import registry

    registered_at = registry.get("v0.0.2", root).commit  # the commit the registry version names
    assert labels["io.faultwatch.registry_version"] == "v0.0.2"
    assert labels["io.faultwatch.model_tag"] == f"fault_cnn:{versions['v0.0.2']}"
    assert labels["io.faultwatch.weights_sha256"] == meta["weights_sha256"]
    assert labels["io.faultwatch.project"] == str(root.resolve())
    assert len(meta["weights_sha256"]) == 64
    commit = labels["io.faultwatch.git_commit"]
    assert commit == labels["org.opencontainers.image.revision"] and len(commit) >= 12
    assert registered_at.startswith(commit), (registered_at, commit)
    assert info["Config"]["User"] == "bentoml"
    inside = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", f"{IMAGE}:v0.0.2", "-c",
        "id -u; for t in gcc cc make git; do command -v $t || true; done; "
        "python -c 'import torch; print(torch.__version__, torch.cuda.is_available())'; "
        "ls /app/.venv/lib/python3.11/site-packages | grep -ciE '^nvidia($|_cu)' || true",
    ).stdout.split("\n")  # fmt: skip
    assert inside[0] == "1034", inside  # not root
    assert inside[1].endswith("+cpu False"), inside  # no compiler found: nothing printed
    assert inside[2] == "0", inside  # no CUDA libraries (nvidia-ml-py, BentoML's, is 32 kB)
    # the second image re-used the Python packages' layer of the first
    assert builds["v0.0.1"]["size_mb"] == pytest.approx(b["size_mb"], abs=5)


def test_the_container_answers_like_the_process_and_its_log_survives_a_restart(images, tmp_path):
    from faultwatch.serve.golden import load_golden

    root, versions, _ = images
    golden = load_golden(root / ".bentoml/models/fault_cnn" / versions["v0.0.2"])
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"fwtest-{RUN_ID}-answers"
    argv = ["run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3000"]
    argv += ["-v", f"{logs}:/home/bentoml/predictions:U", f"{IMAGE}:v0.0.2"]
    try:
        podman(*argv)
        until_ready(url)
        # the recorded answers of the in-process model (register's golden set)
        code, answer = post(url + "/predict_batch", {"signals": golden.signals}, path="")
        assert code == 200, answer
        got = [a["probability"] for a in answer["predictions"]]
        assert got == pytest.approx(golden.probabilities, abs=1e-6)
        assert [a["label"] for a in answer["predictions"]] == golden.labels
        assert {a["model_version"] for a in answer["predictions"]} == {versions["v0.0.2"]}
        first_ids = {a["prediction_id"] for a in answer["predictions"]}
        # a bad request: a 4xx naming the field and the rule
        code, err = post(url, {"signal": [1.0, "x", 3.0]})
        assert code in (400, 422), (code, err)
        assert "signal" in json.dumps(err), err
        # the log is on the mounted folder and survives the container
        podman("rm", "-f", name)
        podman(*argv)
        until_ready(url)
        code, again = post(url, {"signal": golden.signals[0]})
        assert code == 200
        db = sqlite3.connect(logs / "predictions.sqlite")
        cols = [r[1] for r in db.execute("PRAGMA table_info(predictions)")]
        assert "prediction_id" in cols, cols
        ids = {r[0] for r in db.execute("SELECT prediction_id FROM predictions")}
        db.close()
        assert first_ids <= ids and again["prediction_id"] in ids
    finally:
        podman("rm", "-f", name, check=False)


def test_deploy_with_containers_switches_and_rolls_back_without_a_failed_request(images):
    root, versions, _ = images
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    fw(root, "deploy", "up", "v0.0.1", "--port", str(port), "--runtime", "container")
    staged = fw(root, "deploy", "stage", "v0.0.2")
    assert "smoke test passed" in staged.stdout, staged.stdout
    s = json.loads(fw(root, "deploy", "status", "--json").stdout)
    assert s["runtime"] == "container"
    names = {c: s["colours"][c]["container"] for c in ("blue", "green")}
    running = podman("ps", "--format", "{{.Names}} {{.Image}}").stdout
    assert f"{names['blue']} localhost/{IMAGE}:v0.0.1" in running, running
    assert f"{names['green']} localhost/{IMAGE}:v0.0.2" in running, running
    bodies = [json.dumps({"signal": list(map(float, v))}).encode() for v in split_frame()["values"]]
    blue, green = versions["v0.0.1"], versions["v0.0.2"]
    load = Load(url, bodies, concurrency=16, total=None, duration_s=240, rate=LOAD_RATE).start()
    marks = {}
    try:
        for cmd in (["shadow", "on"], ["canary", "30"], ["switch"], ["rollback"]):
            n = load.count() + 300
            while load.count() < n and not load.done():
                time.sleep(0.02)
            t0 = time.time()
            fw(root, "deploy", *cmd)
            marks[cmd[0]] = (t0, time.time())
        n = load.count() + 300
        while load.count() < n and not load.done():
            time.sleep(0.02)
    finally:
        load.stop()
        load.join(300)
    assert load.failed() == [], load.failed()[:5]

    def between(a: float, b: float) -> list[str]:
        return [x.model_version for x in load.answers if a <= x.sent < b]

    canary = between(marks["canary"][1], marks["switch"][0])
    assert 0.15 <= canary.count(green) / len(canary) <= 0.45, (canary.count(green), len(canary))
    assert set(between(marks["switch"][1], marks["rollback"][0])) == {green}
    assert set(between(marks["rollback"][1], float("inf"))) == {blue}
    s = json.loads(fw(root, "deploy", "status", "--json").stdout)
    agreement = s["shadow_agreement"]
    assert agreement["joined"] > 0, agreement  # green's shadow answers, logged by its container
    # no image for v0.0.3: refused, naming the command that builds it; blue keeps the traffic
    refused = fw(root, "deploy", "stage", "v0.0.3", check=False)
    assert refused.returncode != 0 and "faultwatch image build v0.0.3" in refused.stderr
    after = json.loads(fw(root, "deploy", "status", "--json").stdout)["colours"]
    assert after["green"]["running"] and after["green"]["version"] == "v0.0.2", after  # untouched
    assert post(url, json.loads(bodies[0]))[1]["model_version"] == blue
    fw(root, "deploy", "down")
    left = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert not set(names.values()) & set(left), left


def test_a_bad_engine_name_is_refused_with_the_choices(images):
    root, _, _ = images
    out = fw(root, "image", "build", "v0.0.1", check=False, FAULTWATCH_CONTAINER_ENGINE="dokcer")
    assert out.returncode == 1
    assert "FAULTWATCH_CONTAINER_ENGINE='dokcer': expected 'podman' or 'docker'" in out.stderr


# ---------------------------------------------------------------------- compose
def admin(port: int, command: str) -> str:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(command.encode() + b"\n")
        out = b""
        while chunk := s.recv(65536):  # HAProxy closes after one command
            out += chunk
        return out.decode()


def test_compose_file_runs_unchanged_with_podman_compose(images):
    """deploy/compose.yaml as a person runs it, with Debian's podman-compose; the router image
    is deploy/router.Containerfile's (the official haproxy:2.6 needs a registry)."""
    root, versions, _ = images
    assert shutil.which("podman-compose"), (
        "podman-compose is missing: apt-get install podman-compose"
    )
    router = "localhost/faultwatch-router:2.6"
    build = ["buildah", "bud", "--isolation", "chroot", "-q", "-f", "deploy/router.Containerfile"]
    run([*build, "-t", router, "deploy"], REPO)
    port, admin_port = free_port(), free_port()
    project = f"fwtest{RUN_ID}"
    env = {
        "FAULTWATCH_IMAGE": fw(root, "image", "name").stdout.strip(),
        "FAULTWATCH_BLUE": "v0.0.1",
        "FAULTWATCH_GREEN": "v0.0.2",
        "FAULTWATCH_ROUTER_IMAGE": router,
        "FAULTWATCH_PORT": str(port),
        "FAULTWATCH_ADMIN_PORT": str(admin_port),
    }
    compose = ["podman-compose", "-p", project, "-f", str(REPO / "deploy/compose.yaml")]
    url = f"http://127.0.0.1:{port}"
    signal = list(map(float, split_frame()["values"][0]))
    try:
        run([*compose, "up", "-d"], REPO, **env)
        deadline = time.monotonic() + 120
        answer: dict = {}
        while time.monotonic() < deadline:
            try:
                code, answer = post(url, {"signal": signal})
                if code == 200:
                    break
            except (OSError, ValueError):  # not up yet, or HAProxy's own 503 page
                pass
            time.sleep(0.5)
        assert answer.get("model_version") == versions["v0.0.1"], answer
        # the runtime API moves the traffic to green, once HAProxy's check finds it up
        while "faultwatch,green," not in [
            ln[:17] for ln in admin(admin_port, "show stat").splitlines() if ",UP," in ln
        ]:
            assert time.monotonic() < deadline, admin(admin_port, "show stat")
            time.sleep(0.5)
        assert admin(admin_port, "set weight faultwatch/green 100").strip() == ""
        assert admin(admin_port, "set weight faultwatch/blue 0").strip() == ""
        seen = {post(url, {"signal": signal})[1]["model_version"] for _ in range(10)}
        assert seen == {versions["v0.0.2"]}, seen
        # each colour logged to its own named volume, owned by the image's user
        logs = podman("volume", "inspect", f"{project}_green-predictions").stdout
        folder = Path(json.loads(logs)[0]["Mountpoint"])
        assert (folder / "predictions.sqlite").stat().st_uid == 1034
    finally:
        run([*compose, "down", "-v"], REPO, check=False, **env)
        podman("network", "rm", "-f", f"{project}_default", check=False)
