"""The promotion gate (better, worse, equal candidates) and the GTO registry on git tags."""

from __future__ import annotations

import pytest
from conftest import git_commit, run

from faultwatch import registry
from faultwatch.promote import PromoteParams, decide

BASELINES = {"always_healthy": {"f1": 0.0, "recall": 0.0}, "classical": {"f1": 0.6, "recall": 0.5}}
PROD = {"f1": 0.8, "recall": 0.75, "pr_auc": 0.85}


def test_better_candidate_is_approved():
    d = decide({"f1": 0.9, "recall": 0.875}, PROD, BASELINES, PromoteParams())
    assert d.approved and "f1 0.9000 >= production 0.8000" in d.reasons[0]


def test_worse_candidate_is_rejected_with_reasons():
    d = decide({"f1": 0.7, "recall": 0.75}, PROD, BASELINES, PromoteParams())
    assert not d.approved and "f1 0.7000 < production 0.8000" in d.reasons[0]


def test_equal_candidate_passes_without_margin_and_fails_with_one():
    assert decide(dict(PROD), PROD, BASELINES, PromoteParams()).approved
    assert not decide(dict(PROD), PROD, BASELINES, PromoteParams(margin=0.01)).approved


def test_lower_recall_is_rejected_even_with_a_better_primary_metric():
    d = decide({"f1": 0.85, "recall": 0.5}, PROD, BASELINES, PromoteParams())
    assert not d.approved and any("recall 0.5000 < production 0.7500" in r for r in d.reasons)


def test_first_model_must_beat_both_baselines():
    assert decide({"f1": 0.7, "recall": 0.6}, None, BASELINES, PromoteParams()).approved
    d = decide({"f1": 0.5, "recall": 0.6}, None, BASELINES, PromoteParams())
    assert not d.approved and "does not beat baseline classical" in " ".join(d.reasons)


def test_primary_metric_comes_from_params():
    d = decide(
        {"f1": 0.5, "pr_auc": 0.9, "recall": 0.8},
        PROD,
        BASELINES,
        PromoteParams(primary_metric="pr_auc"),
    )
    assert d.approved


def test_bad_param_is_named():
    from faultwatch.errors import ParamsError
    from faultwatch.params import section

    with pytest.raises(ParamsError, match="promote.primary_metric"):
        section("promote", {"promote": {"primary_metric": "accuracy"}})


def test_registry_versions_stages_and_approval_on_git_tags(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    git_commit(tmp_path, "init")
    assert registry.versions(tmp_path) == [] and registry.production(tmp_path) is None
    v1 = registry.register({"model_tag": "fault_cnn:aaa", "test": {"f1": 0.8}}, tmp_path)
    registry.assign(v1, registry.APPROVED, "beats baselines", tmp_path)
    registry.assign(v1, registry.PRODUCTION, "first approved model", tmp_path)
    git_commit(tmp_path, "retrain")
    v2 = registry.register({"model_tag": "fault_cnn:bbb", "test": {"f1": 0.7}}, tmp_path)
    registry.assign(v2, registry.REJECTED, "f1 below production", tmp_path)
    vs = registry.versions(tmp_path)
    assert [(v.version, v.approval) for v in vs] == [(v1, "approved"), (v2, "rejected")]
    assert registry.production(tmp_path).model_tag == "fault_cnn:aaa"
    assert registry.get(v2, tmp_path).record["test"]["f1"] == 0.7
    tags = run(["git", "tag"], tmp_path).stdout.split()
    assert f"fault_cnn@{v1}" in tags and f"fault_cnn@{v2}" in tags
