"""train(): determinism, resume after an interruption, W&B offline, the 02/03 notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.signals import FAULT_LABEL, write_splits
from pytorch_lightning.callbacks import Callback

from faultwatch.model.io import load_model
from faultwatch.model.params import TrainParams
from faultwatch.train import run_key, train, wandb_mode, write_run_record

# module fixtures train models or run the pipeline: more than the default per-test timeout
pytestmark = pytest.mark.timeout(600)

TINY = {
    "train_path": "data/prepared/train.parquet",
    "length": 64,
    "channels": [4, 8],
    "kernel_size": 5,
    "batch_size": 8,
    "max_epochs": 2,
    "wandb": False,
    "accelerator": "cpu",
}
METRICS = ["epoch", "train_loss", "val_loss", "val_pr_auc"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    (root / "params.yaml").write_text("{}\n")
    write_splits(root)
    return root


@pytest.fixture(scope="module")
def reference(root):
    """One uninterrupted run of the tiny params."""
    return train(TrainParams(**TINY, model_dir="models/ref"), root)


class CrashAtEpoch(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_run_writes_the_model_and_cleans_its_checkpoints(root, reference):
    assert reference.epochs_run == 2 and len(reference.history) == 2
    assert reference.resumed_from_epoch is None and reference.wandb_run_id is None
    assert reference.samples_per_s > 0 and 0 <= reference.best_val_pr_auc <= 1
    assert not (root / "checkpoints" / reference.run_key).exists()
    meta = json.loads((root / "models/ref/model.json").read_text())
    assert meta["input_length"] == 64 and meta["positive_label"] == FAULT_LABEL
    assert meta["best_val_pr_auc"] == round(reference.best_val_pr_auc, 6)
    best = reference.history.loc[reference.history.val_score.idxmax()]
    assert reference.best_epoch == best.epoch and reference.best_val_pr_auc == pytest.approx(
        best.val_pr_auc
    )
    # the saved weights are the best epoch's: scoring val again reproduces its PR-AUC
    from sklearn.metrics import average_precision_score

    val = pd.read_parquet(root / "data/prepared/val.parquet")
    proba = load_model(root / "models/ref").predict_proba(list(val["values"]))
    assert average_precision_score(val["y"], proba) == pytest.approx(
        reference.best_val_pr_auc, abs=1e-5
    )


def test_same_seed_same_metrics_and_weights(root, reference):
    again = train(TrainParams(**TINY, model_dir="models/again"), root)
    pd.testing.assert_frame_equal(again.history[METRICS], reference.history[METRICS])
    assert (root / "models/again/weights.safetensors").read_bytes() == (
        root / "models/ref/weights.safetensors"
    ).read_bytes()
    other = train(TrainParams(**{**TINY, "seed": 1}, model_dir="models/other"), root)
    assert not np.allclose(other.history["train_loss"], reference.history["train_loss"])


def test_interrupted_run_resumes_from_last_checkpoint(root, reference):
    params = TrainParams(**TINY, model_dir="models/resumed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(params, root, callbacks=[CrashAtEpoch(1)])
    run_dir = root / "checkpoints" / reference.run_key  # model_dir is not part of the key
    assert (run_dir / "ckpt" / "last.ckpt").is_file()
    assert not (root / "models/resumed").exists()

    resumed = train(params, root)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_run == 2
    assert list(resumed.history.epoch) == [0, 1]  # epoch 0 comes from the checkpoint
    # seeded shuffles and the saved RNG state: the same numbers as the uninterrupted run
    pd.testing.assert_frame_equal(resumed.history[METRICS], reference.history[METRICS])
    assert not run_dir.exists()


def test_run_key_follows_params_and_data(root):
    files = [root / "data/prepared/train.parquet", root / "data/prepared/val.parquet"]
    base = TrainParams(**TINY)
    key = run_key(base, files)
    assert run_key(base.model_copy(update={"max_epochs": 50, "patience": 3}), files) == key
    assert run_key(base.model_copy(update={"lr": 3e-3}), files) != key
    assert run_key(base, files[::-1]) != key
    cosine = base.model_copy(update={"lr_schedule": "cosine"})  # its schedule spans max_epochs
    assert run_key(cosine.model_copy(update={"max_epochs": 50}), files) != run_key(cosine, files)


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "offline"),
        ({"WANDB_MODE": "online"}, "offline"),  # no key: stays offline
        ({"WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40}, "online"),
        ({"WANDB_MODE": "offline", "WANDB_API_KEY": "x" * 40}, "offline"),
        ({"WANDB_MODE": "disabled"}, "disabled"),
    ],
)
def test_wandb_mode(env, mode, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode(env) == mode


def test_wandb_offline_run_holds_params_and_metrics(root, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = train(TrainParams(**{**TINY, "wandb": True}, model_dir="models/wb"), root)
    assert result.wandb_mode == "offline" and result.wandb_run_id
    runs = list((root / "wandb").glob(f"offline-run-*-{result.wandb_run_id}"))
    assert len(runs) == 1
    blob = (runs[0] / f"run-{result.wandb_run_id}.wandb").read_bytes()
    # hyperparameters, per-epoch metric names, and the logged values themselves
    for key in (
        "lr",
        "kernel_size",
        "run_key",
        "train_loss",
        "val_loss",
        "val_pr_auc",
        "best_val_pr_auc",
    ):
        assert key.encode() in blob, key
    for value in result.history["val_pr_auc"]:
        assert json.dumps(float(value)).encode() in blob
    # the run id is the run record's, never the model folder's (same inputs, same folder)
    assert "wandb_run_id" not in json.loads((root / "models/wb/model.json").read_text())
    write_run_record(result, root / "reports/wb")
    assert json.loads((root / "reports/wb/run.json").read_text())["wandb_run_id"] == (
        result.wandb_run_id
    )


# ---------------------------------------------------------------- the notebooks, through the runner

TINY_STAGES = {
    "augment": {"target_fault_ratio": 0.3},
    "train": {k: v for k, v in TINY.items() if k not in ("train_path", "wandb")}
    | {"max_epochs": 3},
}


@pytest.mark.slow
def test_augment_and_train_notebooks_run_as_stages(tmp_path, monkeypatch):
    from helpers.projects import copy_project

    from faultwatch.cli import main

    project = copy_project(tmp_path / "proj", TINY_STAGES)
    monkeypatch.chdir(project)
    monkeypatch.setenv("FAULTWATCH_ROOT", str(project))
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["prepare"]) == 0

    assert main(["nb", "run", "notebooks/02_augment.ipynb"]) == 0
    aug = json.loads((project / "reports/metrics/augment.json").read_text())
    train_df = pd.read_parquet(project / "data/prepared/train.parquet")
    assert aug["n_train_before"] == len(train_df) and aug["n_fault_before"] == int(train_df.y.sum())
    assert aug["fault_ratio_after"] >= 0.3 and aug["n_fault_after"] > aug["n_fault_before"]
    assert len(pd.read_parquet(project / "data/augmented/train.parquet")) == aug["n_train_after"]
    assert (project / "reports/notebooks/02_augment.html").stat().st_size > 0

    assert main(["nb", "run", "notebooks/03_train.ipynb"]) == 0
    tr = json.loads((project / "reports/metrics/train.json").read_text())
    assert sorted(tr) == ["best_epoch", "best_val_pr_auc", "epochs_run", "stopped_early"]
    assert tr["epochs_run"] == 3 and 0 <= tr["best_val_pr_auc"] <= 1
    meta = json.loads((project / "models/fault_cnn/model.json").read_text())
    record = json.loads((project / "reports/train/run.json").read_text())
    assert record["samples_per_s"] > 0 and "wandb_run_id" not in meta
    assert list((project / "wandb").glob(f"offline-run-*-{record['wandb_run_id']}"))
    assert (
        meta["input_length"]
        == yaml.safe_load((project / "params.yaml").read_text())["train"]["length"]
    )
    executed = (project / "reports/notebooks/03_train.ipynb").read_text()
    assert str(project) not in executed  # no absolute paths in the executed notebook


def test_training_prints_nothing_that_is_not_the_users_business(root, monkeypatch, capfd, caplog):
    """Lightning's litlogger advert, its internal LeafSpec deprecation and wandb's warning about
    an option Lightning passes are not the user's business; training stays quiet about them."""
    import warnings

    monkeypatch.setenv("WANDB_MODE", "offline")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(TrainParams(**{**TINY, "wandb": True}, model_dir="models/quiet"), root)
    out = capfd.readouterr()
    text = out.out + out.err + caplog.text
    assert "litlogger" not in text and "anonymous setting" not in text
    assert [str(w.message) for w in caught if "LeafSpec" in str(w.message)] == []


@pytest.mark.slow
def test_in_a_kernel_lightnings_hardware_lines_are_no_error_box(tmp_path):
    """03_train in a Jupyter kernel, as JupyterLab runs it: Lightning's "GPU available: ..."
    lines are information, not a red stderr box under the cell: they land in the cell's plain
    output (stdout); stderr of every cell holds none of Lightning's information lines."""
    import nbformat
    from helpers.cli import run
    from helpers.projects import copy_project

    project = copy_project(tmp_path / "proj", TINY_STAGES)
    run(["faultwatch", "prepare"], project)
    small = ["train_path=data/prepared/train.parquet", "length=64", "channels=[4, 8]"]
    small += ["kernel_size=5", "batch_size=8", "max_epochs=1", "wandb=false", "accelerator=cpu"]
    argv = ["faultwatch", "nb", "run", "notebooks/03_train.ipynb", "--kernel", "--no-html"]
    run([*argv, *(a for p in small for a in ("-p", p))], project)
    executed = project / "reports/adhoc/03_train/reports/notebooks/03_train.ipynb"
    streams = [
        o
        for cell in nbformat.read(executed, as_version=4).cells
        for o in cell.get("outputs", [])
        if o.output_type == "stream"
    ]
    errors = "".join(o.text for o in streams if o.name == "stderr")
    assert "available:" not in errors and "GPU" not in errors, errors
    told = "".join(o.text for o in streams if o.name == "stdout")
    assert "GPU available: False, used: False" in told, streams
