"""params.yaml: the only source of parameters, validated once with pydantic."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from faultwatch.errors import ParamsError
from faultwatch.paths import display_path, project_root


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_names(cls, names: Mapping[str, Any]) -> Self:
        """The section from the names a notebook's parameters cell defines (`globals()`): a
        notebook builds its params in one call instead of repeating every name."""
        return cls.model_validate({k: names[k] for k in cls.model_fields if k in names})


# Section name -> "module:Class" of its model. Each model lives beside its stage's code, so a
# new section does not touch the other stages' dependencies, and this module stays cheap to import.
SECTIONS: dict[str, type[Section] | str] = {
    "data": "faultwatch.data.params:DataParams",
    "split": "faultwatch.data.params:SplitParams",
    "eda": "faultwatch.eda:EdaParams",
    "evaluate": "faultwatch.evaluate:EvaluateParams",
    "promote": "faultwatch.promote:PromoteParams",
    "augment": "faultwatch.augment:AugmentParams",
    "train": "faultwatch.model.params:TrainParams",
    "deploy": "faultwatch.deploy.analysis:DeployParams",
    "monitor": "faultwatch.monitor.params:MonitorParams",
    "review": "faultwatch.monitor.review:ReviewParams",
    "quality": "faultwatch.signal_quality:QualityParams",
    "serve": "faultwatch.package:ServeParams",
}


def section_model(name: str) -> type[Section]:
    """The model class of section `name`, imported from its stage's module on first use."""
    model = SECTIONS[name]
    if isinstance(model, str):
        module, _, cls = model.partition(":")
        model = getattr(importlib.import_module(module), cls)
    return model


def load_params(path: Path | str | None = None) -> dict[str, Any]:
    """The raw params.yaml mapping; `path` defaults to the project root's params.yaml."""
    path = Path(path) if path else project_root() / "params.yaml"
    shown = display_path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as e:
        raise ParamsError(f"{shown}: not found") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"{shown}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ParamsError(f"{shown}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model that `loc` points into."""
    for part in loc:
        field = model.model_fields.get(str(part))
        sub = field.annotation if field else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        model = sub
    return list(model.model_fields)


def section(name: str, raw: dict[str, Any] | None = None, source: str = "params.yaml") -> Any:
    """Validate one section; a bad key fails with its dotted name and the rule it broke."""
    raw = load_params() if raw is None else raw
    model = section_model(name)
    if name not in raw:
        # a misspelt section name would otherwise mean "all defaults", silently
        unknown = [k for k in raw if k not in SECTIONS]
        hint = _did_you_mean(name, unknown)
        if hint:
            raise ParamsError(f"{source}: section '{name}' not found{hint}")
    try:
        return model.model_validate(raw.get(name) or {})
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            key = ".".join([name, *(str(p) for p in err["loc"])])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                *parent, last = err["loc"]
                msg += _did_you_mean(str(last), _fields_at(model, tuple(parent)))
            msgs.append(f"{source}: {key}: {msg}")
        raise ParamsError("\n".join(msgs)) from None
