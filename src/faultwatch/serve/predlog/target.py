"""Which prediction log: a SQLite file or a postgresql:// URL, resolved once for every caller.

`FAULTWATCH_PREDICTION_LOG` holds a path or a URL; unset, the log is DEFAULT_PREDICTION_LOG
under the project root. A URL stays a str everywhere (`Path()` would turn its // into /). The
durability (`FAULTWATCH_PREDICTION_LOG_SYNC`, SYNC_MODES) and the lock timeout
(`FAULTWATCH_PREDICTION_LOG_TIMEOUT`) are resolved here too, for both backends. The variables,
their defaults, the schemes and the modes are declared in faultwatch.settings.
"""

from __future__ import annotations

from pathlib import Path

from faultwatch import settings
from faultwatch.paths import project_root
from faultwatch.serve.predlog.entries import PredictionLogError, mask_url
from faultwatch.settings import (
    DEFAULT_PREDICTION_LOG,
    POSTGRES_SCHEMES,
    SYNC_MODES,
    is_postgres_url,
)

ENV_PATH = "FAULTWATCH_PREDICTION_LOG"
ENV_SYNC = "FAULTWATCH_PREDICTION_LOG_SYNC"
ENV_TIMEOUT = "FAULTWATCH_PREDICTION_LOG_TIMEOUT"
# seconds a write waits for another writer's lock; below the service's 30 s request timeout
DEFAULT_TIMEOUT_S: float = settings.setting(ENV_TIMEOUT).default

__all__ = [
    "DEFAULT_PREDICTION_LOG",
    "DEFAULT_TIMEOUT_S",
    "ENV_PATH",
    "ENV_SYNC",
    "ENV_TIMEOUT",
    "POSTGRES_SCHEMES",
    "SYNC_MODES",
    "check_sync",
    "default_path",
    "default_target",
    "is_postgres_url",
    "resolve_target",
    "resolve_timeout",
    "show_target",
]


def default_target() -> Path | str:
    """`$FAULTWATCH_PREDICTION_LOG` (a path or a postgresql:// URL), else
    DEFAULT_PREDICTION_LOG under the project root."""
    env = settings.get(ENV_PATH)
    if env:
        return env
    try:
        return project_root() / DEFAULT_PREDICTION_LOG
    except FileNotFoundError:  # a bento runs outside the project: log beside it
        return Path.cwd() / DEFAULT_PREDICTION_LOG.name


def resolve_target(value: Path | str | None, root: Path) -> Path | str:
    """What a launcher passes on as FAULTWATCH_PREDICTION_LOG: a postgresql:// URL unchanged,
    a path made absolute (the server runs in another folder), nothing:
    `root`/DEFAULT_PREDICTION_LOG."""
    if not value:
        return root / DEFAULT_PREDICTION_LOG
    return value if is_postgres_url(value) else Path(value).resolve()


def show_target(target: Path | str) -> str:
    """The log `target` names, for messages and printed settings: a URL's password masked."""
    return mask_url(target) if is_postgres_url(target) else str(target)


def default_path() -> Path:
    """The SQLite default of `default_target` (kept for callers that need a file)."""
    target = default_target()
    if isinstance(target, str):
        raise PredictionLogError(f"{ENV_PATH} names a PostgreSQL database, not a file")
    return target


def check_sync(synchronous: str | None) -> str:
    """NORMAL or FULL, from the argument, else FAULTWATCH_PREDICTION_LOG_SYNC."""
    mode = (synchronous or settings.get(ENV_SYNC)).upper()
    if mode not in SYNC_MODES:
        raise ValueError(f"{ENV_SYNC}={mode!r}: expected one of {', '.join(SYNC_MODES)}")
    return mode


def resolve_timeout(timeout_s: float | None) -> float:
    """`timeout_s`, else FAULTWATCH_PREDICTION_LOG_TIMEOUT, else DEFAULT_TIMEOUT_S."""
    if timeout_s is None:
        return settings.get(ENV_TIMEOUT)
    return timeout_s
