"""Fixtures of real `bentoml serve` processes, for any test module (registered by
tests/conftest.py): a model store, servers of it on free ports, and a packaged project.

Module-scoped: each module that asks gets its own store and servers. Every server is started
through `started`, which stops its whole process group when the module ends, failed or not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli import run
from .paths import REPO, VENV_BIN
from .ports import free_port
from .processes import started
from .projects import copy_project
from .ready import wait_ready
from .serving import (
    DRAIN_BYTES,
    LOG_TIMEOUT_S,
    THRESHOLD,
    save_spike_failing_model,
    save_tiny_model,
    serve_cmd,
    server_env,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[tuple[Path, Path, str]]:
    """(BENTOML_HOME, the saved model folder, the store tag) with one imported model."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from faultwatch.serve.store import import_model

    tmp = tmp_path_factory.mktemp("store")
    home = tmp / "bentoml"
    (home / "models").mkdir(parents=True)
    model_dir = save_tiny_model(tmp / "model")
    # point this process's model store at the temporary home, whatever BENTOML_HOME says
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        tag = import_model(
            model_dir,
            THRESHOLD,
            labels={"stage": "test"},
            metadata={"input_schema": {"min_length": 16, "max_length": 2000}},
        )
        yield home, model_dir, str(tag)
    finally:
        BentoMLContainer.model_store.reset()


@pytest.fixture(scope="module")
def spike_model(store, tmp_path_factory) -> tuple[Path, str]:
    """(folder, store tag) of `save_spike_failing_model`, in the same store."""
    from faultwatch.serve.store import import_model

    model_dir = save_spike_failing_model(tmp_path_factory.mktemp("spike") / "model")
    meta = {"input_schema": {"min_length": 16, "max_length": 2000}}
    return model_dir, str(import_model(model_dir, THRESHOLD, metadata=meta))


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    """A `bentoml serve` of the service; yields (base url, prediction log path, process)."""
    home, _, tag = store
    tmp = tmp_path_factory.mktemp("server")
    log_path = tmp / "predictions.sqlite"
    port = free_port()
    env = server_env(
        home,
        tag,
        log_path,
        FAULTWATCH_PREDICTION_LOG_TIMEOUT=str(LOG_TIMEOUT_S),
        FAULTWATCH_MAX_DRAIN_BYTES=str(DRAIN_BYTES),
    )
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), REPO, env, tmp / "server.log") as proc:
        wait_ready(url, proc, tmp / "server.log")
        yield url, log_path, proc


@pytest.fixture(scope="module")
def client(server):
    """An httpx client of `server`."""
    import httpx

    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def spike_server(store, spike_model, tmp_path_factory):
    """A server of `save_spike_failing_model`; yields (url, prediction log)."""
    tmp = tmp_path_factory.mktemp("spike_server")
    port = free_port()
    log_path = tmp / "predictions.sqlite"
    env = server_env(store[0], spike_model[1], log_path, FAULTWATCH_PREDICTION_LOG_TIMEOUT="20")
    url = f"http://127.0.0.1:{port}"
    with started(serve_cmd(port), REPO, env, tmp / "server.log") as proc:
        wait_ready(url, proc, tmp / "server.log")
        yield url, log_path


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> tuple[Path, dict]:
    """A project copy whose store holds a registered model and the bento the package stage
    built from it; (root, reports/package.json)."""
    tmp = tmp_path_factory.mktemp("packaged")
    root = copy_project(tmp / "proj")
    model_dir = save_tiny_model(tmp / "model")
    home = {"BENTOML_HOME": str(root / ".bentoml")}
    # the provenance `package` checks: trained for this project's data source and fault class
    meta = {
        "input_schema": {"min_length": 16, "max_length": 2000},
        "data": {"source": "data/raw/tiny.tsv", "positive_label": "fault"},
    }
    code = (
        "from faultwatch.serve.store import import_model; "
        f"print(import_model({str(model_dir)!r}, {THRESHOLD}, metadata={meta!r}))"
    )
    tag = run([sys.executable, "-c", code], root, **home).stdout.strip().splitlines()[-1]
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / "register.json").write_text(json.dumps({"model_tag": tag}))
    run([str(VENV_BIN / "faultwatch"), "package"], root, **home)
    return root, json.loads((root / "reports" / "package.json").read_text())
