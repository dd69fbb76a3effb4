"""The `train` section of params.yaml (pydantic only: importing it does not import torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from faultwatch.params import Section

# Keys that do not change what a run computes: a run interrupted under other values of these
# resumes from its checkpoint (e.g. max_epochs raised to train longer).
NOT_IN_RUN_KEY = frozenset(
    {
        "max_epochs",
        "patience",
        "num_workers",
        "model_dir",
        "report_dir",
        "checkpoint_root",
        "wandb",
        "wandb_project",
        # the family choice and the classical family's settings: not the CNN's trajectory
        "family",
        "classical",
    }
)


class ClassicalParams(Section):
    """`train.classical`: the classical family, the evaluate stage's random-forest baseline
    (faultwatch.model.classical), fitted on the prepared training split as that baseline is."""

    train_path: str = "data/prepared/train.parquet"
    n_estimators: int = Field(300, ge=1)
    feature_length: int = Field(256, ge=8, description="points of the resampled spectrum")
    fft_bands: int = Field(8, ge=1)


class TrainParams(Section):
    # the model family: the CNN, the classical model, or both with the better one on
    # validation kept (`best`; a tie keeps the CNN)
    family: Literal["cnn", "classical", "best"] = "cnn"
    classical: ClassicalParams = Field(default_factory=ClassicalParams)
    seed: int = 42
    train_path: str = "data/augmented/train.parquet"
    val_path: str = "data/prepared/val.parquet"
    model_dir: str = "models/fault_cnn"
    # what changes from run to run (W&B run id, timings) and the per-epoch history: kept out
    # of model_dir, so the same inputs give the same model folder
    report_dir: str = "reports/train"
    checkpoint_root: str = "checkpoints"
    # input and network
    length: int = Field(1024, ge=8, description="every signal is resampled to this many points")
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64, 64, 64], min_length=1)
    kernel_size: int = Field(9, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    # optimisation
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: anneal lr to 0 over max_epochs"
    )
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(30, ge=1)
    patience: int = Field(10, ge=1, description="epochs without a better val_pr_auc")
    pos_weight: float | Literal["auto"] | None = Field(
        "auto", description="BCE weight of the fault class; auto = healthy / fault in train"
    )
    # hardware: the same notebook on CPU, one GPU, or several (DDP)
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: str = "32-true"
    num_workers: int = Field(0, ge=0)
    deterministic: bool = True
    # tracking
    wandb: bool = True
    wandb_project: str = "faultwatch"

    @field_validator("channels")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(c < 1 for c in v):
            raise ValueError("every channel count must be at least 1")
        return v

    @field_validator("pos_weight")
    @classmethod
    def _pos_weight(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, float | int) and v <= 0:
            raise ValueError("must be positive, 'auto' or null")
        return v

    def run_key_fields(self) -> dict:
        """The params that define a run's trajectory (its checkpoint folder is named after them)."""
        ignored = NOT_IN_RUN_KEY
        if self.lr_schedule != "constant":
            ignored = ignored - {"max_epochs"}  # the schedule spans max_epochs
        return {k: v for k, v in self.model_dump().items() if k not in ignored}
