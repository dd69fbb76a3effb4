"""Fixtures for any test module: tiny signals, temporary copies of the project, the session's
tiny pipeline and deploy project, a real PostgreSQL server.

The helpers behind them live in tests/helpers/ (imported as `helpers.<module>`); the serving
fixtures and the two-worker scheduler are plugin modules there, registered below.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

# the helpers' asserts explain themselves like the tests' own (before anything imports them)
pytest.register_assert_rewrite("helpers")

from helpers.cli import git_commit, run, store_env  # noqa: E402
from helpers.gate_project import deploy_project, make_project  # noqa: E402
from helpers.paths import REPO  # noqa: E402
from helpers.postgres import PostgresServer, find_pg_bin, running_postgres  # noqa: E402
from helpers.projects import TINY_PIPELINE, copy_project  # noqa: E402
from helpers.signals import make_signals  # noqa: E402

pytest_plugins = ["helpers.serving_fixtures", "helpers.xdist_groups"]


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One `dvc repro` of the whole pipeline on tiny data (TINY_PIPELINE), its store in the
    project: (the template's root, that run). Modules that change the project take a copy
    (`copy_tree`); running the pipeline once per session instead of once per module saves
    about 80 s each."""
    root = copy_project(tmp_path_factory.mktemp("tiny-pipeline") / "proj", TINY_PIPELINE)
    first = run(["dvc", "repro"], root, **store_env(root))
    return root, first


def _make_deploy_template(root: Path) -> tuple[Path, dict[str, str]]:
    make_project(root, bento=True)
    shutil.copytree(REPO / "deploy", root / "deploy")
    run(["git", "add", "-A"], root)
    git_commit(root, "project with bentofile")
    return root, deploy_project(root)


@pytest.fixture(scope="session")
def deploy_template(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A gate project with the bentofile and deploy/ folder, three registered versions
    (helpers/gate_project.deploy_project): (the template's root, {registry version: model
    version}). Copy it (`copy_tree`) before use: the deploy and container tests change it.
    Built once per run, also under xdist: its users (the deploy group; test_container, in the
    podman group) run on different workers, so the first to ask builds it (about 35 s) in the
    run's folder that both workers share, while the other waits on the lock."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process: its own temporary folder
        return _make_deploy_template(tmp_path_factory.mktemp("deploy-template") / "proj")
    shared = tmp_path_factory.getbasetemp().parent / "deploy-template"  # this run's, every worker's
    done = shared / "versions.json"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on failure
        if not done.is_file():
            shutil.rmtree(shared, ignore_errors=True)  # what a worker that failed half-way left
            _, versions = _make_deploy_template(shared / "proj")
            done.write_text(json.dumps(versions))
    return shared / "proj", json.loads(done.read_text())


@pytest.fixture
def signals() -> pd.DataFrame:
    """helpers.signals.make_signals(): 40 healthy signals and 12 faults."""
    return make_signals()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project on tiny data (helpers.projects.copy_project)."""
    return copy_project(tmp_path / "proj")


# ---------------------------------------------------------------- a real PostgreSQL server
@pytest.fixture(scope="session")
def postgres_instance() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (helpers/postgres.py); skipped only without
    binaries."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): make system")
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server(postgres_instance) -> str:
    """postgresql://faultwatch:...@127.0.0.1:PORT/faultwatch, shared by the session."""
    return postgres_instance.url()


@pytest.fixture
def postgres_url(postgres_instance) -> str:
    """A new empty database on the session's server, for one test."""
    return postgres_instance.create_database()
