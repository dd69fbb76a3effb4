"""Every declared output of every stage changes only when the whole stage succeeded.

One tiny pipeline is run with `dvc repro` in a temporary copy; then each stage is broken on
purpose (a notebook whose last cell fails, bad data, a broken dependency, a command that does
not start) and re-run: every output dvc.yaml declares (metrics included) must stay
byte-identical. A forced re-train on the same inputs must leave the downstream stages clean.
"""

from __future__ import annotations

import hashlib
import json

import nbformat
import pytest
import yaml
from helpers.cli import run, store_env
from helpers.projects import copy_tree

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def declared_outputs(root) -> dict[str, list[str]]:
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    outs = {}
    for name, stage in spec["stages"].items():
        paths = []
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key) or []:
                paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
        outs[name] = paths
    return outs


def fingerprint(root) -> dict[str, str]:
    """sha256 of every file of every declared output (a folder: each file in it)."""
    prints = {}
    for paths in declared_outputs(root).values():
        for rel in paths:
            path = root / rel
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in files:
                key = str(f.relative_to(root))
                prints[key] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else "-"
    return prints


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_pipeline):
    return copy_tree(tiny_pipeline[0], tmp_path_factory.mktemp("outputs") / "proj")


def test_every_declared_output_exists_after_a_run(pipeline):
    prints = fingerprint(pipeline)
    missing = [k for k, v in prints.items() if v == "-"]
    assert missing == []
    assert "models/fault_cnn/weights.safetensors" in prints
    assert "reports/train/run.json" in prints and "reports/evaluate/scores.json" in prints


def _append_failing_cell(root, notebook: str) -> bytes:
    path = root / notebook
    original = path.read_bytes()
    nb = nbformat.read(path, 4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('broken on purpose')"))
    nbformat.write(nb, path)
    return original


@pytest.mark.parametrize(
    "stage, notebook",
    [
        ("eda", "notebooks/01_eda.ipynb"),
        ("augment", "notebooks/02_augment.ipynb"),
        ("train", "notebooks/03_train.ipynb"),
        ("evaluate", "notebooks/04_evaluate.ipynb"),
    ],
)
def test_a_stage_whose_last_cell_fails_leaves_every_output(pipeline, stage, notebook):
    before = fingerprint(pipeline)
    original = _append_failing_cell(pipeline, notebook)
    try:
        proc = run(["dvc", "repro", "-s", stage], pipeline, check=False, **store_env(pipeline))
        assert proc.returncode != 0
        assert "RuntimeError: broken on purpose" in proc.stderr + proc.stdout
        assert fingerprint(pipeline) == before
        assert (pipeline / "reports/notebooks" / f"{notebook[10:-6]}.failed.ipynb").is_file()
        assert not list((pipeline / ".faultwatch/staging").iterdir())  # staging cleaned up
    finally:
        (pipeline / notebook).write_bytes(original)


def test_prepare_with_bad_data_leaves_every_output(pipeline):
    before = fingerprint(pipeline)
    raw = pipeline / "data/raw/tiny.tsv"
    original = raw.read_bytes()
    raw.write_text("fault\t1.0\tinf\t2.0\n")
    try:
        proc = run(["dvc", "repro", "-s", "prepare"], pipeline, check=False, **store_env(pipeline))
        assert proc.returncode != 0 and "rule 'values_finite'" in proc.stderr + proc.stdout
        assert fingerprint(pipeline) == before
    finally:
        raw.write_bytes(original)


@pytest.mark.parametrize(
    "stage, dependency, broken",
    [
        ("register", "reports/evaluate/threshold.json", '{"threshold": "high"}'),
        ("package", "bentofile.yaml", "service: [not, a, service\n"),
    ],
)
def test_register_and_package_failing_leave_their_outputs(pipeline, stage, dependency, broken):
    before = fingerprint(pipeline)
    path = pipeline / dependency
    original = path.read_bytes()
    path.write_text(broken)
    try:
        proc = run(["dvc", "repro", "-s", stage], pipeline, check=False, **store_env(pipeline))
        assert proc.returncode != 0
        after = fingerprint(pipeline)
        after.pop(dependency, None)
        before.pop(dependency, None)
        assert after == before
    finally:
        path.write_bytes(original)


def test_a_command_that_does_not_start_leaves_the_metrics(pipeline):
    """Non-persistent outputs (cache: false metrics among them) are deleted by DVC before the
    command runs: with every output persistent, a stage that cannot start loses nothing."""
    before = fingerprint(pipeline)
    dvc_yaml = pipeline / "dvc.yaml"
    original = dvc_yaml.read_text()
    spec = yaml.safe_load(original)
    spec["stages"]["evaluate"]["cmd"] = "bin/no-such-command"
    dvc_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        proc = run(["dvc", "repro", "-s", "evaluate"], pipeline, check=False, **store_env(pipeline))
        assert proc.returncode != 0
        assert fingerprint(pipeline) == before
    finally:
        dvc_yaml.write_text(original)


def test_forced_retrain_on_the_same_inputs_leaves_downstream_clean(pipeline):
    model = fingerprint(pipeline)
    run_ids = [json.loads((pipeline / "reports/train/run.json").read_text())]  # the first run's
    # -s: the train stage alone (without it, -f reruns prepare and augment first)
    run(["dvc", "repro", "-f", "-s", "train"], pipeline, **store_env(pipeline))
    run_ids.append(json.loads((pipeline / "reports/train/run.json").read_text()))
    after = fingerprint(pipeline)
    model_files = [k for k in model if k.startswith("models/fault_cnn/")]
    assert model_files and all(after[k] == model[k] for k in model_files)
    assert run_ids[0]["wandb_run_id"] != run_ids[1]["wandb_run_id"]  # a new W&B run each time
    # every stage of the project (a plain `dvc status`)
    status = json.loads(run(["dvc", "status", "--json"], pipeline, **store_env(pipeline)).stdout)
    assert status == {}, status  # evaluate, register and package: up to date, nothing new
    meta = json.loads((pipeline / "models/fault_cnn/model.json").read_text())
    assert "wandb_run_id" not in meta


def test_declared_metrics_are_the_figures_worth_comparing(pipeline):
    shown = run(["dvc", "metrics", "show"], pipeline, **store_env(pipeline)).stdout.splitlines()
    assert shown[0].split() == [
        "Path",
        "baseline.always_healthy_accuracy",
        "baseline.classical_f1",
        "baseline.classical_pr_auc",
        "best_epoch",
        "best_val_pr_auc",
        "epochs_run",
        "stopped_early",
        "test.f1",
        "test.pr_auc",
        "test.precision",
        "test.recall",
        "threshold",
    ]
    assert max(map(len, shown)) < 300
    ignored = run(
        ["git", "check-ignore", "dvc_plots/index.html"],
        pipeline,
        check=False,
        **store_env(pipeline),
    )
    assert ignored.returncode == 0  # `dvc plots show` output never lands in a commit
