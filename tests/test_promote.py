"""The promotion gate (better, worse, equal candidates) and the GTO registry on git tags."""

from __future__ import annotations

import pytest
from helpers.cli import git_commit, run

from faultwatch import registry
from faultwatch.promote import PromoteParams, decide

BASELINES = {"always_healthy": {"f1": 0.0, "recall": 0.0}, "classical": {"f1": 0.6, "recall": 0.5}}
PROD = {"f1": 0.8, "recall": 0.75, "pr_auc": 0.85}


def test_better_candidate_is_approved():
    d = decide({"f1": 0.9, "recall": 0.875}, PROD, BASELINES, PromoteParams())
    assert d.approved
    assert d.reasons == ["f1 0.9000 beats production 0.8000", "recall 0.8750 >= production 0.7500"]


def test_worse_candidate_is_rejected_with_reasons():
    d = decide({"f1": 0.7, "recall": 0.75}, PROD, BASELINES, PromoteParams())
    assert not d.approved
    assert d.reasons == [
        "f1 0.7000 does not beat production 0.8000",
        "recall 0.7500 >= production 0.7500",
    ]


def test_equal_to_production_is_not_beating_it():
    """margin 0: a tie keeps production (nothing gained by replacing it); equal recall is fine."""
    d = decide(dict(PROD), PROD, BASELINES, PromoteParams())
    assert not d.approved
    assert d.reasons == [
        "f1 0.8000 does not beat production 0.8000 (equal: production stays)",
        "recall 0.7500 >= production 0.7500",
    ]


def test_margin_is_reached_exactly_and_missed_by_a_hair():
    # 0.8 + 0.1 is 0.9000000000000001 in floats: a candidate at 0.9 reaches it
    reached = decide({"f1": 0.9, "recall": 0.75}, PROD, BASELINES, PromoteParams(margin=0.1))
    assert reached.approved
    assert reached.reasons[0] == "f1 0.9000 >= production 0.8000 + margin 0.1"
    missed = decide({"f1": 0.8999, "recall": 0.75}, PROD, BASELINES, PromoteParams(margin=0.1))
    assert not missed.approved
    assert missed.reasons[0] == "f1 0.8999 < production 0.8000 + margin 0.1 (0.9000)"
    equal = decide(dict(PROD), PROD, BASELINES, PromoteParams(margin=0.01))
    assert not equal.approved
    assert equal.reasons[0] == "f1 0.8000 < production 0.8000 + margin 0.01 (0.8100)"


def test_lower_recall_is_rejected_even_with_a_better_primary_metric():
    d = decide({"f1": 0.85, "recall": 0.5}, PROD, BASELINES, PromoteParams())
    assert not d.approved
    assert d.reasons == ["f1 0.8500 beats production 0.8000", "recall 0.5000 < production 0.7500"]


def test_first_model_must_beat_both_baselines():
    ok = decide({"f1": 0.7, "recall": 0.6}, None, BASELINES, PromoteParams())
    assert ok.approved
    assert ok.reasons == [
        "f1 0.7000 beats baseline always_healthy (0.0000)",
        "f1 0.7000 beats baseline classical (0.6000)",
    ]
    d = decide({"f1": 0.5, "recall": 0.6}, None, BASELINES, PromoteParams())
    assert not d.approved
    assert d.reasons == [
        "f1 0.5000 beats baseline always_healthy (0.0000)",
        "f1 0.5000 does not beat baseline classical (0.6000)",
    ]


def test_equal_to_a_baseline_is_not_beating_it():
    d = decide({"f1": 0.6, "recall": 0.6}, None, BASELINES, PromoteParams())
    assert not d.approved
    assert (
        d.reasons[1] == "f1 0.6000 does not beat baseline classical (0.6000) (equal is not beating)"
    )


def test_no_production_and_no_baselines_is_a_refusal():
    d = decide({"f1": 0.9, "recall": 0.9}, None, {}, PromoteParams())
    assert not d.approved
    assert d.reasons == ["no production model and no baselines to compare with"]


@pytest.mark.parametrize(
    ("candidate", "production", "baselines", "reasons"),
    [
        # both models without pr_auc: today approved (both -inf), even with a margin
        (
            {"f1": 0.9, "recall": 0.9},
            {"f1": 0.8, "recall": 0.8},
            BASELINES,
            [
                "candidate pr_auc is missing: no decision without it",
                "production pr_auc is missing: no decision without it",
            ],
        ),
        # a baseline whose figure is missing is not beaten for free
        (
            {"pr_auc": 0.9, "recall": 0.9},
            None,
            {"classical": {"f1": 0.6}},
            ["baseline classical pr_auc is missing: no decision without it"],
        ),
        (
            {"pr_auc": float("nan"), "recall": 0.9},
            None,
            {"classical": {"pr_auc": 0.5}},
            ["candidate pr_auc is not a finite number (nan): no decision without it"],
        ),
        (
            {"pr_auc": 0.9, "recall": 0.9},
            {"pr_auc": 0.5, "recall": None},
            BASELINES,
            ["production recall is missing: no decision without it"],
        ),
        (
            {"pr_auc": 0.9, "recall": 0.9},
            {"pr_auc": float("inf"), "recall": 0.9},
            BASELINES,
            ["production pr_auc is not a finite number (inf): no decision without it"],
        ),
    ],
)
def test_a_missing_or_non_finite_figure_is_a_refusal_naming_it(
    candidate, production, baselines, reasons
):
    p = PromoteParams(primary_metric="pr_auc", margin=0.05)
    d = decide(candidate, production, baselines, p)
    assert not d.approved and d.reasons == reasons


def test_primary_metric_comes_from_params():
    d = decide(
        {"f1": 0.5, "pr_auc": 0.9, "recall": 0.8},
        PROD,
        BASELINES,
        PromoteParams(primary_metric="pr_auc"),
    )
    assert d.approved
    assert d.reasons == [
        "pr_auc 0.9000 beats production 0.8500",
        "recall 0.8000 >= production 0.7500",
    ]


def test_bad_param_is_named():
    from faultwatch.errors import ParamsError
    from faultwatch.params import section

    with pytest.raises(ParamsError, match=r"^params.yaml: promote.primary_metric: Input should be"):
        section("promote", {"promote": {"primary_metric": "accuracy"}})
    with pytest.raises(ParamsError, match=r"^params.yaml: promote.margin: Input should be"):
        section("promote", {"promote": {"margin": float("inf")}})


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


def test_each_version_keeps_its_own_decision_and_the_last_prod_assignment_wins(tmp_path):
    """GTO keeps one version per stage by default, and its tags' timestamps have one-second
    resolution: the registry must still give every version its own approval, and production
    to the version assigned last (a rollback included), however fast the events come."""
    run(["git", "init", "-q"], tmp_path)
    vs = []
    for i, model in enumerate(("a", "b", "c", "d")):
        git_commit(tmp_path, f"model {model}")
        vs.append(registry.register({"model_tag": f"fault_cnn:{model}"}, tmp_path))
        if i % 2 == 0:
            registry.assign(vs[-1], registry.APPROVED, "better", tmp_path)
            registry.assign(vs[-1], registry.PRODUCTION, "better", tmp_path)
        else:
            registry.assign(vs[-1], registry.REJECTED, "worse", tmp_path)
    assert registry.production(tmp_path).version == vs[2]
    registry.assign(vs[0], registry.PRODUCTION, "rollback", tmp_path)
    # a rejected version approved later (production changed since) is approved
    registry.assign(vs[3], registry.APPROVED, "re-gated", tmp_path)
    got = [(v.version, v.stages, v.approval) for v in registry.versions(tmp_path)]
    assert got == [
        (vs[0], ("approved", "prod"), "approved"),
        (vs[1], ("rejected",), "rejected"),
        (vs[2], ("approved",), "approved"),
        (vs[3], ("approved",), "approved"),
    ]
    assert registry.production(tmp_path).model_tag == "fault_cnn:a"
    assert registry.latest_approved(tmp_path).version == vs[3]


def test_the_registry_outside_a_git_repository_is_a_named_error(tmp_path):
    from faultwatch.errors import FaultwatchError

    with pytest.raises(FaultwatchError, match=r": not a git repository: the model registry lives"):
        registry.versions(tmp_path)


def test_approval_is_not_production_until_the_deployment_says_so(tmp_path):
    """The gate approves; `prod` follows the traffic (set by the deploy commands); a canary
    aborted or a rollback is recorded on the version until it serves again; the current model
    (the gate's yardstick, what `package` builds) is the approved rollout waiting, else prod."""
    run(["git", "init", "-q"], tmp_path)
    vs = []
    for model in ("a", "b", "c"):
        git_commit(tmp_path, f"model {model}")
        vs.append(registry.register({"model_tag": f"fault_cnn:{model}"}, tmp_path))
        registry.assign(vs[-1], registry.APPROVED, "better", tmp_path)
    v1, v2, v3 = vs
    assert registry.production(tmp_path) is None
    assert registry.current(registry.versions(tmp_path)).version == v3
    assert registry.set_production(v1, "deploy up: live on blue", tmp_path)
    assert not registry.set_production(v1, "deploy up again", tmp_path)  # already: no new tag
    known = registry.versions(tmp_path)
    assert [v.stages for v in known] == [("approved", "prod"), ("approved",), ("approved",)]
    assert registry.current(known).version == v3  # approved since production: rolled out next
    registry.record_outcome(v3, registry.CANARY_ABORTED, "canary at 10 %: inconclusive", tmp_path)
    registry.record_outcome(v2, registry.CANARY_ABORTED, "canary at 10 %: fail", tmp_path)
    known = registry.versions(tmp_path)
    assert [v.refused_online for v in known] == [None, "canary-aborted", "canary-aborted"]
    assert registry.current(known).version == v1  # nothing waits: production is the yardstick
    assert registry.production(tmp_path).version == v1  # an aborted canary changes no prod
    # v3 staged again and switched: production, its earlier refusal no longer shown; then
    # rolled back: v1 production again, v3 carries the rollback with its reason
    registry.set_production(v3, "deploy switch", tmp_path)
    assert registry.get(v3, tmp_path).stages == ("approved", "prod")
    registry.record_outcome(v3, registry.ROLLED_BACK, "deploy rollback", tmp_path)
    registry.set_production(v1, "deploy rollback from green", tmp_path)
    got = {v.version: v.stages for v in registry.versions(tmp_path)}
    assert got == {
        v1: ("approved", "prod"),
        v2: ("approved", "canary-aborted"),
        v3: ("approved", "rolled-back"),
    }
    messages = [e.get("message") for e in registry.events(tmp_path) if e.get("version") == v3]
    assert "deploy rollback" in messages and "canary at 10 %: inconclusive" in messages
    with pytest.raises(ValueError, match="outcome 'prod'"):
        registry.record_outcome(v2, "prod", "not an outcome", tmp_path)


def test_the_test_split_is_read_with_its_channels(tmp_path):
    """promote scores a multichannel candidate on (channels, samples) signals."""
    from helpers.projects import prepare_three_axis
    from helpers.signals import AXES

    from faultwatch.promote import read_test_split

    prepare_three_axis(tmp_path)
    test = read_test_split(tmp_path / "data/prepared/test.parquet", tmp_path)
    assert list(test.columns) == ["values", "y"] and test.attrs["channels"] == AXES
    assert all(v.shape[0] == 3 for v in test["values"])
