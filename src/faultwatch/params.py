"""params.yaml: the only source of parameters, validated once with pydantic."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from faultwatch.errors import ParamsError
from faultwatch.paths import project_root

BUNDLED = "bundled:PLAID"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    source: str = BUNDLED
    positive_label: str = "3"
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


class EdaParams(Section):
    data_dir: str = "data/prepared"
    examples_per_class: int = Field(2, ge=1)
    max_classes_plotted: int = Field(12, ge=1)


# Section name -> its model, or "module:Class" for models that live beside their stage's code
# (imported only when that section is validated, so this module stays cheap to import).
SECTIONS: dict[str, type[Section] | str] = {
    "data": DataParams,
    "split": SplitParams,
    "eda": EdaParams,
    "promote": "faultwatch.promote:PromoteParams",
}


def section_model(name: str) -> type[Section]:
    model = SECTIONS[name]
    if isinstance(model, str):
        module, _, cls = model.partition(":")
        model = getattr(importlib.import_module(module), cls)
    return model


def load_params(path: Path | str | None = None) -> dict[str, Any]:
    """The raw params.yaml mapping; `path` defaults to the project root's params.yaml."""
    path = Path(path) if path else project_root() / "params.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as e:
        raise ParamsError(f"{path}: not found") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def section(name: str, raw: dict[str, Any] | None = None, source: str = "params.yaml") -> Any:
    """Validate one section; a bad key fails with its dotted name and the rule it broke."""
    raw = load_params() if raw is None else raw
    model = section_model(name)
    try:
        return model.model_validate(raw.get(name) or {})
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            key = ".".join([name, *(str(p) for p in err["loc"])])
            msgs.append(f"{source}: {key}: {err['msg']}")
        raise ParamsError("\n".join(msgs)) from None
