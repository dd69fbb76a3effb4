"""Model groups without training: params.yaml `groups` and its errors, a group's generated
params.yaml, `data.filter`, and the approval rules of the registry (a pending or rejected
version never reaches production, whoever asks). tests/test_fleet.py runs a fleet end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.cli import fw, git_commit, run
from helpers.datafiles import write_parquet, write_tsv
from helpers.signals import fleet_signals, make_signals

from faultwatch import groups, registry
from faultwatch.data.readers import read_source
from faultwatch.errors import DataError, ParamsError
from faultwatch.params import load_params

PROJECT = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


def with_groups(entries: dict) -> dict:
    return {**PROJECT, "groups": entries}


# ---------------------------------------------------------------------- params.yaml groups
def test_the_shipped_params_have_no_groups_and_a_project_without_them_is_one_model():
    assert PROJECT["groups"] == {}
    assert groups.specs(PROJECT) == {}
    assert groups.artifact_name(Path(__file__).parents[1]) == "fault_cnn"


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"P-100": {}}, "params.yaml: groups.P-100: a group's name is its folder"),
        ({"fault_cnn": {}}, "groups.fault_cnn: 'fault_cnn' is the project's own model"),
        ({"p100": {"trian": {"lr": 0.1}}}, "params.yaml: groups.p100.trian: Extra inputs"),
        ({"p100": {"train": {"lr": -1}}}, "params.yaml (groups.p100): train.lr:"),
        ({"p100": {"train": {"lrr": 0.1}}}, "params.yaml (groups.p100): train.lrr: Extra inputs"),
        ({"p100": {"data": {"filter": {}}}}, "params.yaml (groups.p100): data.filter: Value error"),
        ({"p100": {"metadata": "x"}}, "groups.p100.metadata: Input should be a valid dictionary"),
    ],
)
def test_a_bad_group_is_an_error_naming_the_group_and_the_key(entries, message):
    with pytest.raises(ParamsError) as e:
        groups.specs(with_groups(entries))
    assert message in str(e.value), str(e.value)


def test_a_bad_group_stops_its_params_stage_with_the_key(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    p = with_groups({"p100": {"train": {"dropout": 2}}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    r = fw(tmp_path, "group", "params", "p100", check=False)
    assert r.returncode != 0 and "groups.p100" in r.stderr and "train.dropout" in r.stderr
    assert not (tmp_path / "groups").exists()  # nothing written
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_groups({"p100": {}})))
    r = fw(tmp_path, "group", "params", "nope", check=False)
    assert r.returncode != 0 and "groups.nope: no such group (groups: p100)" in r.stderr


def test_a_groups_params_are_the_projects_with_its_overrides(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "data/raw").mkdir(parents=True)
    write_parquet(fleet_signals(per_asset=8, faults=3), tmp_path / "data/raw/fleet.parquet")
    write_tsv(make_signals(), tmp_path / "data/raw/own.tsv")
    p = with_groups(
        {
            "p-100": {
                "description": "P-100 pumps",
                "collection": "pumps",
                "owner": "ana",
                "metadata": {"asset_type": "P-100", "site": "Frankenthal"},
                "data": {"source": "data/raw/fleet.parquet", "filter": {"asset_type": "P-100"}},
                "train": {"lr": 0.003, "length": 256},
            },
            "own": {"data": {"source": "data/raw/own.tsv", "positive_label": "fault"}},
        }
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    fw(tmp_path, "group", "params", "p-100")
    fw(tmp_path, "group", "params", "own")
    g = load_params(tmp_path / "groups/p-100/params.yaml")
    assert g["train"]["lr"] == 0.003 and g["train"]["length"] == 256
    assert g["train"]["batch_size"] == PROJECT["train"]["batch_size"]  # the project's value
    assert g["data"]["source"] == "../../data/raw/fleet.parquet"  # seen from groups/p-100/
    assert g["data"]["filter"] == {"asset_type": "P-100"}
    assert g["group"]["name"] == "p-100" and g["group"]["metadata"]["site"] == "Frankenthal"
    assert "groups" not in g and "deploy" in g
    assert groups.artifact_name(tmp_path / "groups/p-100") == "p-100"
    # the registry's view: GTO's artifacts.yaml holds each group's description and labels
    index = yaml.safe_load((tmp_path / "artifacts.yaml").read_text())
    assert index["p-100"]["description"] == "P-100 pumps"
    assert index["p-100"]["labels"] == ["collection:pumps", "owner:ana"]
    assert index["p-100"]["custom"] == {"asset_type": "P-100", "site": "Frankenthal"}
    assert set(index) == {"p-100", "own"}
    # a group's data hash follows its own file only
    before = {n: load_params(tmp_path / f"groups/{n}/params.yaml")["group"]["data_md5"]
              for n in ("p-100", "own")}  # fmt: skip
    write_tsv(make_signals(seed=5), tmp_path / "data/raw/own.tsv")
    fw(tmp_path, "group", "params", "p-100")
    fw(tmp_path, "group", "params", "own")
    after = {n: load_params(tmp_path / f"groups/{n}/params.yaml")["group"]["data_md5"]
             for n in ("p-100", "own")}  # fmt: skip
    assert after["p-100"] == before["p-100"] and after["own"] != before["own"]


# ---------------------------------------------------------------------- data.filter
def test_a_filter_keeps_the_rows_of_one_asset_type_with_their_row_numbers(tmp_path):
    df = fleet_signals(per_asset=6, faults=2)
    write_parquet(df, tmp_path / "fleet.parquet")
    got = read_source(str(tmp_path / "fleet.parquet"), tmp_path, {"asset_type": "P-200"})
    want = df.index[df["asset_type"] == "P-200"]
    assert list(got.index) == list(want)  # rows keep the file's numbers
    assert set(got["id"]) == set(df.loc[want, "id"])
    both = read_source(
        str(tmp_path / "fleet.parquet"), tmp_path, {"asset_type": ["P-100", "F-300"]}
    )
    assert len(both) == 12


def test_a_filter_on_a_missing_column_or_matching_nothing_is_a_named_error(tmp_path):
    write_parquet(fleet_signals(per_asset=4, faults=1), tmp_path / "fleet.parquet")
    with pytest.raises(DataError) as e:
        read_source(str(tmp_path / "fleet.parquet"), tmp_path, {"asset": "P-100"})
    assert e.value.rule == "filter_column" and "columns: id, label, asset_type, values" in str(
        e.value
    )
    with pytest.raises(DataError) as e:
        read_source(str(tmp_path / "fleet.parquet"), tmp_path, {"asset_type": "X-1"})
    assert e.value.rule == "filter_matches" and "asset_type=X-1" in str(e.value)
    write_tsv(make_signals(), tmp_path / "s.tsv")  # text files keep no other column
    with pytest.raises(DataError) as e:
        read_source(str(tmp_path / "s.tsv"), tmp_path, {"asset_type": "P-100"})
    assert e.value.rule == "filter_column" and "only a Parquet source" in str(e.value)
    ok = read_source(str(tmp_path / "s.tsv"), tmp_path, {"label": "fault"})
    assert set(ok["label"]) == {"fault"}


# ---------------------------------------------------------------------- approval
@pytest.fixture
def fleet_repo(tmp_path) -> Path:
    """A project (params.yaml with two groups) whose registry holds, for group `p-100`:
    v0.0.1 approved by the gate (production), v0.0.2 pending (the gate passed it, a person has
    not decided), v0.0.3 rejected by the gate; and for `p-200` v0.0.1 approved by the gate."""
    from gto import api

    root = tmp_path
    p = with_groups({"p-100": {}, "p-200": {}})
    (root / "params.yaml").write_text(yaml.safe_dump(p))
    (root / "dvc.yaml").write_text("stages: {}\n")
    run(["git", "init", "-q"], root)
    kw = {"author": "t", "author_email": "t@t"}
    decisions = [("p-100", "approved"), ("p-100", "pending"), ("p-100", "rejected"),
                 ("p-200", "approved")]  # fmt: skip
    for n, (group, gate) in enumerate(decisions):
        (root / "f").write_text(str(n))
        run(["git", "add", "-A"], root)
        git_commit(root, f"c{n}")
        record = {"model_tag": f"fault_cnn:{n}", "decision": "rejected" if gate == "rejected"
                  else "approved", "reasons": ["f1 0.5 does not beat production 0.9"]
                  if gate == "rejected" else ["f1 0.9 beats the baselines"], "test": {"f1": 0.9}}  # fmt: skip
        v = api.register(str(root), group, "HEAD", message=json.dumps(record), **kw).version
        api.assign(str(root), group, gate, version=v, message="the gate", force=True, **kw)
    registry.set_production("v0.0.1", "first", root, "p-100")
    return root


def test_pending_and_rejected_versions_never_reach_production(fleet_repo):
    root = fleet_repo
    for version, said in [
        ("v0.0.2", "p-100 v0.0.2 is pending: the gate passed it and it waits for a person's "
                   "decision (`faultwatch approve p-100 v0.0.2 --by NAME`)"),
        ("v0.0.3", "p-100 v0.0.3 is rejected by the promotion gate: the gate"),
    ]:  # fmt: skip
        with pytest.raises(registry.NotApproved) as e:
            registry.set_production(version, "by hand", root, "p-100")
        assert said in str(e.value) and "only an approved version can go to production" in str(
            e.value
        )
        r = fw(root, "registry", "production", "p-100", version, "--reason", "x", check=False)
        assert r.returncode == 1 and said in r.stderr, r.stderr
    assert registry.production(root, "p-100").version == "v0.0.1"
    # the gate's refusal is final: a person cannot approve what it rejected
    r = fw(root, "approve", "p-100", "v0.0.3", "--by", "ana", check=False)
    assert r.returncode == 1 and "was refused by the promotion gate" in r.stderr
    assert registry.get("v0.0.3", root, "p-100").approval == "rejected"


def test_a_persons_approval_and_rejection_are_recorded_with_who_when_and_why(fleet_repo):
    root = fleet_repo
    r = fw(root, "approve", "p-100", "v0.0.2", "--by", "ana", "--reason", "checked the misses")
    assert "p-100 v0.0.2: approved by ana at " in r.stdout
    v = registry.get("v0.0.2", root, "p-100")
    assert v.approval == "approved"
    assert v.decision["by"] == "ana" and v.decision["reason"] == "checked the misses"
    assert v.decision["decision"] == "approved" and v.decision["at"].startswith("20")
    shown = json.loads(fw(root, "registry", "show", "p-100", "v0.0.2").stdout)
    assert shown["decision"]["by"] == "ana" and shown["approval"] == "approved"
    fw(root, "registry", "production", "p-100", "v0.0.2", "--reason", "k8s rollout")
    assert registry.production(root, "p-100").version == "v0.0.2"
    # a person rejects what the gate approved: it can no longer go (back) to production
    fw(root, "reject", "p-200", "v0.0.1", "--by", "bo", "--reason", "false alarms on site")
    r = fw(root, "registry", "production", "p-200", "v0.0.1", "--reason", "x", check=False)
    assert r.returncode == 1 and "p-200 v0.0.1 is rejected by bo: false alarms on site" in r.stderr
    r = fw(root, "approve", "p-100", "v0.0.2", "--by", " ", check=False)
    assert r.returncode == 1 and "--by: name the person" in r.stderr
    # the groups' versions stay apart: p-200's decision did not touch p-100
    assert registry.get("v0.0.1", root, "p-100").approval == "approved"


def test_registry_list_shows_each_group_then_one_groups_versions(fleet_repo):
    root = fleet_repo
    listed = fw(root, "registry", "list").stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in listed[1:-1]}
    assert set(rows) == {"p-100", "p-200"}
    assert rows["p-100"][1:4] == ["-", "v0.0.3", "rejected"] and rows["p-100"][5] == "v0.0.1"
    assert rows["p-200"][1:4] == ["-", "v0.0.1", "approved"] and rows["p-200"][5] == "-"
    one = fw(root, "registry", "list", "p-100").stdout
    assert [line.split()[0] for line in one.splitlines()[1:]] == ["v0.0.1", "v0.0.2", "v0.0.3"]
    assert "pending" in one and "prod" in one
    r = fw(root, "registry", "list", "p-999", check=False)
    assert r.returncode == 2 and "no group 'p-999' (groups: p-100, p-200)" in r.stderr
