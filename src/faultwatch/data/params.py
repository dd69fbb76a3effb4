"""The `data` and `split` sections of params.yaml (read by the prepare stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from faultwatch.params import Section

BUNDLED_PREFIX = "bundled:"  # a data set inside the installed sktime wheel
BUNDLED = "bundled:PLAID"


class DataParams(Section):
    source: str = BUNDLED
    # a number or a text; how it is matched with the file's labels: faultwatch.data.labels
    positive_label: str | int | float = "9"
    min_positive: int = Field(10, ge=1)
    min_length: int = Field(16, ge=2)
    max_length: int = Field(100_000, ge=2)
    limit: int | None = Field(None, ge=1, description="keep a stratified subset (tests, dry runs)")
    # NaN inside a signal: error, interpolate (linearly; leading/trailing gaps trimmed), or
    # drop the signal. Infinite values are an error in every mode.
    missing: Literal["error", "interpolate", "drop"] = "error"
    # keep the first N samples of every signal, so all have one length (a shorter one is an
    # error): removes signal length as a shortcut feature
    crop_length: int | None = Field(None, ge=2)
    # labelled production signals (`faultwatch retrain`): the files of <this>/<data.source as a
    # folder name> are appended to the training split (faultwatch.data.prepare.production_folder);
    # keep it under data/raw, the prepare stage's dependency in dvc.yaml
    production_dir: str | None = "data/raw/production"
    # multichannel sources (faultwatch.data.channels): the channels to keep, in this order;
    # empty: every channel, in the file's order. An error on a univariate source.
    channels: list[str] | None = None
    # the rows of the source this model learns from, by column value: {asset_type: P-100} or
    # {asset_type: [P-100, P-200]} (values compared as text). A column of a Parquet source (its
    # other columns are kept for this), or `label` in any source. A model group's data
    # (faultwatch.groups) is often the shared source with its own filter.
    filter: dict[str, str | int | float | list[str | int | float]] | None = None

    @field_validator("positive_label", mode="before")
    @classmethod
    def _not_a_boolean(cls, v: object) -> object:
        if isinstance(v, bool):
            raise ValueError(
                f"got the YAML boolean {v}; quote it ('{str(v).lower()}') if it is a label"
            )
        return v

    @field_validator("channels", mode="before")
    @classmethod
    def _numbers_as_names(cls, v: object) -> object:
        # a long CSV's channel column may hold numbers (1, 2, 3): its names are their text
        if isinstance(v, list):
            return [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
        return v

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("name at least one channel, or leave it empty for every channel")
        blank = [i for i, name in enumerate(v) if not name.strip()]
        if blank:
            raise ValueError(f"channel {blank[0] + 1} of the list is an empty name")
        twice = sorted({name for name in v if v.count(name) > 1})
        if twice:
            raise ValueError(f"{twice} named more than once")
        return v

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: dict | None) -> dict | None:
        if v is None:
            return v
        if not v:
            raise ValueError("name at least one column, or leave it empty for every row")
        empty = [k for k, x in v.items() if isinstance(x, list) and not x]
        if empty:
            raise ValueError(f"{empty[0]}: an empty list of values matches no row")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> DataParams:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) > max_length ({self.max_length})")
        if self.crop_length is not None and self.crop_length < self.min_length:
            raise ValueError(f"crop_length ({self.crop_length}) < min_length ({self.min_length})")
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
