"""A person in the loop, on a real service: a `bentoml serve` of a model with the tests'
labeller's token (helpers.serving.labellers_file) logs every raw signal of real traffic;
`faultwatch review` lists what waits for a label, faults first; notebooks/06_review.ipynb, run
by the notebook runner, shows the queue beside the nearest training examples and sends its
labels to /feedback under the labeller's token, and the log records who gave them; a token
the service does not know, an id it never answered and a second label are refused by name.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from helpers.cli import fw
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.processes import started
from helpers.ready import wait_ready
from helpers.serving import LABELLER, LABELLER_TOKEN, labellers_file, serve_cmd, server_env
from helpers.signals import make_signals

from faultwatch.monitor.labelling import CannotLabel, LabelError, Labeller
from faultwatch.serve import predlog

pytestmark = pytest.mark.timeout(300)
THRESHOLD = 0.4547


def _log_features_only_row(log_path: Path, pid: str) -> None:
    """A healthy answer logged as a classical model logs it (features, no embedding), by a
    version whose model is not here: its neighbours must come from the features."""
    from faultwatch.features import monitor_features

    signal = np.sin(np.linspace(0, 12, 64))
    log = predlog.open_log(log_path)
    try:
        log.append(
            [
                predlog.LoggedPrediction(
                    endpoint="predict",
                    model_version="classical-v9",
                    summary=predlog.InputSummary.of(signal),
                    probability=0.01,
                    label="healthy",
                    is_fault=False,
                    threshold=THRESHOLD,
                    latency_ms=1.0,
                    batch_size=1,
                    prediction_id=pid,
                    features=monitor_features([signal])[0].tolist(),
                )
            ]
        )
    finally:
        log.close()


@pytest.fixture(scope="module")
def project(store, tmp_path_factory):
    """A project folder with the review notebook, a tiny training split, the store's model as
    models/fault_cnn (register.json names it), a server of it logging every raw signal, and
    traffic it answered: (root, url, log path, answers by prediction_id)."""
    from faultwatch.model.io import read_meta
    from faultwatch.serve.store import import_model

    home, model_dir, _ = store
    # the tiny model's probabilities lie within 0.451-0.456 on these signals: a threshold
    # between them makes it answer both ways
    schema = {"input_schema": {"min_length": 16, "max_length": 2000}}
    tag = str(import_model(model_dir, THRESHOLD, metadata=schema))
    tmp = tmp_path_factory.mktemp("review")
    root = tmp / "proj"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks/06_review.ipynb", root / "notebooks")
    train = make_signals(20, 6, seed=1)
    train["y"] = (train["label"] == "fault").astype(int)
    (root / "data/prepared").mkdir(parents=True)
    train.assign(values=train["values"].map(list)).to_parquet(root / "data/prepared/train.parquet")
    shutil.copytree(model_dir, root / "models/fault_cnn")
    (root / "reports").mkdir()
    sha = read_meta(model_dir)["weights_sha256"]
    (root / "reports/register.json").write_text(
        json.dumps({"model_tag": tag, "weights_sha256": sha})
    )
    log_path = root / "reports/serving/predictions.sqlite"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    params = {"last": "1h", "url": url, "labeller": LABELLER, "token_file": str(labellers_file())}
    (root / "params.yaml").write_text(yaml.safe_dump({"review": params}))
    env = server_env(home, tag, log_path, FAULTWATCH_LOG_SIGNALS="1")
    with started(serve_cmd(port), REPO, env, tmp / "server.log") as proc:
        wait_ready(url, proc, tmp / "server.log")
        signals = make_signals(6, 3, seed=2)["values"].map(list).tolist()[:8]
        r = httpx.post(f"{url}/predict_batch", json={"signals": signals}, timeout=60)
        assert r.status_code == 200, r.text
        answers = {a["prediction_id"]: a for a in r.json()["predictions"]}
        extra = "f" * 32
        _log_features_only_row(log_path, extra)
        yield root, url, log_path, answers, extra


def _waiting(root: Path) -> dict:
    return json.loads(fw(root, "review", "--json").stdout)


def test_faultwatch_review_lists_what_waits_faults_first(project):
    root, _, log_path, answers, extra = project
    out = _waiting(root)
    assert out["n_predictions"] == out["n_waiting"] == len(answers) + 1
    listed = out["waiting"]
    assert {w["prediction_id"] for w in listed} == {*answers, extra}
    faults = [w for w in listed if w["answer"] == "fault"]
    assert faults, "the traffic gave no fault answer: the ordering is not tested"
    assert listed[: len(faults)] == faults  # faults first ...
    probabilities = [w["probability"] for w in faults]
    assert probabilities == sorted(probabilities, reverse=True)  # ... most probable first
    text = fw(root, "review", "--limit", "2").stdout
    lines = text.splitlines()
    assert lines[0].endswith(
        f"{len(answers) + 1} predictions, 0 labelled, {len(answers) + 1} waiting for a label "
        f"({len(faults)} called faults)"
    )
    assert lines[1].split() == ["prediction_id", "time", "(UTC)", "group", "version", "p"] + [
        "answer",
        "request_id",
    ]
    assert lines[2].startswith(faults[0]["prediction_id"])
    assert f"... and {len(answers) - 1} more" in text

    # a model group: only the rows its model answered (the project's own, fault_cnn, also
    # owns rows logged without a group)
    own = json.loads(fw(root, "review", "--group", "fault_cnn", "--json").stdout)
    assert own["waiting"] == out["waiting"] and own["n_predictions"] == out["n_predictions"]
    other = json.loads(fw(root, "review", "--group", "p-100", "--json").stdout)
    assert other["n_predictions"] == other["n_waiting"] == 0 and other["waiting"] == []


def test_the_notebook_labels_under_the_labellers_token(project):
    from faultwatch.notebook import run_notebook

    root, _, log_path, answers, extra = project
    fault = next(p for p, a in answers.items() if a["is_fault"])
    healthy = next(p for p, a in answers.items() if not a["is_fault"])
    labels = {fault: 1, healthy: "healthy"}
    run = run_notebook("notebooks/06_review.ipynb", root, overrides={"labels": labels}, html=False)
    assert run.scraps["labels_sent"] == [
        {"prediction_id": fault, "outcome": "recorded"},
        {"prediction_id": healthy, "outcome": "recorded"},
    ]
    assert run.scraps["window"]["n_waiting"] == len(answers) + 1
    assert extra in run.scraps["shown"] and fault in run.scraps["shown"]
    with sqlite3.connect(log_path) as db:
        rows = db.execute("SELECT prediction_id, label, labeller, source FROM labels").fetchall()
    assert sorted(rows) == sorted(
        [(fault, "fault", LABELLER, "06_review"), (healthy, "healthy", LABELLER, "06_review")]
    )
    nb = json.loads(run.notebook.read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    version = answers[fault]["model_version"]
    assert f"{version}: nearest by the model's embedding (" in text
    assert "classical-v9: no model of version classical-v9 here" in text  # and by features
    images = [
        o for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 2
    # labelled: no longer waiting
    out = _waiting(root)
    assert out["n_labelled"] == 2 and out["n_waiting"] == len(answers) - 1
    assert {fault, healthy}.isdisjoint(w["prediction_id"] for w in out["waiting"])


def test_a_token_the_service_does_not_know_and_bad_labels_are_refused_by_name(project, tmp_path):
    root, url, log_path, answers, extra = project
    wrong = tmp_path / "token"
    wrong.write_text("not-the-testers-token-0123456789\n")
    stranger = Labeller(url, token_file=str(wrong), classes=("healthy", "fault"), root=root)
    with pytest.raises(CannotLabel, match=r"refused the credential \(403 credential_refused\)"):
        stranger.send({extra: 0})
    with sqlite3.connect(log_path) as db:
        refused = db.execute(
            "SELECT reason FROM rejected WHERE endpoint LIKE '%feedback'"
        ).fetchall()
        assert ("credential_refused",) in refused
        assert db.execute(
            "SELECT count(*) FROM labels WHERE prediction_id = ?", (extra,)
        ).fetchone() == (0,)
    nobody = Labeller(url, labeller="nobody", token_file=str(labellers_file()), root=root)
    with pytest.raises(CannotLabel, match=r"review.labeller: 'nobody' has no token in .*tester"):
        nobody.label(extra, "healthy")
    me = Labeller(url, LABELLER, str(labellers_file()), ("healthy", "fault"), root=root)
    with pytest.raises(
        LabelError,
        match=r"^0{32}: not in the prediction log of the service.*404 unknown_prediction",
    ):
        me.label("0" * 32, 1)
    with pytest.raises(LabelError, match=r"'s1': not a prediction_id \(32 hex digits"):
        me.label("s1", 1)
    with pytest.raises(
        LabelError, match=r"^f{32}: 'maybe' is not a class of model .*\(422 not_a_class\)"
    ):
        me.label(extra, "maybe")
    # one good label recorded, a second for the same id named: the rest of a batch still goes
    assert me.label(extra, 0) == f"{extra}: healthy, recorded as {LABELLER}'s"
    with pytest.raises(LabelError, match=rf"1 of 1 labels refused.*{extra}: already labelled.*409"):
        me.send({extra: 1, "a" * 32: None})
    assert LABELLER_TOKEN not in repr(me)


def test_review_refuses_bad_input_naming_the_key(project, tmp_path):
    root = project[0]
    bad = fw(root, "review", "--since", "yesterday", check=False)
    assert bad.returncode == 1
    assert "review.since" in bad.stderr and "'yesterday' is not a time" in bad.stderr
    empty = fw(root, "review", "--since", "2030-01-02", "--until", "2030-01-01", check=False)
    assert empty.returncode == 1 and "review.since/review.last: the window is empty" in empty.stderr
    missing = tmp_path / "none.sqlite"
    gone = fw(root, "review", "--log", str(missing), check=False)
    assert gone.returncode == 1
    assert f"review.log: {missing}: no prediction log there yet" in gone.stderr
    assert not missing.exists()  # reading never creates a log
    limit = fw(root, "review", "--limit", "-1", check=False)
    assert limit.returncode == 2 and "--limit" in limit.stderr
