"""`faultwatch config`: every setting in effect (faultwatch.settings' table) and where its value
came from: the environment, params.yaml (where a params.yaml key takes the variable's place),
or the default. Passwords in URLs and keys are masked. A value the table's rule refuses is
shown as given, named on stderr, and the command exits 1."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultwatch import settings
from faultwatch.errors import FaultwatchError
from faultwatch.paths import project_root, project_store

ENVIRONMENT, DEFAULT, PARAMS = settings.ENVIRONMENT, settings.DEFAULT, "params.yaml"
MASK = "***"


@dataclass(frozen=True)
class Effective:
    """One setting as it stands here: its value, where that came from, and, where params.yaml
    gives one command another value, that value."""

    setting: settings.Setting
    value: Any
    source: str
    error: str | None = None
    params_value: Any = None  # for setting.params_for only

    def to_dict(self) -> dict[str, Any]:
        s = self.setting
        out = {
            "value": shown(s, self.value),
            "source": self.source,
            "default": s.shown_default(),
            "type": s.kind,
            "readers": list(s.readers),
            "doc": s.doc,
        }
        if self.error:
            out["error"] = self.error
        if self.params_value is not None:
            out["params"] = {
                "key": s.params_key,
                "value": shown(s, self.params_value),
                "for": s.params_for,
            }
        return out


def shown(s: settings.Setting, value: Any) -> Any:
    """`value` JSON-ready with its secret masked: a URL's password, a key whole."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if s.secret:
        return MASK
    return settings.mask_url(str(value)) if "://" in str(value) else str(value)


def text(r: Effective) -> str:
    """The value as the table prints it; unset: what the default means."""
    if r.value is None:
        return r.setting.shown_default()
    return settings.show(shown(r.setting, r.value))


# variables the CLI sets for every command before it runs (cli's _project_environment): at
# their default value they are the default, not the person's environment
def _cli_defaults(root: Path | None) -> dict[str, str]:
    defaults = {"WANDB_MODE": settings.setting("WANDB_MODE").default}
    if root is not None:
        defaults["BENTOML_HOME"] = str(project_store(root))
    return defaults


def _resolved_defaults(root: Path | None) -> dict[str, Path]:
    """What an unset variable comes to in this project, where the table's default is None."""
    if root is None:
        return {}
    return {
        "FAULTWATCH_ROOT": root,
        "BENTOML_HOME": project_store(root),
        "FAULTWATCH_PREDICTION_LOG": root / settings.DEFAULT_PREDICTION_LOG,
    }


def _params_value(raw: dict[str, Any] | None, key: str) -> Any:
    """params.yaml's value at the dotted `key`; None where it is absent or empty."""
    value: Any = raw
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def effective(
    root: Path | None, params: dict[str, Any] | None, env: Mapping[str, str] | None = None
) -> list[Effective]:
    """Every declared setting as it stands with this project, params.yaml and environment
    (`env`, else this process's)."""
    cli_defaults, resolved = _cli_defaults(root), _resolved_defaults(root)
    rows = []
    for s in settings.SETTINGS:
        source = settings.source(s.name, env)
        if source == ENVIRONMENT and cli_defaults.get(s.name) == settings.raw(s.name, env):
            source = DEFAULT
        try:
            value, error = settings.get(s.name, env), None
        except settings.SettingsError as e:
            value, error = settings.raw(s.name, env), str(e)
        if value is None:
            value = resolved.get(s.name)
        from_params = _params_value(params, s.params_key) if s.params_key else None
        if from_params is not None and not s.params_for:  # faultwatch sets the variable from it
            value, source = _scaled(s, from_params), f"{PARAMS} {s.params_key}"
            from_params = None
        rows.append(Effective(s, value, source, error, from_params))
    return rows


def _scaled(s: settings.Setting, value: Any) -> Any:
    return int(value * s.params_scale) if s.params_scale != 1 else value


def print_table(rows: list[Effective]) -> None:
    width = max(len(r.setting.name) for r in rows)
    for r in rows:
        source = f"{r.source}: INVALID" if r.error else r.source
        print(f"{r.setting.name:<{width}}  {text(r)}  ({source})")
        if r.params_value is not None:
            s, also = r.setting, settings.show(shown(r.setting, r.params_value))
            print(f"{'':<{width}}  {s.params_for}: {also} ({PARAMS} {s.params_key})")


def cmd_config(args: argparse.Namespace) -> int:
    try:
        root: Path | None = project_root()
    except FileNotFoundError:
        root = None  # outside a project: no params.yaml, BentoML's own store
    try:
        from faultwatch.params import load_params  # pydantic: not at every command's start

        params = load_params(root / "params.yaml") if root is not None else None
    except FaultwatchError as e:
        print(f"warning: {e}; its values are left out", file=sys.stderr)
        params = None
    rows = effective(root, params)
    if args.json:
        print(json.dumps({r.setting.name: r.to_dict() for r in rows}, indent=2))
    else:
        print_table(rows)
    errors = [r.error for r in rows if r.error]
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


def register(sub: argparse._SubParsersAction) -> None:
    cfg = sub.add_parser(
        "config",
        help="print every setting in effect (environment variables, params.yaml) and its source",
    )
    cfg.add_argument("--json", action="store_true", help="as JSON, with each setting's details")
    cfg.set_defaults(func=cmd_config)
