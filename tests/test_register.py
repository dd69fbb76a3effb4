"""The register stage: provenance that is never guessed, and one store entry per model."""

from __future__ import annotations

import json

import pytest
from helpers.cli import run
from helpers.gate_project import Cli, entry_dir, make_project, put_model, store_entries

from faultwatch.register import ProvenanceError, git_commit


def test_git_commit_outside_a_repository_is_an_error(tmp_path):
    with pytest.raises(ProvenanceError, match=r": not a git repository: the git commit"):
        git_commit(tmp_path)


def test_git_commit_before_the_first_commit_is_an_error(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    with pytest.raises(ProvenanceError, match=r": no commit yet \(commit the project first\)"):
        git_commit(tmp_path)


def test_git_not_installed_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    with pytest.raises(ProvenanceError, match=r"^git: command not found"):
        git_commit(tmp_path)


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    c = Cli(make_project(tmp_path / "proj"), monkeypatch, capsys)
    yield c
    c.close()


@pytest.mark.slow
def test_register_without_git_stops_with_a_named_error(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "proj", git=False)
    put_model(root, "always")
    proc = Cli(root, monkeypatch, capsys)("register", check=False, subprocess=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {root}: not a git repository: the git commit")
    assert "Traceback" not in proc.stderr
    assert not (root / "reports/register.json").exists() and store_entries(root) == []


@pytest.mark.slow
def test_register_without_dvc_lock_stops_and_keeps_the_previous_record(cli):
    root = cli.root
    cli.register("always")
    before = (root / "reports/register.json").read_bytes()
    (root / "dvc.lock").unlink()
    put_model(root, "detector")
    proc = cli("register", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "error: dvc.lock: not found; the data hash of a model comes from the prepare stage's outputs"
    )
    assert "Traceback" not in proc.stderr
    assert (root / "reports/register.json").read_bytes() == before
    assert len(store_entries(root)) == 1


@pytest.mark.slow
def test_registering_the_same_model_again_reuses_its_store_entry(cli):
    root = cli.root
    tag = cli.register("always")  # and committed: the next run is on another commit
    record = (root / "reports/register.json").read_bytes()
    # a forced re-run (`dvc repro -f -s register`): same weights, threshold and test metrics,
    # another W&B run id
    (root / "reports/train").mkdir(parents=True)
    (root / "reports/train/run.json").write_text(json.dumps({"wandb_run_id": "other-run"}))
    again = cli("register")
    assert again.stdout.startswith(f"already in the store as {tag} (same weights sha256")
    assert (root / "reports/register.json").read_bytes() == record
    assert store_entries(root) == [tag.split(":")[1]]
    # another threshold is another model
    put_model(root, "always", threshold=0.6)
    cli("register")
    new_tag = json.loads((root / "reports/register.json").read_text())["model_tag"]
    assert new_tag != tag and len(store_entries(root)) == 2


@pytest.mark.slow
def test_a_tampered_entry_is_not_reused(cli):
    root = cli.root
    tag = cli.register("always")
    weights = entry_dir(root, tag) / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    cli("register")
    new_tag = json.loads((root / "reports/register.json").read_text())["model_tag"]
    assert new_tag != tag and len(store_entries(root)) == 2


@pytest.mark.slow
def test_wandb_run_id_comes_from_the_train_run_record(cli):
    import yaml

    root = cli.root
    (root / "reports/train").mkdir(parents=True)
    (root / "reports/train/run.json").write_text(
        json.dumps({"wandb_run_id": "abc123", "samples_per_s": 1.0})
    )
    tag = cli.register("always")
    model_yaml = yaml.safe_load((entry_dir(root, tag) / "model.yaml").read_text())
    assert model_yaml["labels"]["wandb_run_id"] == "abc123"
    assert model_yaml["metadata"]["wandb_run_id"] == "abc123"
    assert (
        model_yaml["metadata"]["git"]["commit"]
        == run(["git", "rev-parse", "HEAD~1"], root).stdout.strip()
    )
    # W&B off: null in run.json, an empty label and no metadata key
    (root / "reports/train/run.json").write_text(json.dumps({"wandb_run_id": None}))
    tag = cli.register("detector")
    model_yaml = yaml.safe_load((entry_dir(root, tag) / "model.yaml").read_text())
    assert model_yaml["labels"]["wandb_run_id"] == ""
    assert "wandb_run_id" not in model_yaml["metadata"]


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (
            "reports/evaluate/scores.json",
            "error: reports/evaluate/scores.json: not found (the evaluate stage's scores; "
            "run `dvc repro` first)\n",
        ),
        (
            "reports/evaluate/threshold.json",
            "error: reports/evaluate/threshold.json: not found (the chosen threshold; "
            "run `dvc repro` first)\n",
        ),
        (
            "models/fault_cnn/model.json",
            "error: models/fault_cnn/model.json: not found (the train stage's model; "
            "run `dvc repro` first)\n",
        ),
        (
            "models/fault_cnn/weights.safetensors",
            "error: models/fault_cnn/weights.safetensors: not found (run the train stage)\n",
        ),
    ],
)
def test_a_missing_input_of_register_is_named(cli, remove, message):
    put_model(cli.root, "always")
    (cli.root / remove).unlink()
    proc = cli("register", check=False)
    assert (proc.returncode, proc.stderr) == (1, message)
    assert store_entries(cli.root) == [] and not (cli.root / "reports/register.json").exists()


@pytest.mark.slow
def test_register_records_the_golden_set_in_the_store_entry(cli):
    """Up to 4 faults then healthy signals of the test split, 16 in all, the first by id, with
    the model's answers as the service computes them; an entry reused without a golden set (or
    with a malformed one) gets it again, the same."""
    import numpy as np
    from helpers.gate_project import N_FAULT, split_frame

    from faultwatch.model.io import load_model
    from faultwatch.serve.golden import GoldenError, load_golden

    root = cli.root
    tag = cli.register("detector")
    folder = entry_dir(root, tag)
    golden = load_golden(folder)
    split = split_frame().sort_values("id")
    faults, healthy = split[split.y == 1], split[split.y == 0]
    assert N_FAULT > 4
    assert golden.ids == faults.id.tolist()[:4] + healthy.id.tolist()[:12]
    assert golden.model_tag == tag and golden.threshold == 0.5
    by_id = split.set_index("id")["values"]
    assert golden.signals == [by_id[i].tolist() for i in golden.ids]
    expected = load_model(folder).predict_proba([np.asarray(s) for s in golden.signals])
    assert golden.probabilities == expected.tolist()
    # the detector flags exactly the faults
    assert golden.labels == ["fault"] * 4 + ["healthy"] * 12
    recorded = (folder / "golden.json").read_bytes()

    (folder / "golden.json").unlink()
    with pytest.raises(GoldenError, match=r"golden.json: not found; .*`dvc repro -f -s register`"):
        load_golden(folder)
    again = cli("register")
    assert again.stdout.startswith(f"already in the store as {tag}")
    assert (folder / "golden.json").read_bytes() == recorded
    (folder / "golden.json").write_text('{"model_tag": "fault_cnn:x", "ids": []}')
    with pytest.raises(GoldenError, match=r"malformed golden set .*dvc repro -f -s register"):
        load_golden(folder)
    cli("register")
    assert (folder / "golden.json").read_bytes() == recorded


@pytest.mark.slow
def test_an_unreadable_test_split_stops_register_with_a_named_error(cli):
    root = cli.root
    split = root / "data/prepared/test.parquet"
    split.write_bytes(split.read_bytes() + b"\n")
    put_model(root, "detector")
    proc = cli("register", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "error: data/prepared/test.parquet: not a readable parquet file ("
    ), proc.stderr
    assert "`dvc repro -f -s prepare`" in proc.stderr and "Traceback" not in proc.stderr
