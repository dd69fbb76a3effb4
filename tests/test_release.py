"""The whole pipeline on tiny data in a temporary copy: prepare ... register, package, then
the explicit promotion, the registry, and a bento whose labels carry the provenance."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers.cli import git_commit, run, store_env
from helpers.projects import copy_tree

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
def released(tmp_path_factory, tiny_pipeline):
    template, first = tiny_pipeline
    root = copy_tree(template, tmp_path_factory.mktemp("release") / "proj")
    return root, store_env(root), first


def read_json(root, path):
    return json.loads((root / path).read_text())


def store_versions(root) -> list[str]:
    return sorted(p.name for p in (root / ".bentoml/models/fault_cnn").iterdir() if p.is_dir())


def registry_rows(root, env) -> list[list[str]]:
    out = run(["faultwatch", "registry", "list"], root, **env).stdout.splitlines()
    return [line.split() for line in out[1:] if line.startswith("v")]


@pytest.mark.slow
def test_repro_runs_every_stage_then_nothing(released):
    root, env, first = released
    ran = [ln.split("'")[1] for ln in first.stdout.splitlines() if ln.startswith("Running stage")]
    assert ran == [
        "prepare",
        "eda",
        "augment",
        "train",
        "evaluate",
        "register",
        "package",
        "report",
    ]
    # each stage up to package ends with what it produced and where; inside `dvc repro` no
    # next step (the report stage's own last line gives the one after the pipeline)
    done = [ln for ln in first.stdout.splitlines() if ln.startswith("done: ")]
    assert len(done) == len(ran) - 1 and not any("; next:" in ln for ln in done), done
    assert done[0] == "done: train, val and test splits (52 signals) in data/prepared"
    assert done[3].startswith("done: 03_train.ipynb executed (6 cells, ") and done[3].endswith(
        " s) in reports/notebooks"
    )
    assert done[-1].startswith("done: bento faultwatch:"), done
    assert done[-1].endswith(" (candidate (not promoted)) in the BentoML store .bentoml")
    # progress on stderr: each cell of each notebook, each epoch of the training
    assert "[eda] cell 1/" in first.stderr and "[evaluate] cell 1/" in first.stderr
    epochs = [ln for ln in first.stderr.splitlines() if ln.startswith("[train] epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == [f"[train] epoch {i}/3" for i in (1, 2, 3)]
    assert "val_pr_auc" in epochs[0], epochs
    again = run(["dvc", "repro"], root, **env)
    assert "Running stage" not in again.stdout
    # a forced register of the same model registers nothing new and changes no output
    tag = read_json(root, "reports/register.json")["model_tag"]
    record = (root / "reports/register.json").read_bytes()
    forced = run(["dvc", "repro", "-f", "-s", "register"], root, **env)
    assert f"already in the store as {tag} (same weights sha256" in forced.stdout
    assert (root / "reports/register.json").read_bytes() == record
    assert store_versions(root) == [tag.split(":")[1]]
    # the entry holds its golden set, from the test split, kept by the forced register
    from faultwatch.serve.golden import load_golden

    golden = load_golden(root / ".bentoml/models" / tag.replace(":", "/"))
    assert golden.model_tag == tag and 1 <= len(golden.ids) <= 16
    # a plain `dvc status`, every dvc.yaml of the project: clean (the monitor is no DVC stage)
    status = run(["dvc", "status"], root, **env).stdout
    assert status.strip() == "Data and pipelines are up to date."
    # the monitor never ran here: `dvc checkout` (and so `dvc pull`, `dvc exp apply`) must not
    # trip over what it writes (no DVC output)
    checkout = run(["dvc", "checkout"], root, check=False, **env)
    assert checkout.returncode == 0, checkout.stdout + checkout.stderr


@pytest.mark.slow
def test_bento_carries_the_provenance_and_a_dockerfile(released):
    import hashlib

    from faultwatch.register import data_hash, data_hashes

    root, env, _ = released
    pkg = read_json(root, "reports/package.json")
    assert pkg["stage"] == "candidate (not promoted)" and pkg["registry_version"] is None
    # the store's own files (the CLI's YAML output is wrapped to the terminal's width)
    bento_dir = root / ".bentoml/bentos" / pkg["bento_tag"].replace(":", "/")
    labels = yaml.safe_load((bento_dir / "bento.yaml").read_text())["labels"]
    assert PROVENANCE_LABELS <= set(labels)
    weights = (root / "models/fault_cnn/weights.safetensors").read_bytes()
    sha = hashlib.sha256(weights).hexdigest()
    threshold = read_json(root, "reports/evaluate/threshold.json")["threshold"]
    test = read_json(root, "reports/evaluate/scores.json")["test"]
    run_file = root / "reports/train/run.json"  # where training's run-to-run values live
    run_id = (
        read_json(root, "reports/train/run.json")
        if run_file.exists()
        else read_json(root, "models/fault_cnn/model.json")
    )["wandb_run_id"]
    head = run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    hashes = data_hashes(root)
    assert labels["model_tag"] == pkg["model_tag"]
    assert labels["stage"] == "candidate (not promoted)" and labels["registry_version"] == "none"
    # registered inside `dvc repro`, which had rewritten dvc.lock: the tree was dirty
    assert labels["git_commit"] == head[:12] + "-dirty"
    assert labels["data_hash"] == data_hash(hashes) and labels["data_source"] == "data/raw/tiny.tsv"
    assert isinstance(run_id, str) and labels["wandb_run_id"] == run_id
    assert labels["threshold"] == f"{threshold:.6f}" and labels["test_f1"] == f"{test['f1']:.4f}"
    assert labels["weights_sha256"] == sha[:16]
    model_dir = root / ".bentoml/models" / pkg["model_tag"].replace(":", "/")
    meta = yaml.safe_load((model_dir / "model.yaml").read_text())["metadata"]
    assert meta["weights_sha256"] == sha and meta["threshold"] == threshold
    assert meta["git"] == {"commit": head, "dirty": True}
    assert meta["data"] == {
        "hash": data_hash(hashes),
        "prepare_outs_md5": hashes,
        "source": "data/raw/tiny.tsv",
        "positive_label": "fault",
    }
    assert sorted(hashes) == [f"data/prepared/{s}.parquet" for s in ("test", "train", "val")]
    assert meta["metrics"]["test"] == test and json.loads(meta["params"])["train"]["length"] == 64
    assert meta["input_schema"]["resampled_to"] == 64 and meta["preprocessing"] == {
        "resample": "linear",
        "normalise": "zscore_per_signal",
    }
    dockerfile = (bento_dir / "env/docker/Dockerfile").read_text()
    lines = [ln for ln in dockerfile.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "FROM localhost/faultwatch-base:bookworm AS base-container"
    assert not [ln for ln in lines if "build-essential" in ln]  # package.drop_build_tools
    assert "ENV FAULTWATCH_TORCH_THREADS=$FAULTWATCH_TORCH_THREADS" in lines
    assert lines[-1] == 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]'


@pytest.mark.slow
def test_promote_records_the_decision_and_the_registry_lists_it(released):
    from faultwatch.promote import PromoteParams, decide

    root, env, _ = released
    run(["git", "add", "-A"], root)
    git_commit(root, "candidate")
    proc = run(["faultwatch", "promote"], root, **env)
    decision = read_json(root, "reports/promotion.json")
    evaluation = read_json(root, "reports/evaluate/scores.json")
    tag = read_json(root, "reports/register.json")["model_tag"]
    # promote scores the candidate with the same code, split and threshold as evaluate
    assert decision["candidate"] == pytest.approx(evaluation["test"], abs=1e-6)
    baselines = {
        k[len("baseline_") :]: v for k, v in evaluation.items() if k.startswith("baseline_")
    }
    expected = decide(decision["candidate"], None, baselines, PromoteParams())
    verdict = "approved" if expected.approved else "rejected"
    assert (decision["version"], decision["decision"]) == ("v0.0.1", verdict)
    assert decision["reasons"] == expected.reasons and len(expected.reasons) == 2
    assert proc.stdout.splitlines()[0] == f"v0.0.1: {verdict.upper()}"
    # approved is not production: nothing serves it yet, and `registry list` says so
    assert [(r[0], r[1], r[2], r[-1]) for r in registry_rows(root, env)] == [
        ("v0.0.1", "-", verdict, tag)
    ]
    shown = json.loads(run(["faultwatch", "registry", "show", "v0.0.1"], root, **env).stdout)
    assert shown["approval"] == verdict and shown["record"]["reasons"] == expected.reasons
    assert (
        shown["provenance"]["weights_sha256"]
        == read_json(root, "reports/register.json")["weights_sha256"]
    )
    # the same candidate again: no new version, the same decision
    again = run(["faultwatch", "promote"], root, **env)
    assert again.stdout.splitlines()[0].startswith("v0.0.1: ")
    assert len(registry_rows(root, env)) == 1
    # re-packaged after the promotion: the bento's labels say what the registry says
    run(["dvc", "repro", "-f", "-s", "package"], root, **env)
    pkg = read_json(root, "reports/package.json")
    labels = pkg["labels"]
    if expected.approved:
        assert (pkg["stage"], labels["stage"], labels["registry_version"]) == (
            "approved",
            "approved",
            "v0.0.1",
        )
        assert labels["git_commit"] == shown["commit"][:12]
    else:
        assert (pkg["stage"], labels["registry_version"]) == ("candidate (not promoted)", "none")


@pytest.mark.slow
def test_tampered_weights_are_refused_by_the_store(released):
    root, env, _ = released
    tag = read_json(root, "reports/register.json")["model_tag"]
    entry = root / ".bentoml/models" / tag.replace(":", "/")
    path = entry / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = run(["faultwatch", "promote"], root, check=False, **env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: candidate: {path}: sha256 ")
    assert proc.stderr.rstrip().endswith(
        "the weights were changed after saving: refusing to load them"
    )


@pytest.mark.slow
def test_the_monitor_leaves_dvc_status_and_git_status_as_they_were(released, tmp_path):
    """`faultwatch monitor` writes a view of the prediction log, which DVC does not version: a
    plain `dvc status` stays clean and git sees nothing new (its reports are git-ignored)."""
    from helpers.monitor_synthetic import log_for_project

    root, env, _ = released

    def git_status() -> str:
        return run(["git", "status", "--porcelain", "--untracked-files=all"], root).stdout

    # (other tests of this module re-package with `dvc repro -f -s package`, which leaves the
    # report stage behind: the status before is the yardstick, and nothing of the monitor's)
    before, dvc_before = git_status(), run(["dvc", "status"], root, **env).stdout
    log = log_for_project(root, tmp_path / "predictions.sqlite", n=80)
    watched = run(["faultwatch", "monitor", "--last", "1h", "--log", log], root, **env)
    assert "wrote reports/metrics/monitor.json" in watched.stdout
    assert (root / "reports/notebooks/05_monitor.html").is_file()
    status = run(["dvc", "status"], root, **env).stdout
    assert status == dvc_before and "monitor" not in status, status
    assert git_status() == before
