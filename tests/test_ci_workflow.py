""".github/workflows/ci.yml runs the Makefile's commands and nothing else.

It cannot run here (no GitHub), so these checks read it: every `run:` step is `make TARGET` for a
target the Makefile has, set-up installs from requirements.lock, the Python of the job is the
one pyproject.toml requires, the test artifacts are uploaded even when a step failed, uv's cache
is keyed on the lock, the tiny pipeline's `-S` overrides name real params with valid values, and
the file is valid against SchemaStore's GitHub workflow schema (@action-validator/core, pinned in
tests/npm). About 3 s.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import tomllib

import pytest
import yaml
from helpers.npm import NPM_SRC, npm_modules
from helpers.paths import REPO
from packaging.specifiers import SpecifierSet

from faultwatch.params import SECTIONS, section

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job["steps"]]


def make_targets(workflow: dict) -> list[str]:
    """The targets of the `run:` steps, in order; a step that is not `make TARGET` fails."""
    targets = []
    for step in steps(workflow):
        if "run" not in step:
            continue
        words = shlex.split(step["run"])
        assert len(words) == 2 and words[0] == "make", (
            f"ci.yml step {step['run']!r}: every run step is `make TARGET`, so that CI runs "
            "the Makefile's commands (put the command in a Makefile target)"
        )
        targets.append(words[1])
    return targets


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True
    )


def test_every_run_step_is_a_make_target_of_the_makefile(workflow):
    targets = make_targets(workflow)
    assert {"setup", "system", "lint", "test", "tiny"} <= set(targets), targets
    for target in targets:
        # -q runs nothing: 0 or 1 (up to date or not) for a target make knows, 2 otherwise
        proc = make("-q", target)
        assert proc.returncode in (0, 1), f"make {target}: {proc.stderr.strip()}"
    # set-up first; the project's own CI command (.ci/run) is among them
    assert targets[0] == "setup"
    ci_run = [ln for ln in (REPO / ".ci/run").read_text().splitlines() if ln.startswith("make ")]
    assert ci_run and all(ln.split()[1] in targets for ln in ci_run), ci_run


@pytest.mark.parametrize("cpu_torch", ["", "/opt/wheels/torch-cpu.whl"])
def test_setup_installs_from_the_lock_only(cpu_torch):
    """What `make setup` runs after requirements.lock changed (-W), with and without the
    machine's CPU torch wheel (CI has none): a sync to the lock, and no install that could
    resolve anything itself."""
    proc = make("-n", "-W", "requirements.lock", "setup", f"HAVE_CPU_TORCH={cpu_torch}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    syncs = [ln for ln in lines if "uv pip sync" in ln]
    assert syncs, proc.stdout
    derived = {m.group(1) for ln in lines if (m := re.search(r"requirements\.lock > (\S+)", ln))}
    for ln in syncs:
        assert ln.split()[-1] in {"requirements.lock", *derived}, ln
    for ln in lines:
        if re.search(r"\bpip install\b", ln):
            assert "--no-deps" in ln or "requirements.lock" in ln, (
                f"an install not from the lock: {ln}"
            )


@pytest.mark.parametrize("asked,backend", [((), "cpu"), (("TORCH_BACKEND=auto",), "auto")])
def test_without_the_local_wheel_setup_installs_the_cpu_torch_unless_a_gpu_is_asked(asked, backend):
    """Without the machine's CPU wheel (TORCH_WHEELS), PyPI's torch would be the multi-gigabyte
    CUDA build, on a laptop with no GPU too: set-up asks uv for PyTorch's CPU build
    (`--torch-backend cpu`) unless a GPU build is asked for (`TORCH_BACKEND=auto`, `cu126`...)."""
    proc = make("-n", "-W", "requirements.lock", "setup", "HAVE_CPU_TORCH=", *asked)
    assert proc.returncode == 0, proc.stderr
    installs = [ln for ln in proc.stdout.splitlines() if re.search(r"pip install .*torch==", ln)]
    assert len(installs) == 1, proc.stdout
    assert re.search(rf"--torch-backend {backend}\b", installs[0]), installs[0]


def test_the_python_of_the_job_is_the_one_pyproject_requires(workflow):
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    for name, job in workflow["jobs"].items():
        image = job["container"]["image"]
        found = re.fullmatch(r"python:(\d+\.\d+)-bookworm", image)
        assert found, f"job {name}: {image}: expected python:X.Y-bookworm (Debian, as make system)"
        assert found.group(1) in SpecifierSet(requires), (image, requires)
        wanted = job["env"]["PYTHON"]  # the Makefile's $(PYTHON) makes the venv
        assert wanted == f"python{found.group(1)}", (wanted, image)


def test_test_artifacts_are_uploaded_even_on_failure(workflow, monkeypatch):
    from helpers.browser import artifact

    monkeypatch.delenv("FAULTWATCH_TEST_ARTIFACTS", raising=False)
    folder = artifact("probe.png").parent.relative_to(REPO).as_posix()  # test-artifacts
    all_steps = steps(workflow)
    uploads = [
        i
        for i, s in enumerate(all_steps)
        if s.get("uses", "").startswith("actions/upload-artifact@")
    ]
    assert uploads, "no actions/upload-artifact step"
    step = all_steps[uploads[-1]]
    assert folder in [p.strip().rstrip("/") for p in step["with"]["path"].splitlines()], step
    assert "always()" in str(step.get("if")), f"uploaded only when every step passed: {step}"
    test_step = next(i for i, s in enumerate(all_steps) if s.get("run") == "make test")
    assert uploads[-1] > test_step


def test_the_checkout_has_the_history_dvc_exp_needs(workflow):
    checkouts = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(s.get("with", {}).get("fetch-depth") == 0 for s in checkouts), (
        "make tiny runs `dvc exp run`, which saves no experiment in a shallow clone (checkout's default)"
    )


def test_uv_cache_is_keyed_on_the_lock(workflow):
    caches = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/cache@")]
    assert any(
        "uv" in s["with"]["path"] and "hashFiles('requirements.lock')" in s["with"]["key"]
        for s in caches
    ), caches
    for s in steps(workflow):
        if "uses" in s:
            assert re.search(r"@v\d+$", s["uses"]), f"{s['uses']}: pin an action's major version"


def test_the_tiny_run_sets_real_params_to_valid_values():
    """`make tiny`'s `dvc exp run -S key=value`: each key exists in params.yaml (-S would add an
    unknown one, and the stage would fail in CI only) and each section stays valid."""
    proc = make("-n", "tiny")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "dvc exp run" in ln)
    words = shlex.split(line)
    assert "--temp" in words, "make tiny would change params.yaml and the outputs in place"
    sets = [words[i + 1] for i, w in enumerate(words) if w == "-S"]
    assert sets, line
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    tiny = copy.deepcopy(params)
    for item in sets:
        key, _, value = item.partition("=")
        *path, leaf = key.split(".")
        node = tiny
        for part in path:
            node = node[part]
        assert leaf in node, f"make tiny: -S {item}: params.yaml has no {key}"
        node[leaf] = yaml.safe_load(value)
    for name in {s.split(".")[0] for s in sets}:
        if name in SECTIONS:
            section(name, tiny, source="make tiny")  # raises naming the key
    assert tiny["train"]["max_epochs"] < params["train"]["max_epochs"]


def test_the_workflow_is_valid_against_the_github_workflow_schema():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the workflow schema comes from tests/npm")
    modules = npm_modules()
    proc = subprocess.run(
        [node, str(NPM_SRC / "validate-workflow.cjs"), str(modules), str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout)[str(WORKFLOW)]
    assert errors == [], json.dumps(errors, indent=1)[:3000]
