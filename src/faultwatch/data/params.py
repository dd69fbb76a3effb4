"""The `data` and `split` sections of params.yaml (read by the prepare stage)."""

from __future__ import annotations

from pydantic import Field, model_validator

from faultwatch.params import Section

BUNDLED = "bundled:PLAID"


class DataParams(Section):
    source: str = BUNDLED
    positive_label: str = "9"
    min_positive: int = Field(10, ge=1)
    min_length: int = Field(16, ge=2)
    max_length: int = Field(100_000, ge=2)
    limit: int | None = Field(None, ge=1, description="keep a stratified subset (tests, dry runs)")

    @model_validator(mode="after")
    def _bounds(self) -> DataParams:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) > max_length ({self.max_length})")
        return self


class SplitParams(Section):
    seed: int = 42
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    out_dir: str = "data/prepared"

    @model_validator(mode="after")
    def _fractions(self) -> SplitParams:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self
