"""The package stage: which model the bento holds, and labels that agree with the registry."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from helpers.cli import run
from helpers.gate_project import Cli, make_project, set_data_source, write_lock

from faultwatch import registry

pytestmark = pytest.mark.slow


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    c = Cli(make_project(tmp_path / "proj", bento=True), monkeypatch, capsys)
    yield c
    c.close()


def package(cli) -> tuple[dict, dict, str]:
    """`faultwatch package` as a real process: (reports/package.json, the bento's labels, stderr)."""
    proc = cli("package", subprocess=True)
    record = json.loads((cli.root / "reports/package.json").read_text())
    name, version = record["bento_tag"].split(":")
    bento_yaml = cli.root / ".bentoml/bentos" / name / version / "bento.yaml"
    return record, yaml.safe_load(bento_yaml.read_text())["labels"], proc.stderr


def test_after_a_promotion_the_bento_labels_agree_with_the_registry(cli):
    root = cli.root
    tag = cli.register("always")
    registered_from = run(["git", "rev-parse", "HEAD~1"], root).stdout.strip()[:12]
    record, labels, _ = package(cli)
    assert (record["stage"], record["registry_version"]) == ("candidate (not promoted)", None)
    assert (labels["stage"], labels["registry_version"]) == ("candidate (not promoted)", "none")
    assert labels["git_commit"] == labels["registered_from_commit"] == registered_from

    cli("promote")
    shown = json.loads(cli("registry", "show", "v0.0.1").stdout)
    assert shown["stages"] == ["approved"]  # approved; production once it serves
    record, labels, _ = package(cli)
    assert (record["stage"], labels["stage"], labels["registry_version"]) == (
        "approved",
        "approved",
        "v0.0.1",
    )
    registry.set_production("v0.0.1", "deploy up: live on blue (test)", root)
    shown = json.loads(cli("registry", "show", "v0.0.1").stdout)
    assert shown["stages"] == ["approved", "prod"]
    record, labels, stderr = package(cli)
    assert (record["stage"], record["registry_version"], record["model_tag"]) == (
        "production",
        "v0.0.1",
        tag,
    )
    assert record["reason"] == (
        f"production v0.0.1 ({tag}), trained on data.source 'data/raw/tiny.tsv', fault class 'fault'"
    )
    assert record["warnings"] == [] and stderr == ""
    assert labels["stage"] == "production"
    assert labels["registry_version"] == "v0.0.1"
    assert labels["git_commit"] == shown["commit"][:12]  # the commit the registry version names
    assert labels["registered_from_commit"] == registered_from != shown["commit"][:12]
    assert labels["model_tag"] == tag and labels["data_source"] == "data/raw/tiny.tsv"

    # a better model approved since: the one rolled out next, so the one packaged
    from faultwatch.package import choose_model

    better = cli.register("detector")
    cli("promote")
    choice = choose_model(root)
    assert (choice.stage, choice.model_tag, choice.version.version) == (
        "approved",
        better,
        "v0.0.2",
    )


def test_a_production_model_of_another_data_source_is_not_packaged_for_this_one(cli):
    root = cli.root
    set_data_source(root, "bundled:PLAID")
    plaid = cli.register("always")
    cli("promote")
    registry.set_production("v0.0.1", "deploy up (test)", root)
    # the user points data.source at their own file and re-runs the pipeline
    set_data_source(root, "data/raw/tiny.tsv")
    ours = cli.register("detector")
    record, labels, stderr = package(cli)
    warning = (
        f"production v0.0.1 ({plaid}) was trained on data.source 'bundled:PLAID', fault class "
        "'fault'; this project is on data.source 'data/raw/tiny.tsv', fault class 'fault': not "
        "packaged for it"
    )
    assert stderr == f"warning: {warning}\n"
    assert (record["stage"], record["model_tag"], record["warnings"]) == (
        "candidate (not promoted)",
        ours,
        [warning],
    )
    assert record["reason"] == (
        f"the candidate {ours}, trained on this project's data (data.source 'data/raw/tiny.tsv', "
        "fault class 'fault'): no promoted model was trained on it; `faultwatch promote` gates "
        "the candidate"
    )
    assert labels["stage"] == "candidate (not promoted)" and labels["model_tag"] == ours


def test_another_fault_class_or_data_version_is_decided_without_building(cli):
    """choose_model alone (no bento build): the fault class is part of the task; a new version
    of the same data keeps production, with a warning."""
    from faultwatch.errors import FaultwatchError
    from faultwatch.package import CANDIDATE, choose_model

    root = cli.root
    prod = cli.register("always")
    cli("promote")
    registry.set_production("v0.0.1", "deploy up (test)", root)
    assert choose_model(root).model_tag == prod and choose_model(root).warnings == []

    # the same source, changed data: production stays what is packaged, not silently (a valid
    # split still: register reads it for the golden set)
    split = root / "data/prepared/test.parquet"
    pd.read_parquet(split).iloc[::-1].to_parquet(split, index=False)
    write_lock(root)
    choice = choose_model(root)
    assert (choice.stage, choice.model_tag) == ("production", prod)
    assert len(choice.warnings) == 1 and choice.warnings[0].startswith(
        f"production v0.0.1 ({prod}) was trained on another version of data/raw/tiny.tsv "
        "(data hash "
    )

    # another fault class of the same file is another task
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["positive_label"] = "pump_a"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(FaultwatchError, match=r"the candidate .* was trained on data.source "):
        choose_model(root)  # register.json is stale: the pipeline has not run for pump_a
    cand = cli.register("never")
    choice = choose_model(root)
    assert (choice.stage, choice.model_tag) == (CANDIDATE, cand)
    assert choice.warnings[0].endswith(
        "fault class 'fault'; this project is on data.source 'data/raw/tiny.tsv', fault class "
        "'pump_a': not packaged for it"
    )
