"""The service's settings: the `FAULTWATCH_*` variables the server reads, as one object.

Each variable is declared once in `faultwatch.settings` (type, default, rule); this object
gathers the service's 20 of them, resolved once when the service is imported, and checks the
one rule that spans two (a batch no larger than the queue). `faultwatch serve --show-config`
prints the same object, so what a server will do can be read before it starts. The input
limits (`FAULTWATCH_MIN_LENGTH` ...) depend on the served model's metadata too: see
`faultwatch.serve.schema.ServingLimits`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultwatch import settings
from faultwatch.serve.predlog.entries import mask_url
from faultwatch.settings import (
    BATCHING_MODES,
    COLOUR_RULE,
    POSTGRES_SCHEMES,
    SYNC_MODES,
    SettingsError,
)

__all__ = [
    "BATCHING_MODES",
    "COLOUR_RULE",
    "POSTGRES_SCHEMES",
    "SYNC_MODES",
    "ServeSettings",
    "SettingsError",
]


def variable(field_name: str) -> str:
    """The environment variable that sets field `field_name` (`batch_size`:
    FAULTWATCH_BATCH_SIZE; a trailing `_s`, seconds, is not in the name)."""
    return f"FAULTWATCH_{field_name.upper()}".removesuffix("_S")


def _default(field_name: str) -> Any:
    return settings.setting(variable(field_name)).default


@dataclass(frozen=True)
class ServeSettings:
    """What each field means, its default and its rule: `faultwatch.settings.SETTINGS`."""

    model_tag: str | None = _default("model_tag")
    colour: str = _default("colour")
    # None: faultwatch.serve.predlog.default_target()
    prediction_log: Path | str | None = _default("prediction_log")
    prediction_log_sync: str = _default("prediction_log_sync")
    prediction_log_timeout_s: float = _default("prediction_log_timeout_s")
    batching: str = _default("batching")
    batch_size: int = _default("batch_size")
    max_queue: int = _default("max_queue")
    max_latency_ms: int = _default("max_latency_ms")
    torch_threads: int = _default("torch_threads")
    trace_predictions: bool = _default("trace_predictions")
    access_log: bool = _default("access_log")
    max_drain_bytes: int = _default("max_drain_bytes")
    log_signals: float = _default("log_signals")
    realised_f1_refresh_s: float = _default("realised_f1_refresh_s")
    # bearer tokens (faultwatch.serve.credentials); None: /feedback refuses, /predict is open
    labeller_tokens: Path | None = _default("labeller_tokens")
    predict_tokens: Path | None = _default("predict_tokens")
    # a fleet bento (faultwatch.serve.fleet); None: the bento's arguments say
    models: dict[str, str] | None = _default("models")
    max_loaded_models: int | None = _default("max_loaded_models")
    warm: tuple[str, ...] | None = _default("warm")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeSettings:
        """Read from `environ` (os.environ when None); SettingsError names a bad variable."""
        values = {f.name: settings.get(variable(f.name), environ) for f in dataclasses.fields(cls)}
        result = cls(**values)
        result._check()
        return result

    def _check(self) -> None:
        if self.batch_size > self.max_queue:
            raise SettingsError(
                f"FAULTWATCH_BATCH_SIZE ({self.batch_size}) must not exceed "
                f"FAULTWATCH_MAX_QUEUE ({self.max_queue})"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, keyed by the environment variable that sets each value; for printing:
        a postgresql:// URL's password is masked."""

        def shown(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            return mask_url(v) if isinstance(v, str) and v.startswith(POSTGRES_SCHEMES) else v

        return {variable(f.name): shown(getattr(self, f.name)) for f in dataclasses.fields(self)}
