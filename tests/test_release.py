"""The whole pipeline on tiny data in a temporary copy: prepare ... register, package, then
the explicit promotion, the registry, and a bento whose labels carry the provenance."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import copy_project, git_commit, run

TINY = {
    "data": {"min_positive": 5},
    "augment": {"target_fault_ratio": 0.3},
    "train": {
        "length": 64,
        "channels": [4, 8],
        "kernel_size": 5,
        "batch_size": 16,
        "max_epochs": 3,
        "patience": 3,
        "accelerator": "cpu",
        "wandb": True,
    },
    "evaluate": {"baseline_n_estimators": 20, "baseline_feature_length": 32, "worst_n": 2},
}
PROVENANCE_LABELS = {
    "git_commit",
    "data_hash",
    "wandb_run_id",
    "threshold",
    "test_f1",
    "weights_sha256",
    "stage",
}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("release") / "proj", TINY)
    env = {"BENTOML_HOME": str(root / ".bentoml")}
    first = run(["dvc", "repro"], root, **env)
    return root, env, first


@pytest.mark.slow
def test_repro_runs_every_stage_then_nothing(released):
    root, env, first = released
    ran = [ln.split("'")[1] for ln in first.stdout.splitlines() if ln.startswith("Running stage")]
    assert ran == ["prepare", "eda", "augment", "train", "evaluate", "register", "package"]
    again = run(["dvc", "repro"], root, **env)
    assert "Running stage" not in again.stdout


@pytest.mark.slow
def test_bento_carries_the_provenance_and_a_dockerfile(released):
    root, env, _ = released
    pkg = json.loads((root / "reports/package.json").read_text())
    assert pkg["stage"] == "candidate (not promoted)"
    info = yaml.safe_load(
        run(["bentoml", "get", pkg["bento_tag"], "-o", "yaml"], root, **env).stdout
    )
    labels = info["labels"]
    assert PROVENANCE_LABELS <= set(labels)
    assert labels["model_tag"] == pkg["model_tag"] and labels["wandb_run_id"] not in ("", "None")
    model = yaml.safe_load(
        run(["bentoml", "models", "get", pkg["model_tag"], "-o", "yaml"], root, **env).stdout
    )
    meta = model["metadata"]
    for key in (
        "metrics",
        "params",
        "git",
        "data",
        "threshold",
        "preprocessing",
        "input_schema",
        "weights_sha256",
    ):
        assert key in meta, key
    assert meta["data"]["prepare_outs_md5"]["data/prepared/test.parquet"]
    dockerfile = (
        root / ".bentoml/bentos" / pkg["bento_tag"].replace(":", "/") / "env/docker/Dockerfile"
    ).read_text()
    assert "FROM " in dockerfile and "bentoml" in dockerfile.lower()


@pytest.mark.slow
def test_promote_records_the_decision_and_the_registry_lists_it(released):
    root, env, _ = released
    run(["git", "add", "-A"], root)
    git_commit(root, "candidate")
    proc = run(["faultwatch", "promote"], root, **env)
    decision = json.loads((root / "reports/promotion.json").read_text())
    assert decision["decision"] in ("approved", "rejected") and decision["reasons"]
    assert decision["decision"].upper() in proc.stdout
    listed = run(["faultwatch", "registry", "list"], root, **env).stdout
    assert decision["version"] in listed and decision["decision"] in listed
    if decision["decision"] == "approved":
        assert "prod" in listed
    shown = json.loads(
        run(["faultwatch", "registry", "show", decision["version"]], root, **env).stdout
    )
    assert shown["provenance"]["weights_sha256"] and shown["approval"] == decision["decision"]
    # the same candidate again: no new version on this commit, same decision
    run(["faultwatch", "promote"], root, **env)
    assert run(["faultwatch", "registry", "list"], root, **env).stdout.count("v0.0.") == 1


@pytest.mark.slow
def test_tampered_weights_are_refused_by_the_store(released):
    root, env, _ = released
    tag = json.loads((root / "reports/register.json").read_text())["model_tag"]
    path = root / ".bentoml/models" / tag.replace(":", "/") / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = run(["faultwatch", "promote"], root, check=False, **env)
    assert proc.returncode == 1 and "sha256" in proc.stderr and "Traceback" not in proc.stderr
