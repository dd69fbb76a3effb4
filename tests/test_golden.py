"""The smoke test: a real server of a registered model against the golden set the register
stage recorded for it, and against golden sets it must not pass."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest
from helpers.cli import project_env, run, tool_env
from helpers.gate_project import entry_dir, make_project, put_model
from helpers.paths import VENV_BIN
from helpers.ports import free_port
from helpers.processes import started
from helpers.ready import wait_ready
from helpers.serving import serve_cmd

from faultwatch.serve.golden import GoldenError, load_golden, smoke_test
from faultwatch.serve.predlog import ROLES


def register(root, kind: str, seed: int = 0) -> str:
    put_model(root, kind, seed)
    run([str(VENV_BIN / "faultwatch"), "register"], root, **project_env(root))
    return json.loads((root / "reports/register.json").read_text())["model_tag"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with two registered models: (root, the detector's tag, the other's tag)."""
    root = make_project(tmp_path_factory.mktemp("golden") / "proj")
    other = register(root, "always", seed=1)
    detector = register(root, "detector")
    return root, detector, other


@pytest.fixture(scope="module")
def served(project, tmp_path_factory):
    """`bentoml serve` of the detector's store entry: (url, prediction log)."""
    root, tag, _ = project
    tmp = tmp_path_factory.mktemp("golden_server")
    port, log = free_port(), tmp / "predictions.sqlite"
    server_env = {
        **project_env(root),
        "FAULTWATCH_MODEL_TAG": tag,
        "FAULTWATCH_PREDICTION_LOG": str(log),
        "FAULTWATCH_TORCH_THREADS": "1",
    }
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), root, tool_env(**server_env), tmp / "server.log") as proc:
        wait_ready(url, proc, tmp / "server.log")
        yield url, log


@pytest.mark.slow
def test_the_served_model_passes_its_smoke_test(project, served):
    root, tag, _ = project
    url, log = served
    golden = load_golden(entry_dir(root, tag))
    result = smoke_test(url, golden)
    assert result.passed, result.message
    assert (result.n, result.label_mismatches, result.model_versions) == (
        16,
        0,
        [tag.split(":")[1]],
    )
    assert result.max_abs_diff <= 1e-4
    assert result.message.startswith(f"smoke test passed: 16 golden signals of {tag}")
    assert result.as_dict()["passed"] is True
    with sqlite3.connect(log) as conn:
        roles = conn.execute(
            "SELECT role, count(*) FROM predictions WHERE request_id = ? GROUP BY role",
            (result.request_id,),
        ).fetchall()
    assert roles == [("smoke", 16)] and "smoke" in ROLES


@pytest.mark.slow
def test_tampered_probabilities_fail_the_smoke_test(project, served, tmp_path):
    root, tag, _ = project
    data = json.loads((entry_dir(root, tag) / "golden.json").read_text())
    assert data["probabilities"][10] < 0.5  # a healthy signal: room to move up
    data["probabilities"][10] += 0.01
    (tmp_path / "golden.json").write_text(json.dumps(data))
    result = smoke_test(served[0], load_golden(tmp_path))
    assert not result.passed
    assert result.label_mismatches == 0 and 0.0099 < result.max_abs_diff < 0.0101
    assert f"(signal {data['ids'][10]}: " in result.message
    assert "> tolerance 0.0001" in result.message


@pytest.mark.slow
def test_a_server_of_another_model_fails_naming_the_version(project, served):
    root, tag, other = project
    result = smoke_test(served[0], load_golden(entry_dir(root, other)))
    assert not result.passed
    assert result.model_versions == [tag.split(":")[1]]
    assert (
        f"the server answers with model version {tag.split(':')[1]}, the golden set is "
        f"{other}'s" in result.message
    )
    assert result.label_mismatches == 12  # "always" flags the healthy signals too


@pytest.mark.slow
def test_http_problems_fail_without_raising(project, served):
    root, tag, _ = project
    golden = load_golden(entry_dir(root, tag))
    closed = smoke_test(f"http://127.0.0.1:{free_port()}", golden, timeout_s=5)
    assert not closed.passed and "ConnectError" in closed.message
    short = dataclasses.replace(golden, signals=[[0.0, 1.0]] + golden.signals[1:])
    refused = smoke_test(served[0], short)
    assert not refused.passed
    assert "HTTP 400" in refused.message and "signals.0" in refused.message
    assert refused.as_dict()["max_abs_diff"] is None


def test_a_missing_golden_set_says_how_to_make_it(tmp_path):
    with pytest.raises(GoldenError, match=r"re-register: `dvc repro -f -s register`"):
        load_golden(tmp_path)
    (tmp_path / "golden.json").write_text("{not json")
    with pytest.raises(GoldenError, match=r"not valid JSON .*dvc repro -f -s register"):
        load_golden(tmp_path)
