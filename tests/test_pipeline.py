"""`dvc repro` in a temporary copy of the repo on tiny data; pre-commit on a dirty notebook."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import nbformat
import pytest
import yaml
from helpers.cli import run, store_env, tool_env
from helpers.paths import REPO, VENV_BIN

# module fixtures train models or run the pipeline: more than the default per-test timeout
pytestmark = pytest.mark.timeout(600)


def stage_runs(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def only(project, *stages):
    """Keep just `stages` in dvc.yaml (later issues add stages this test does not need)."""
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    spec["stages"] = {k: v for k, v in spec["stages"].items() if k in stages}
    spec.pop("plots", None)
    (project / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.mark.slow
def test_repro_twice_second_is_a_noop_and_metrics_show(project):
    only(project, "prepare", "eda")
    first = run(["dvc", "repro"], project)
    assert stage_runs(first.stdout) == ["prepare", "eda"]
    for f in (
        "data/prepared/train.parquet",
        "reports/notebooks/01_eda.ipynb",
        "reports/notebooks/01_eda.html",
    ):
        assert (project / f).stat().st_size > 0
    second = run(["dvc", "repro"], project)
    assert stage_runs(second.stdout) == []
    assert "Data and pipelines are up to date" in second.stdout
    eda = json.loads((project / "reports/metrics/eda.json").read_text())
    assert (eda["n_signals"], eda["n_fault"], eda["n_classes"]) == (52, 12, 3)
    assert eda["always_healthy_accuracy"] == pytest.approx(40 / 52, abs=1e-6)

    # bad data: prepare fails with a clear error and every earlier output stays as it was
    before = {p: p.read_bytes() for p in (project / "data/prepared").glob("*.parquet")}
    (project / "data/raw/tiny.tsv").write_text("fault\t1.0\tnan\t2.0\n")
    bad = run(["dvc", "repro"], project, check=False)
    assert bad.returncode != 0
    assert "data/raw/tiny.tsv: row 1: rule 'values_finite'" in bad.stderr + bad.stdout
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.slow
def test_a_repro_killed_inside_train_keeps_what_came_before_and_the_next_one_finishes(project):
    """SIGKILL to `dvc repro` and its stage's processes (a crash, an OOM kill) while train
    runs: prepare's and augment's outputs stay recorded and intact, and the next `dvc repro`
    runs train alone and succeeds (no stale lock or half-written output in its way)."""
    only(project, "prepare", "augment", "train")
    proc = subprocess.Popen(
        [str(VENV_BIN / "dvc"), "repro"],
        cwd=project,
        env=tool_env(**store_env(project)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the stage's processes die with it
    )
    said = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            said.append(line)
            if line.startswith("Running stage 'train'"):
                break
        time.sleep(4)  # inside the stage: the notebook's kernel at work
        assert proc.poll() is None, "".join(said)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert stage_runs("".join(said)) == ["prepare", "augment", "train"], "".join(said)
    kept = run(["dvc", "status", "prepare", "augment"], project, **store_env(project))
    assert "Data and pipelines are up to date" in kept.stdout, kept.stdout
    again = run(["dvc", "repro"], project, **store_env(project))
    assert stage_runs(again.stdout) == ["train"], again.stdout
    done = run(["dvc", "status"], project, **store_env(project))
    assert "Data and pipelines are up to date" in done.stdout, done.stdout


def test_precommit_strips_a_notebook_with_outputs(tmp_path):
    repo = tmp_path / "r"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / ".pre-commit-config.yaml", repo)
    shutil.copy(REPO / "pyproject.toml", repo)
    run(["git", "init", "-q"], repo)
    (repo / ".venv").symlink_to(VENV_BIN.parent)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1\nx", metadata={"tags": ["parameters"]}, id="c0")
    cell.execution_count = 3
    cell.outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=3)
    ]
    nb.cells = [cell]
    path = repo / "notebooks" / "dirty.ipynb"
    nbformat.write(nb, path)
    run(["git", "add", "-A"], repo)
    proc = run(
        [".venv/bin/pre-commit", "run", "--files", "notebooks/dirty.ipynb"], repo, check=False
    )
    assert proc.returncode == 1 and "files were modified by this hook" in proc.stdout
    cleaned = nbformat.read(path, 4)
    assert cleaned.cells[0].outputs == [] and cleaned.cells[0].execution_count is None
    run(["git", "add", "-A"], repo)
    assert (
        run([".venv/bin/pre-commit", "run", "--files", "notebooks/dirty.ipynb"], repo).returncode
        == 0
    )


def test_precommit_refuses_a_notebook_without_parameters_cell(tmp_path):
    from faultwatch.hooks import check_parameters_cell

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", id="c0")])
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert (
        "expected one code cell tagged 'parameters', found 0"
        in check_parameters_cell([str(tmp_path / "n.ipynb")])[0]
    )


def test_every_notebook_in_git_is_stripped_and_has_parameters():
    from faultwatch.hooks import check_parameters_cell

    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert notebooks and check_parameters_cell([str(p) for p in notebooks]) == []
    for p in notebooks:
        nb = nbformat.read(p, 4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells), p


def test_test_projects_leave_out_the_users_own_data(tmp_path):
    """After the README's own-data steps (`dvc add data/raw/pumps.tsv`, committed), the tests'
    projects must not carry the user's `.dvc` file or data: they would fail to reproduce it."""
    from helpers.cli import git_commit
    from helpers.projects import tracked_project_files

    repo = tmp_path / "r"
    (repo / "data/raw").mkdir(parents=True)
    (repo / "notebooks").mkdir()
    for name in ("dvc.yaml", "params.yaml", "notebooks/01_eda.ipynb", "data/raw/.gitignore"):
        (repo / name).write_text("x\n")
    (repo / "data/raw/pumps.tsv.dvc").write_text("outs:\n- path: pumps.tsv\n")
    (repo / "models.dvc").write_text("outs:\n- path: models\n")
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    git_commit(repo, "own data")
    assert tracked_project_files(repo) == ["dvc.yaml", "notebooks/01_eda.ipynb", "params.yaml"]
