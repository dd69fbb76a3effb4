"""Either model family through register, promote, the evaluation and the report page.

The gate and register run for real (`faultwatch register` / `promote` in a project with a real
store and registry: helpers/gate_project.py) with a real classical model (faultwatch.model.
classical, fitted on the project's split) beside the crafted CNNs ("always": F1 0.375, recall
1; "never": F1 0). The evaluation notebook runs on tiny data with a classical candidate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.cli import git_commit, run
from helpers.gate_project import ALWAYS_F1, BASELINES, Cli, make_project, put_model, split_frame
from helpers.paths import REPO

from faultwatch import evaluate as ev

BASELINES_BY_NAME = {k.removeprefix("baseline_"): v for k, v in BASELINES.items()}
FOREST = {"n_estimators": 25, "feature_length": 64, "fft_bands": 4, "seed": 3}
DECISION = {
    "family": "classical",
    "requested": "best",
    "metric": "pr_auc",
    "validation": {"cnn": {"pr_auc": 0.88, "f1": 0.81}, "classical": {"pr_auc": 0.93, "f1": 0.9}},
    "reason": "classical: validation pr_auc 0.9300 against cnn 0.8800 (+0.0500)",
    "train_seconds": {"cnn": 41.2, "classical": 0.8},
}


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    c = Cli(make_project(tmp_path / "proj"), monkeypatch, capsys)
    yield c
    c.close()


def put_classical(root: Path, shuffle: int | None = None, threshold: float = 0.5) -> dict:
    """A classical model fitted on the project's split (its labels permuted with seed
    `shuffle`: a worse model), saved to models/fault_cnn with its evaluation on the test split
    (as put_model does for a CNN); returns its test figures."""
    from faultwatch.model import classical
    from faultwatch.model.io import load_model

    split = split_frame()
    y = split["y"].to_numpy()
    if shuffle is not None:
        y = np.random.default_rng(shuffle).permutation(y)
    fitted = classical.fit_classical(list(split["values"]), y, **FOREST)
    model_dir = root / "models/fault_cnn"
    shutil.rmtree(model_dir, ignore_errors=True)
    classical.save_classical(model_dir, fitted, {"positive_label": "fault"})
    p = load_model(model_dir).predict_proba(list(split["values"]))
    test = ev.fault_metrics(split["y"].to_numpy(), p, threshold)
    evaluation = {"test": test, "val": test, "threshold": threshold, **BASELINES}
    (root / "reports/evaluate").mkdir(parents=True, exist_ok=True)
    (root / "reports/evaluate/scores.json").write_text(json.dumps(evaluation, indent=2))
    (root / "reports/evaluate/threshold.json").write_text(json.dumps({"threshold": threshold}))
    return test


def commit_candidate(cli: Cli, what: str) -> str:
    """`faultwatch register` what models/fault_cnn holds, commit; returns its store tag."""
    cli("register")
    run(["git", "add", "-A"], cli.root)
    git_commit(cli.root, what)
    return json.loads((cli.root / "reports/register.json").read_text())["model_tag"]


def promoted(cli: Cli) -> dict:
    cli("promote", check=False)
    return json.loads((cli.root / "reports/promotion.json").read_text())


def set_family_decision(root: Path, decision: dict | None) -> None:
    path = root / ev.FAMILY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if decision is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(decision))


def add_family_scores(root: Path, family: str, candidate: dict, same: bool) -> None:
    """scores.json's `family`, as the evaluate notebook writes it (ev.family_record)."""
    path = root / "reports/evaluate/scores.json"
    scores = json.loads(path.read_text())
    classical = {**BASELINES["baseline_classical"]}
    scores["family"] = ev.family_record(family, "random_forest", candidate, classical, same)
    path.write_text(json.dumps(scores))


def test_the_rules_name_each_figures_family_once_a_classical_model_is_on_a_side():
    from faultwatch.promote import PromoteParams, decide

    cand, prod = {"f1": 0.9, "recall": 0.8}, {"f1": 0.8, "recall": 0.75}
    margin = PromoteParams(margin=0.1)
    d = decide(cand, prod, {}, margin, "production", ("classical", "cnn"))
    assert d.approved and d.reasons == [
        "f1 0.9000 (classical) >= production 0.8000 (cnn) + margin 0.1",
        "recall 0.8000 (classical) >= production 0.7500 (cnn)",
    ]
    d = decide(prod, cand, {}, PromoteParams(), "approved v0.0.2", ("cnn", "classical"))
    assert not d.approved and d.reasons == [
        "f1 0.8000 (cnn) does not beat approved v0.0.2 0.9000 (classical)",
        "recall 0.7500 (cnn) < approved v0.0.2 0.8000 (classical)",
    ]
    # a CNN against a CNN reads as it always did
    d = decide(cand, prod, {}, PromoteParams(), "production", ("cnn", "cnn"))
    assert d.reasons == ["f1 0.9000 beats production 0.8000", "recall 0.8000 >= production 0.7500"]


def test_a_classical_candidates_own_family_is_no_baseline_to_beat():
    kept, notes = ev.baselines_to_beat(BASELINES_BY_NAME, "classical")
    assert list(kept) == ["always_healthy"] and len(notes) == 1
    assert ev.baselines_to_beat(BASELINES_BY_NAME, "cnn") == (BASELINES_BY_NAME, [])
    other = {**BASELINES_BY_NAME, "classical": {"model": "gradient_boosting", "f1": 0.3}}
    assert ev.baselines_to_beat(other, "classical") == (other, [])  # another model: a yardstick


@pytest.mark.slow
def test_a_classical_candidate_is_gated_against_a_cnn_production_model(cli):
    from faultwatch import registry

    root = cli.root
    cli.register("always")  # a CNN: F1 0.375, recall 1
    assert promoted(cli)["decision"] == "approved"
    registry.set_production("v0.0.1", "deploy up (test)", root)

    # worse: a forest of permuted labels, scored by the gate on the same split as production
    worse = put_classical(root, shuffle=5)
    assert worse["f1"] < ALWAYS_F1 and worse["recall"] < 1.0  # what makes it worse
    commit_candidate(cli, "a worse classical model")
    d = promoted(cli)
    assert (d["version"], d["decision"], d["compared_with"]) == (
        "v0.0.2",
        "rejected",
        "production v0.0.1",
    )
    assert (d["family"], d["production_family"]) == ("classical", "cnn")
    assert d["reasons"] == [
        f"f1 {worse['f1']:.4f} (classical) does not beat production 0.3750 (cnn)",
        f"recall {worse['recall']:.4f} (classical) < production 1.0000 (cnn)",
    ]
    assert d["test"]["f1"] == worse["f1"] and d["production_test"]["f1"] == ALWAYS_F1

    # better: the forest of the true labels
    better = put_classical(root)
    assert better["f1"] == 1.0 and better["recall"] == 1.0
    tag = commit_candidate(cli, "a better classical model")
    d = promoted(cli)
    assert (d["version"], d["model_tag"], d["decision"]) == ("v0.0.3", tag, "approved")
    assert d["reasons"] == [
        "f1 1.0000 (classical) beats production 0.3750 (cnn)",
        "recall 1.0000 (classical) >= production 1.0000 (cnn)",
    ]
    # the registry names each version's family
    shown = {v: json.loads(cli("registry", "show", v).stdout) for v in ("v0.0.1", "v0.0.3")}
    assert shown["v0.0.1"]["family"] == "cnn" and shown["v0.0.3"]["family"] == "classical"
    assert shown["v0.0.3"]["record"]["production_family"] == "cnn"


@pytest.mark.slow
def test_a_classical_candidate_with_no_production_is_not_gated_on_its_own_family(cli):
    # the evaluate stage's classical baseline is this very model retrained: at best a tie
    put_classical(cli.root)
    commit_candidate(cli, "a classical model")
    d = promoted(cli)
    assert d["decision"] == "approved", d["reasons"]
    assert d["reasons"] == [
        "baseline classical is the candidate's own family (the same random_forest, retrained "
        "by the evaluate stage): not a yardstick",
        "f1 1.0000 (classical) beats baseline always_healthy (0.0000)",
    ]
    assert (d["family"], d["production_family"]) == ("classical", None)
    # a CNN after it: gated against the approved classical model, each figure named
    put_model(cli.root, "never")
    commit_candidate(cli, "a CNN that finds nothing")
    d = promoted(cli)
    assert d["decision"] == "rejected"
    assert "f1 0.0000 (cnn) does not beat approved v0.0.1 1.0000 (classical)" in d["reasons"]


@pytest.mark.slow
def test_register_records_the_family_and_the_train_stages_decision(cli):
    import bentoml

    root = cli.root
    put_classical(root)
    set_family_decision(root, DECISION)
    tag = commit_candidate(cli, "classical")
    record = json.loads((root / "reports/register.json").read_text())
    assert record["family"] == "classical" and record["labels"]["family"] == "classical"
    info = bentoml.models.get(tag).info
    assert info.labels["family"] == "classical"
    assert info.metadata["family"] == "classical"
    assert info.metadata["family_decision"] == DECISION
    promoted(cli)
    shown = json.loads(cli("registry", "show", "v0.0.1").stdout)
    assert shown["family"] == "classical"
    assert shown["provenance"]["family_decision"]["reason"] == DECISION["reason"]

    # a CNN from a project without the file (trained before train.family): cnn, no decision
    set_family_decision(root, None)
    tag = cli.register("always")
    assert json.loads((root / "reports/register.json").read_text())["family"] == "cnn"
    info = bentoml.models.get(tag).info
    assert info.labels["family"] == "cnn" and "family_decision" not in info.metadata


def page_of(root: Path) -> str:
    from faultwatch.report_page import build_page

    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    return build_page(root)


def section(page: str, start: str) -> str:
    part = page[page.index(start) :]
    return part[: part.index("</section>")]


@pytest.mark.slow
def test_the_report_page_shows_the_families_and_who_won(cli):
    from faultwatch import registry

    root = cli.root
    # a CNN candidate that won on validation: both families' test figures from the evaluation
    test = put_model(root, "always")
    add_family_scores(root, "cnn", test, same=False)
    cnn_won = {**DECISION, "family": "cnn", "reason": "cnn: validation pr_auc 0.9500 ..."}
    cnn_won["validation"] = {"cnn": {"pr_auc": 0.95, "f1": 0.9}, "classical": DECISION["validation"]["classical"]}  # fmt: skip
    set_family_decision(root, cnn_won)
    commit_candidate(cli, "cnn")
    models = section(page_of(root), '<section id="models">')
    assert "<dt>family</dt><dd><b>cnn</b></dd>" in models
    assert "requested <code>best</code>, chosen <b>cnn</b>: cnn: validation pr_auc 0.9500" in models
    assert "validation pr_auc: cnn 0.9500 against classical 0.9300 (+0.0200)" in models
    assert "test f1: cnn 0.3750 against classical 0.3000 (+0.0750)" in models
    assert "test pr_auc: cnn" in models and "against classical 0.5000" in models

    promoted(cli)
    registry.set_production("v0.0.1", "deploy up (test)", root)
    # a classical candidate that won on validation; production is the CNN
    test = put_classical(root)
    add_family_scores(root, "classical", test, same=True)
    set_family_decision(root, DECISION)
    commit_candidate(cli, "classical")
    page = page_of(root)
    models = section(page, '<section id="models">')
    candidate, production = models.split("<h3>Production (registry)</h3>")
    assert "<dt>family</dt><dd><b>classical</b></dd>" in candidate
    assert "<dt>family</dt><dd><b>cnn</b></dd>" in production
    assert f"chosen <b>classical</b>: {DECISION['reason']}" in candidate
    assert "validation pr_auc: classical 0.9300 against cnn 0.8800 (+0.0500)" in candidate
    assert "cnn on test: not kept by the train stage" in candidate
    summary = section(page, '<section id="summary">')
    assert "classical, test f1" in summary


def test_the_fleet_table_names_each_groups_family(tmp_path):
    from faultwatch.report_page.fleet_html import fleet_rows, fleet_section

    params = {"groups": {"pumps": {"description": "pumps"}, "fans": {}, "new": {}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    pumps = tmp_path / "groups/pumps/reports"
    pumps.mkdir(parents=True)
    (pumps / "register.json").write_text(json.dumps({"model_tag": "fault_cnn:a", "family": "classical"}))  # fmt: skip
    fans = tmp_path / "groups/fans/reports"
    (fans / "evaluate").mkdir(parents=True)
    (fans / "register.json").write_text(json.dumps({"model_tag": "fault_cnn:b"}))  # before families
    rows = {r["name"]: r for r in fleet_rows(tmp_path)}
    assert {n: r["family"] for n, r in rows.items()} == {
        "pumps": "classical",
        "fans": "cnn",
        "new": None,
    }
    html = fleet_section(list(rows.values()))
    assert "<th>family</th>" in html
    cells = {n: html[html.index(f"<b>{n}</b>") :].split("</tr>")[0] for n in rows}
    # after the collection's cell (none: "-"), the family's
    assert "<td>-</td><td>classical</td>" in cells["pumps"]
    assert "<td>-</td><td>cnn</td>" in cells["fans"] and "<td>-</td><td>-</td>" in cells["new"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_evaluation_of_a_classical_candidate_shows_its_baseline_once(project):
    """04_evaluate.ipynb with a classical candidate fitted as the evaluate stage fits its
    baseline: the baseline is the candidate retrained (the same probabilities), shown once; the
    train stage's decision is shown; the headline figures are the candidate's."""
    import nbformat

    from faultwatch.model import classical
    from faultwatch.notebook import run_notebook
    from faultwatch.scraps import read_scraps

    run(["faultwatch", "prepare"], project)
    train = ev.load_split(project / "data/prepared", "train")
    forest = {"n_estimators": 25, "feature_length": 64, "fft_bands": 8, "seed": 42}
    fitted = classical.fit_classical(list(train["values"]), train["y"].to_numpy(), **forest)
    classical.save_classical(project / "models/fault_cnn", fitted, {"positive_label": "fault"})
    set_family_decision(project, DECISION)
    overrides = {"baseline_n_estimators": 25, "baseline_feature_length": 64, "worst_n": 3}
    r = run_notebook("notebooks/04_evaluate.ipynb", project, overrides=overrides, html=False)

    m = json.loads((project / "reports/evaluate/scores.json").read_text())
    assert m["family"] == {
        "candidate": "classical",
        "test": {"cnn": None, "classical": m["test"]},
        "baseline_classical": "candidate retrained",
        "baseline_scores_equal": True,
    }
    # the baseline promote and the page read is still there: the same figures
    assert {k: v for k, v in m["baseline_classical"].items() if k != "model"} == m["test"]
    nb = nbformat.read(r.notebook, 4)
    scraps = read_scraps(nb)
    assert list(scraps["accuracy_trap"].index) == ["classical (candidate)", "always healthy"]
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "requested best, chosen classical" in text and DECISION["reason"] in text
    assert "validation cnn: pr_auc 0.8800, f1 0.8100" in text
    assert "the candidate's own family, retrained here" in text and "the same probabilities" in text
    assert json.loads(r.metrics.read_text()) == ev.headline(m)
