"""`faultwatch promote` against real models in a real store and registry (git tags).

The models are crafted networks whose figures on the test split are known exactly (see
gate_project.py): "always" (F1 0.375, recall 1), "never" (F1 0, recall 0), "detector" (F1 1).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess

import pytest
from helpers.cli import project_env, run, tool_env
from helpers.gate_project import ALWAYS_F1, Cli, entry_dir, make_project
from helpers.paths import VENV_BIN

from faultwatch.errors import FaultwatchError

pytestmark = pytest.mark.slow
PROMOTION = "reports/promotion.json"


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    c = Cli(make_project(tmp_path / "proj"), monkeypatch, capsys)
    yield c
    c.close()


def decision(root) -> dict:
    return json.loads((root / PROMOTION).read_text())


def registry_rows(cli) -> list[list[str]]:
    out = cli("registry", "list").stdout.splitlines()
    return [line.split() for line in out[1:] if line.startswith("v")]


def test_the_gate_against_a_real_production_model(cli):
    root = cli.root
    assert f"{ALWAYS_F1:.4f}" == "0.3750"

    first = cli.register("always")
    proc = cli("promote")
    assert proc.stdout.splitlines()[:3] == [
        "v0.0.1: APPROVED",
        "  - f1 0.3750 beats baseline always_healthy (0.0000)",
        "  - f1 0.3750 beats baseline classical (0.3000)",
    ]
    assert proc.stdout.splitlines()[-1].startswith(
        "done: v0.0.1 approved: production once the deployment puts the traffic on it in the "
        "registry's git tags (faultwatch registry show v0.0.1) and reports/promotion.json; next: "
    )
    assert decision(root)["model_tag"] == first and decision(root)["production_before"] is None
    # approval is not production: nothing serves it yet
    assert [(r[0], r[1], r[2]) for r in registry_rows(cli)] == [("v0.0.1", "-", "approved")]

    # before any deployment the approved version is the yardstick, named as such
    worse = cli.register("never")
    cli("promote")
    d = decision(root)
    assert (d["version"], d["decision"], d["compared_with"]) == (
        "v0.0.2",
        "rejected",
        "approved v0.0.1",
    )
    assert d["reasons"] == [
        "f1 0.0000 does not beat approved v0.0.1 0.3750",
        "recall 0.0000 < approved v0.0.1 1.0000",
    ]
    # the deployment puts the traffic on v0.0.1 (what `deploy up` records): production
    from faultwatch import registry

    assert registry.set_production("v0.0.1", "deploy up: live on blue (test)", root)

    # a worse candidate: refused, production stays
    worse = cli.register("never")
    proc = cli("promote")
    d = decision(root)
    assert (d["version"], d["model_tag"], d["decision"]) == ("v0.0.2", worse, "rejected")
    assert d["compared_with"] == "production v0.0.1"
    assert d["reasons"] == [
        "f1 0.0000 does not beat production 0.3750",
        "recall 0.0000 < production 1.0000",
    ]
    assert d["production_before"] == "v0.0.1"
    assert proc.stdout.splitlines()[0] == "v0.0.2: REJECTED"
    assert proc.stdout.splitlines()[-1].startswith("done: v0.0.2 rejected: the current model stays")

    # another network (other weights, other sha256) with the same figures: a tie keeps production
    equal = cli.register("always", seed=1)
    assert equal != first
    cli("promote")
    d = decision(root)
    assert (d["version"], d["decision"]) == ("v0.0.3", "rejected")
    assert d["reasons"] == [
        "f1 0.3750 does not beat production 0.3750 (equal: production stays)",
        "recall 1.0000 >= production 1.0000",
    ]

    # a better candidate: approved, and production moves to it
    better = cli.register("detector")
    cli("promote")
    d = decision(root)
    assert (d["version"], d["model_tag"], d["decision"]) == ("v0.0.4", better, "approved")
    assert d["reasons"] == [
        "f1 1.0000 beats production 0.3750",
        "recall 1.0000 >= production 1.0000",
    ]
    assert d["production_test"]["f1"] == ALWAYS_F1 and d["test"]["f1"] == 1.0

    rows = registry_rows(cli)
    assert [(r[0], r[1], r[2], r[-1]) for r in rows] == [
        ("v0.0.1", "prod", "approved", first),
        ("v0.0.2", "-", "rejected", worse),
        ("v0.0.3", "-", "rejected", equal),
        ("v0.0.4", "-", "approved", better),
    ]
    # the decision file is not left untracked: the registry's tag is the record
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], root).stdout
    assert PROMOTION not in status
    shown = json.loads(cli("registry", "show", "v0.0.2").stdout)
    assert shown["record"]["reasons"] == [  # its registration: the first decision on it
        "f1 0.0000 does not beat approved v0.0.1 0.3750",
        "recall 0.0000 < approved v0.0.1 1.0000",
    ]

    # the same candidate again, on a later commit: no second version of the same model
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
         "-m", "docs"], root)  # fmt: skip
    proc = cli("promote")
    assert proc.stdout.splitlines()[:2] == [
        "v0.0.4: APPROVED",
        f"  - {better} is already approved (v0.0.4)",
    ]
    assert len(registry_rows(cli)) == 4


def test_a_store_entry_with_swapped_files_is_refused_by_promote(cli):
    root = cli.root
    prod = cli.register("always")
    cli("promote")
    before = (root / PROMOTION).read_bytes()
    candidate = cli.register("never")
    # both files of the candidate's entry swapped with production's: each entry is consistent
    # with its model.json, only the sha256 recorded at registration tells them apart
    a, b = entry_dir(root, candidate), entry_dir(root, prod)
    for name in ("weights.safetensors", "model.json"):
        tmp = a / f"{name}.tmp"
        shutil.move(a / name, tmp)
        shutil.move(b / name, a / name)
        shutil.move(tmp, b / name)
    proc = cli("promote", check=False, subprocess=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.startswith(f"error: candidate: store entry {candidate}: weights sha256 ")
    assert err.endswith("the entry's files were replaced: refusing to load it")
    assert "Traceback" not in proc.stderr
    assert len(registry_rows(cli)) == 1 and (root / PROMOTION).read_bytes() == before


def test_promote_without_evaluation_metrics_is_a_named_error(cli):
    root = cli.root
    cli.register("always")
    metrics = root / "reports/evaluate/scores.json"
    good = json.loads(metrics.read_text())

    metrics.unlink()
    proc = cli("promote", check=False)
    assert proc.returncode == 1 and proc.stderr == (
        "error: reports/evaluate/scores.json: not found (the evaluate stage's scores; "
        "run `dvc repro` first)\n"
    )
    no_baseline = {k: v for k, v in good.items() if not k.startswith("baseline_")}
    metrics.write_text(json.dumps(no_baseline))
    proc = cli("promote", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "error: reports/evaluate/scores.json: no baseline_* entries"
    )
    del good["baseline_classical"]["f1"]
    metrics.write_text(json.dumps(good))
    proc = cli("promote", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "error: reports/evaluate/scores.json: baseline_classical has no 'f1' "
        "(promote.primary_metric)"
    )
    metrics.write_text("{not json")
    proc = cli("promote", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "error: reports/evaluate/scores.json: not valid JSON (the evaluate stage's scores)"
    )
    (root / "reports/register.json").unlink()
    proc = cli("promote", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "error: reports/register.json: not found (the register stage's record"
    )
    assert registry_rows(cli) == [] and not (root / PROMOTION).exists()


def test_a_missing_figure_is_a_refusal_recorded_with_its_name(cli):
    """pr_auc as the primary metric and a test split without a fault: undefined, refused."""
    import pandas as pd

    root = cli.root
    params = root / "params.yaml"
    params.write_text(params.read_text() + "promote:\n  primary_metric: pr_auc\n")
    cli.register("always")
    test = root / "data/prepared/test.parquet"
    split = pd.read_parquet(test)
    split[split.y == 0].to_parquet(test, index=False)
    proc = cli("promote", check=False)
    assert proc.returncode == 0 and proc.stdout.splitlines()[:2] == [
        "v0.0.1: REJECTED",
        "  - candidate pr_auc is missing: no decision without it",
    ]
    assert cli("promote", "--strict", check=False).returncode == 3


def test_a_failing_promote_leaves_the_previous_decision_byte_identical(cli):
    root = cli.root
    cli.register("always")
    cli("promote")
    before = (root / PROMOTION).read_bytes()
    cli.register("detector")
    limit = 512  # bytes: the new decision is larger, so writing it fails half-way (EFBIG)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [str(VENV_BIN / "faultwatch"), "promote"],
        cwd=root,
        env=tool_env(**project_env(root)),
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: {PROMOTION}: could not write the decision ([Errno 27]")
    assert (root / PROMOTION).read_bytes() == before
    assert not [p.name for p in (root / "reports").iterdir() if p.name.startswith(".promotion")]


def test_a_production_model_missing_from_the_store_is_named(cli):
    """Registered with another store (BENTOML_HOME unset in one shell, set in another)."""
    from faultwatch import registry
    from faultwatch.package import choose_model

    root = cli.root
    prod = cli.register("always")
    cli("promote")
    registry.set_production("v0.0.1", "deploy up (test)", root)  # it serves: production
    cli.register("detector")
    shutil.rmtree(entry_dir(root, prod))
    proc = cli("promote", check=False)
    assert proc.returncode == 1 and proc.stderr == (
        f"error: production v0.0.1: store entry {prod} is not in the BentoML store at "
        f"{root / '.bentoml'} (BENTOML_HOME): was it registered with another store?\n"
    )
    with pytest.raises(FaultwatchError, match=rf"^production v0\.0\.1: store entry {prod} is not"):
        choose_model(root)
    shown = json.loads(cli("registry", "show", "v0.0.1").stdout)
    assert shown["record"]["model_tag"] == prod and shown["provenance"] is None


def test_a_production_model_of_another_task_is_not_a_yardstick(cli):
    """After the user points data.source at their own file, production (trained on the bundled
    data) scored on the new test split says nothing: the candidate is gated on the baselines."""
    from helpers.gate_project import set_data_source

    root = cli.root
    set_data_source(root, "bundled:PLAID")
    plaid = cli.register("detector")
    cli("promote")
    set_data_source(root, "data/raw/tiny.tsv")
    ours = cli.register("always")  # F1 0.375: loses to the detector, beats the baselines
    proc = cli("promote")
    assert proc.stdout.splitlines()[:4] == [
        "v0.0.2: APPROVED",
        f"  - approved v0.0.1 ({plaid}) was trained on data.source 'bundled:PLAID', fault "
        "class 'fault', the candidate on data.source 'data/raw/tiny.tsv', fault class 'fault': "
        "not comparable, the candidate is gated on the baselines",
        "  - f1 0.3750 beats baseline always_healthy (0.0000)",
        "  - f1 0.3750 beats baseline classical (0.3000)",
    ]
    d = decision(root)
    assert (d["model_tag"], d["production_before"], d["production"]["f1"]) == (ours, "v0.0.1", 1.0)
    assert [(r[0], r[2]) for r in registry_rows(cli)] == [
        ("v0.0.1", "approved"),
        ("v0.0.2", "approved"),
    ]


def test_production_recorded_by_hand_where_deploy_does_not_run(cli):
    """On Kubernetes the switch is `kubectl apply`: `registry production` records it, and
    `registry list` says that nothing serves it on this host."""
    cli.register("always")
    cli("promote")
    assert [(r[0], r[1]) for r in registry_rows(cli)] == [("v0.0.1", "-")]
    proc = cli("registry", "production", "v0.0.1", "--reason", "k8s: green overlay applied")
    assert proc.stdout.splitlines()[-1].startswith(
        "done: v0.0.1 is production (k8s: green overlay applied)"
    )
    assert [(r[0], r[1]) for r in registry_rows(cli)] == [("v0.0.1", "prod")]
    listed = cli("registry", "list").stdout
    assert "serving: nothing deployed here; registry production: v0.0.1" in listed
    assert "DISAGREE: the registry's production is v0.0.1, but nothing serves it here" in listed
    again = cli("registry", "production", "v0.0.1", "--reason", "again")
    assert "v0.0.1 already was" in again.stdout
    proc = cli("registry", "production", "v9.9.9", "--reason", "typo", check=False)
    assert proc.returncode == 1 and "no version v9.9.9 of fault_cnn" in proc.stderr
