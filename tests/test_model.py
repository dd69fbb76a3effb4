"""The network, the LightningModule, the DataModule, and the saved-model format."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.signals import FAULT_LABEL, make_split, write_splits
from torch import nn

from faultwatch.errors import FaultwatchError
from faultwatch.model.datamodule import EpochSeededSampler, SignalDataModule
from faultwatch.model.io import ModelError, WeightsTampered, load_model, save_model
from faultwatch.model.module import FaultClassifier
from faultwatch.model.network import FaultCNN
from faultwatch.preprocess import to_matrix

# module fixtures train models or run the pipeline: more than the default per-test timeout
pytestmark = pytest.mark.timeout(600)

LENGTH = 64


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    return write_splits(tmp_path_factory.mktemp("data"))


@pytest.fixture
def network() -> FaultCNN:
    torch.manual_seed(0)
    return FaultCNN(channels=[4, 8], kernel_size=5, dropout=0.1)


@pytest.mark.parametrize("length", [8, 64, 333])
def test_network_gives_one_logit_per_signal_at_any_length(network, length):
    network.eval()
    assert network(torch.randn(5, length)).shape == (5,)
    assert network(torch.randn(5, 1, length)).shape == (5,)


def test_epoch_seeded_sampler_depends_on_seed_and_epoch_only():
    a, b = EpochSeededSampler(50, seed=1), EpochSeededSampler(50, seed=1)
    first = list(a)
    assert sorted(first) == list(range(50)) and list(b) == first
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def test_datamodule_uses_the_shared_transform(splits):
    dm = SignalDataModule(
        splits["train"], splits["val"], splits["test"], length=LENGTH, batch_size=8
    )
    dm.setup("fit")
    x, y = dm.datasets["train"].tensors
    np.testing.assert_array_equal(x.numpy(), to_matrix(dm.frames["train"]["values"], LENGTH))
    assert x.dtype == torch.float32 and y.dtype == torch.float32 and int(y.sum()) == 6
    assert dm.class_counts("train") == (34, 6) and dm.positive_label() == FAULT_LABEL
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape == (8, LENGTH)
    assert "test" not in dm.datasets  # fit does not read the test split
    with pytest.raises(FaultwatchError, match="no such split file"):
        SignalDataModule(splits["train"], splits["val"].with_name("nope.parquet")).setup("fit")


def test_fault_classifier_fast_dev_run(splits, network, tmp_path):
    import pytorch_lightning as pl

    model = FaultClassifier(
        network,
        optimizer=partial(torch.optim.AdamW, lr=1e-3),
        loss=nn.BCEWithLogitsLoss(pos_weight=torch.tensor(5.0)),
    )
    dm = SignalDataModule(
        splits["train"], splits["val"], splits["test"], length=LENGTH, batch_size=8
    )
    trainer = pl.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    m = trainer.callback_metrics
    assert {"train_loss", "val_loss", "val_pr_auc"} <= set(m)
    assert all(np.isfinite(float(m[k])) for k in ("train_loss", "val_loss"))
    assert 0.0 <= float(m["val_pr_auc"]) <= 1.0
    trainer.test(model, datamodule=dm, verbose=False)
    assert {"test_loss", "test_pr_auc"} <= set(trainer.callback_metrics)
    assert "network" not in model.hparams and "optimizer" not in model.hparams


def test_optional_scheduler_steps_per_epoch(network):
    model = FaultClassifier(network, partial(torch.optim.AdamW, lr=1e-3), nn.BCEWithLogitsLoss())
    assert isinstance(model.configure_optimizers(), torch.optim.AdamW)
    cosine = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=5)
    model = FaultClassifier(
        network, partial(torch.optim.AdamW, lr=1e-3), nn.BCEWithLogitsLoss(), cosine
    )
    config = model.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "epoch"
    assert isinstance(
        config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR
    )


def test_training_step_lowers_the_loss(splits, network):
    """The shared model_step learns: a few steps on one batch reduce its loss."""
    model = FaultClassifier(network, partial(torch.optim.Adam, lr=1e-2), nn.BCEWithLogitsLoss())
    dm = SignalDataModule(splits["train"], splits["val"], length=LENGTH, batch_size=40)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    opt = model.configure_optimizers()
    first = model.model_step(batch)[0].detach().item()
    for _ in range(30):
        opt.zero_grad()
        model.model_step(batch)[0].backward()
        opt.step()
    assert model.model_step(batch)[0].detach().item() < first


def _meta() -> dict:
    return {"input_length": LENGTH, "positive_label": FAULT_LABEL, "wandb_run_id": "abc123"}


def test_save_load_round_trip_gives_identical_probabilities(network, tmp_path):
    network.eval()
    written = save_model(tmp_path / "m", network, _meta())
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta == written
    assert meta["architecture"] == "FaultCNN"
    assert meta["architecture_args"] == {"channels": [4, 8], "kernel_size": 5, "dropout": 0.1}
    assert meta["preprocessing"] == {"resample": "linear", "normalise": "zscore_per_signal"}
    assert meta["threshold"] == 0.5 and meta["class_names"] == ["healthy", FAULT_LABEL]
    assert meta["wandb_run_id"] == "abc123" and len(meta["weights_sha256"]) == 64

    loaded = load_model(tmp_path / "m")
    raw = list(make_split(12, 3, seed=5, prefix="x")["values"])  # variable lengths
    x = to_matrix(raw, LENGTH)
    with torch.no_grad():
        expected = torch.sigmoid(network(torch.from_numpy(x))).numpy()
    p_raw = loaded.predict_proba(raw)
    p_pre = loaded.predict_proba(x)  # float32 (n, input_length): taken as preprocessed
    assert p_raw.shape == (12,) and np.all((p_raw >= 0) & (p_raw <= 1))
    np.testing.assert_array_equal(p_raw, p_pre)
    np.testing.assert_array_equal(p_raw, expected.astype(np.float64))
    # a raw batch of equal-length float64 rows is preprocessed, not mistaken for model input
    same_len = np.stack([np.resize(r, 100) for r in raw])
    np.testing.assert_array_equal(
        loaded.predict_proba(same_len), loaded.predict_proba(list(same_len))
    )
    # same weights, same bytes
    save_model(tmp_path / "m2", loaded.network, _meta())
    assert (tmp_path / "m2" / "weights.safetensors").read_bytes() == (
        tmp_path / "m" / "weights.safetensors"
    ).read_bytes()


def test_tampered_weights_are_refused(network, tmp_path):
    save_model(tmp_path / "m", network, _meta())
    path = tmp_path / "m" / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsTampered, match="sha256"):
        load_model(tmp_path / "m")
    assert issubclass(WeightsTampered, FaultwatchError)


def test_load_names_what_is_wrong(network, tmp_path):
    with pytest.raises(ModelError, match="model.json"):
        load_model(tmp_path)
    save_model(tmp_path / "m", network, _meta())
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["preprocessing"] = {"resample": "linear", "normalise": "minmax"}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="preprocessing"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelError, match="input_length"):
        save_model(tmp_path / "n", network, {"positive_label": "F"})


def test_loading_imports_no_lightning():
    import subprocess
    import sys

    code = "import sys, faultwatch.model.io; print('pytorch_lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
