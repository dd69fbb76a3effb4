"""`faultwatch deploy` with the prediction log in a real PostgreSQL server (helpers/postgres.py).

FAULTWATCH_PREDICTION_LOG=postgresql://... reaches both colours unchanged (a URL made into a
path would write a SQLite file named after it), both write the same tables, the canary's
analysis reads its figures from PostgreSQL, and what deploy and serve print masks the password.
One deployment for the module (`pg_deployed`: up v0.0.1, then the tests in order), stopped
with every process it started, also on failure. The first tests need no server: the read-only
queries of the analysis on both backends, and the container runtime's refusal of a loopback URL.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from helpers.cli import fw
from helpers.gate_project import LOAD_RATE, bodies, kill_leftover_deployment
from helpers.ports import free_port
from helpers.postgres import PASSWORD
from helpers.projects import copy_tree

from faultwatch.deploy.analysis import DeployParams, analyse, shadow_agreement, window_rows
from faultwatch.deploy.containers import check_reachable
from faultwatch.deploy.load import Load
from faultwatch.deploy.state import DeployError
from faultwatch.serve.predlog import (
    InputSummary,
    LoggedPrediction,
    PredictionLogError,
    open_log,
    read_only,
    read_predictions,
    resolve_target,
    show_target,
)
from faultwatch.serve.settings import ServeSettings


# ---------------------------------------------------------------------- no deployment
@pytest.fixture(params=["sqlite", "postgresql"])
def log_target(request, tmp_path) -> Path | str:
    """An empty prediction log of each backend: a SQLite path, a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "predictions.sqlite"
    return request.getfixturevalue("postgres_url")


def entry(request_id: str, label: str, probability: float, role: str, ms: float):
    return LoggedPrediction(
        endpoint="/predict",
        model_version="m",
        summary=InputSummary.of([0.0, 1.0]),
        probability=probability,
        label=label,
        is_fault=label == "fault",
        threshold=0.5,
        latency_ms=ms,
        batch_size=1,
        request_id=request_id,
        role=role,
    )


def test_the_analysis_queries_give_the_same_figures_on_both_backends(log_target):
    t0 = time.time()
    blue, green = open_log(log_target, colour="blue"), open_log(log_target, colour="green")
    try:
        # blue live: 4 answers, all fault; green shadow twins of them: 3 of 4 labels agree
        blue.append(entry(f"r{i}", "fault", 0.9, "live", 10.0 + i) for i in range(4))
        green.append(
            entry(f"r{i}", "fault" if i < 3 else "healthy", 0.6, "shadow", 50.0) for i in range(4)
        )
        # green live: 3 answers (one fault), a 503 and a 422 it refused
        green.append(
            entry(f"g{i}", ["fault", "healthy"][i > 0], 0.3, "live", 5.0) for i in range(3)
        )
        # and a dead sensor's signal, answered unscored: answered, but no fault nor health
        green.append([entry("g3", "unscored", 0.9, "live", 5.0)])
        green.reject("/predict", 503, "overloaded", "busy", 10)
        green.reject("/predict", 422, "finite_number", "nan", 10)
    finally:
        blue.close()
        green.close()
    t1 = time.time()
    mine = window_rows(log_target, "green", t0, t1)
    assert mine == {
        "latencies": [5.0, 5.0, 5.0, 5.0],
        "faults": 1,
        "answered": 4,
        "scored": 3,
        "nonfinite": 0,
        "errors": 1,
    }
    assert window_rows(log_target, "blue", t0, t1)["latencies"] == [10.0, 11.0, 12.0, 13.0]
    # the canary's fault rate is over what the model scored: 1 of 3, not 1 of 4
    result = analyse(log_target, "green", "blue", t0, DeployParams(min_requests=1), 1 / 3, until=t1)
    rate = next(c for c in result.checks if c.name == "fault_rate_delta")
    assert rate.value == pytest.approx(0.0) and "(1 unscored answers left out)" in rate.detail
    assert window_rows(log_target, "green", t1 + 1, t1 + 2)["answered"] == 0
    agreement = shadow_agreement(log_target, "blue", "green", t0)
    assert agreement["shadow_answers"] == 4 and agreement["joined"] == 4
    assert agreement["same_label"] == 0.75
    assert agreement["mean_abs_diff"] == pytest.approx(0.3)
    with read_only(log_target) as select:  # read-only: no write goes through
        with pytest.raises(PredictionLogError, match="(?i)read.?only"):
            select("DELETE FROM predictions")
        assert select("SELECT count(*) FROM predictions")[0][0] == 12


def test_the_realised_f1_the_service_exports_reads_both_backends(log_target):
    """faultwatch_realised_f1 comes from label_counts: the labels joined to live answers."""
    from faultwatch.serve.metrics import LabelCounts, label_counts

    log = open_log(log_target, colour="blue")
    try:
        # predicted: fault, fault, healthy, healthy; true: fault, healthy, fault, healthy
        predicted = ["fault", "fault", "healthy", "healthy"]
        rows = []
        for i, label in enumerate(predicted):
            e = entry(f"r{i}", label, 0.9 if label == "fault" else 0.1, "live", 5.0)
            rows.append(dataclasses.replace(e, prediction_id=f"{i:032x}"))
        log.append(rows)
        truth = ["fault", "healthy", "fault", "healthy"]
        log.add_labels([(f"{i:032x}", t) for i, t in enumerate(truth)])
    finally:
        log.close()
    counts = label_counts(log_target, "fault")
    assert counts == {"m": LabelCounts(n=4, tp=1, fp=1, fn=1)}
    assert counts["m"].f1 == pytest.approx(0.5)


def test_no_sqlite_log_yet_is_an_empty_window_and_creates_no_file(tmp_path):
    missing = tmp_path / "serving" / "predictions.sqlite"
    assert window_rows(missing, "green", 0, time.time())["answered"] == 0
    assert shadow_agreement(missing, "blue", "green")["shadow_answers"] == 0
    assert not missing.parent.exists()


def test_a_url_stays_a_string_and_is_shown_masked(tmp_path):
    url = f"postgresql://faultwatch:{PASSWORD}@db.example:5432/faultwatch"
    assert resolve_target(url, tmp_path) == url
    assert resolve_target(None, tmp_path) == tmp_path / "reports/serving/predictions.sqlite"
    assert resolve_target("rel.sqlite", tmp_path) == Path("rel.sqlite").resolve()
    assert show_target(url) == "postgresql://faultwatch:***@db.example:5432/faultwatch"
    shown = ServeSettings.from_env({"FAULTWATCH_PREDICTION_LOG": url}).as_dict()
    assert shown["FAULTWATCH_PREDICTION_LOG"] == show_target(url)
    assert ServeSettings.from_env({"FAULTWATCH_PREDICTION_LOG": url}).prediction_log == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@127.0.0.1:5432/db",
        "postgresql://u:pw@localhost/db",
        "postgres://u:pw@[::1]:5432/db",
        "postgresql://u:pw@127.0.0.2/db",
        "postgresql:///db",  # the default unix socket
        "postgresql://u@db.example/db?host=/var/run/postgresql",
        "postgresql://u:pw@db.example/db?host=127.0.0.1",
    ],
)
def test_containers_refuse_a_database_on_this_machines_loopback(url):
    with pytest.raises(DeployError) as e:
        check_reachable(url)
    assert "cannot reach" in str(e.value) and "--runtime process" in str(e.value)
    assert ":pw@" not in str(e.value)


@pytest.mark.parametrize(
    "target",
    ["postgresql://u:pw@db.example:5432/db", "postgresql://u:pw@10.88.0.1/db", "/tmp/p.sqlite"],
)
def test_containers_take_a_reachable_database_or_a_file(target):
    check_reachable(target)


# ---------------------------------------------------------------------- one deployment
@pytest.fixture(scope="module")
def pg_deployed(tmp_path_factory, deploy_template, postgres_instance):
    """The deploy project with FAULTWATCH_PREDICTION_LOG in a new PostgreSQL database and
    `deploy up v0.0.1` done: yields (root, router url, {registry version: model version}, the
    database URL); `deploy down` and a kill of every recorded pid on leaving."""
    db = postgres_instance.create_database()
    root = copy_tree(deploy_template[0], tmp_path_factory.mktemp("deploy-pg") / "proj")
    port = free_port()
    try:
        pg(root, db, "deploy", "up", "v0.0.1", "--port", str(port))
        yield root, f"http://127.0.0.1:{port}", dict(deploy_template[1]), db
    finally:
        pg(root, db, "deploy", "down", check=False)
        kill_leftover_deployment(root)


def pg(root: Path, db: str, *args: str, check: bool = True):
    """`faultwatch ARGS` with the prediction log in the database `db`."""
    return fw(root, *args, check=check, FAULTWATCH_PREDICTION_LOG=db)


def sqlite_default(root: Path) -> Path:
    return root / "reports" / "serving" / "predictions.sqlite"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_canary_of_two_colours_is_logged_and_analysed_in_postgres(pg_deployed):
    root, url, versions, db = pg_deployed
    pg(root, db, "deploy", "stage", "v0.0.2")
    load = Load(url, bodies(), concurrency=8, total=None, duration_s=90, rate=LOAD_RATE).start()
    try:
        r = pg(root, db, "deploy", "canary", "--steps", "50", "--interval", "4", check=False)
    finally:
        load.stop()
        load.join(60)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "analysis of green: PASS" in r.stdout and "canary done at 50 %" in r.stdout
    assert not load.failed(), load.failed()[:5]
    assert {a.model_version for a in load.answers} == {versions["v0.0.1"], versions["v0.0.2"]}

    # both colours wrote the PostgreSQL tables; no SQLite file appeared anywhere near
    logged = read_predictions(db, roles=None)
    by_colour = logged[logged.role == "live"].groupby("colour").model_version.unique()
    assert set(by_colour["blue"]) == {versions["v0.0.1"]}
    assert set(by_colour["green"]) == {versions["v0.0.2"]}
    assert set(logged.role) >= {"live", "smoke"}
    assert not sqlite_default(root).exists() and not list(root.rglob("postgresql:*"))

    # the analysis counted exactly green's live rows of its window in PostgreSQL
    a = json.loads(pg(root, db, "deploy", "status", "--json").stdout)["last_analysis"]
    assert a["verdict"] == "pass" and a["colour"] == "green"
    with read_only(db) as select:
        counted = select(
            "SELECT count(*) FROM predictions WHERE colour = 'green' AND role = 'live'"
            " AND time >= ? AND time <= ?",
            (a["since"], a["until"]),
        )[0][0]
        green_live = select(
            "SELECT count(*) FROM predictions WHERE colour = 'green' AND role = 'live'"
        )[0][0]
    assert counted >= 20 and a["reason"] == f"{counted} answers in bounds"

    # `deploy analyse` over a window holding all of green's live answers: the same log
    r = pg(root, db, "deploy", "analyse", "--window", "600", check=False)
    assert "analysis of green: PASS" in r.stdout, r.stdout + r.stderr
    assert f"{green_live} answers in bounds" in r.stdout


@pytest.mark.slow
def test_status_serve_and_down_show_the_url_masked(pg_deployed):
    root, url, versions, db = pg_deployed
    masked = show_target(db)
    assert ":***@127.0.0.1:" in masked
    text = pg(root, db, "deploy", "status").stdout
    assert f"prediction log: {masked}" in text and PASSWORD not in text
    as_json = pg(root, db, "deploy", "status", "--json").stdout
    assert json.loads(as_json)["prediction_log"] == masked and PASSWORD not in as_json

    shown = pg(root, db, "serve", "v0.0.1", "--show-config")
    config = json.loads(shown.stdout)
    assert config["prediction_log"] == masked
    assert config["settings"]["FAULTWATCH_PREDICTION_LOG"] == masked
    assert PASSWORD not in shown.stdout + shown.stderr

    # the database down: status still answers, says why the agreement is missing, masked
    gone = f"postgresql://faultwatch:{PASSWORD}@127.0.0.1:{free_port()}/faultwatch"
    text = pg(root, gone, "deploy", "status").stdout
    assert "shadow agreement: not read" in text and "could not connect" in text
    assert "router" in text and PASSWORD not in text

    down = pg(root, db, "deploy", "down").stdout
    assert f"the prediction log stays in {masked}" in down and PASSWORD not in down
