"""Every environment variable faultwatch reads, declared once: name, type, default, what it does,
who reads it.

    from faultwatch import settings
    settings.get("FAULTWATCH_BATCH_SIZE")            # 64, or the environment's value as an int
    settings.get("FAULTWATCH_BATCH_SIZE", environ)   # the same, from another mapping

`get` reads the environment when it is called (never at import), so a value set by a test or by
a parent command is seen. An empty value counts as unset. A value the parser refuses raises
`SettingsError` naming the variable, the value and the rule; an undeclared name is a
programming error (KeyError). `faultwatch config` prints the whole table with each value in
effect and where it came from; the README's table of variables is checked against `SETTINGS`
by tests/test_settings.py.

It sits in the lowest layer: it imports the standard library and faultwatch.errors only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from faultwatch.errors import FaultwatchError

BATCHING_MODES = ("queue", "bentoml")
SYNC_MODES = ("NORMAL", "FULL")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
CONTAINER_ENGINES = ("podman", "docker")
COLOUR_RULE = re.compile(r"[A-Za-z0-9_-]{0,32}")
# the prediction log's default, relative to the project root
DEFAULT_PREDICTION_LOG = Path("reports") / "serving" / "predictions.sqlite"

ENVIRONMENT = "environment"
DEFAULT = "default"


def mask_url(url: str) -> str:
    """`url` with its password (user:password@ or ?password=) replaced by ***: for messages,
    logs and printed settings."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    if not netloc:  # urlunsplit would drop the // of postgresql:///db (a unix socket)
        return url.replace(parts.query, query, 1) if query != parts.query else url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class SettingsError(FaultwatchError, ValueError):
    """An environment variable holds a value faultwatch cannot use; names it, the value and the
    rule. A ValueError too, for callers that caught the parse error it replaces."""


@dataclass(frozen=True)
class Setting:
    """One row of the table. `parse` turns a non-empty raw value into the typed value or raises
    ValueError with the rule broken."""

    name: str
    kind: str  # the type, as the README's table and `faultwatch config` show it
    parse: Callable[[str], Any]
    default: Any
    readers: tuple[str, ...]  # faultwatch's modules, relative to the package
    doc: str
    # what the default means where `default` alone does not say it (None: resolved elsewhere)
    default_text: str | None = None
    secret: bool = False  # printed masked (a key); a URL's password is masked whatever this says
    # params.yaml's key whose value takes this variable's place where it is set: for the command
    # `params_for` names, or (params_for "") everywhere, the variable being set from it (times
    # `params_scale`) by faultwatch itself; `faultwatch config` shows it as the source
    params_key: str | None = None
    params_for: str = ""
    params_scale: int = 1

    def shown_default(self) -> str:
        """The default as the README's table writes it."""
        return self.default_text if self.default_text is not None else show(self.default)


def show(value: Any) -> str:
    """A value as printed in tables: numbers without a trailing .0, booleans as 0/1."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if value == "":
        return "empty"
    return str(value)


# --------------------------------------------------------------------------- parsers
def text(raw: str) -> str:
    return raw


def anything_set(raw: str) -> bool:
    """Set to any non-empty value: true (a marker a parent process sets)."""
    return True


def flag(raw: str) -> bool:
    if raw.lower() not in ("0", "1", "true", "false"):
        raise ValueError("expected 0 or 1")
    return raw.lower() in ("1", "true")


def number(raw: str) -> float:
    value = float(raw)
    if value != value:  # NaN passes every range check
        raise ValueError("expected a number, got NaN")
    return value


def at_least_one(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def fraction(raw: str) -> float:
    value = number(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            "expected a fraction from 0 to 1 (the share of signals logged raw; 0 logs none, 1 all)"
        )
    return value


def positive_seconds(raw: str) -> float:
    value = number(raw)
    if not value > 0:
        raise ValueError("expected seconds, more than 0")
    return value


def models_map(raw: str) -> dict[str, str]:
    """A JSON object of group name -> store tag ("name:version")."""
    import json

    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if (
        not isinstance(value, dict)
        or not value
        or not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items())
    ):
        raise ValueError('expected a non-empty JSON object {"group": "name:version", ...}')
    return value


def names_list(raw: str) -> tuple[str, ...]:
    """Comma-separated names; empty: none."""
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def one_of(choices: tuple[str, ...], *, upper: bool = False) -> Callable[[str], str]:
    """A parser accepting `choices` (compared upper-cased where `upper`; the value kept as
    given)."""

    def parse(raw: str) -> str:
        if (raw.upper() if upper else raw) not in choices:
            raise ValueError(f"expected {' or '.join(choices)}")
        return raw

    return parse


def engine_name(raw: str) -> str:
    if raw not in CONTAINER_ENGINES:
        raise ValueError("expected 'podman' or 'docker'")
    return raw


def colour(raw: str) -> str:
    if not COLOUR_RULE.fullmatch(raw):
        raise ValueError("expected at most 32 characters of A-Z a-z 0-9 _ - (e.g. blue, green)")
    return raw


def is_postgres_url(target: object) -> bool:
    """Whether `target` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def log_target(raw: str) -> Path | str:
    """A postgresql:// URL stays a str (`Path()` would turn its // into /), else a path."""
    return raw if is_postgres_url(raw) else Path(raw)


# --------------------------------------------------------------------------- the table
_SERVE = ("serve.settings",)
_LIMIT = ("serve.schema",)
_SELF = "the model's input_schema, else"

# One row per variable: name, type, parser, default, reader, what it does (a table: no formatter)
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # --- where things are
    Setting("FAULTWATCH_ROOT", "path", Path, None, ("paths", "notebook"),
            "the project root; unset: the nearest folder at or above the cwd with params.yaml",
            default_text="searched from the cwd"),
    # a str: messages quote it as it was given
    Setting("BENTOML_HOME", "path", text, None,
            ("paths", "serve.launch", "serve.served", "serve.store", "cli"),
            "the BentoML store (relative to the cwd); the CLI sets it for its commands",
            default_text="<root>/.bentoml"),
    Setting("FAULTWATCH_PREDICTION_LOG", "path or URL", log_target, None,
            ("serve.settings", "serve.predlog", "serve.launch", "deploy", "retrain", "monitor"),
            "the prediction log: a SQLite file or a postgresql:// URL",
            default_text=f"<root>/{DEFAULT_PREDICTION_LOG.as_posix()}",
            params_key="monitor.log", params_for="faultwatch monitor"),
    # --- set by faultwatch for the processes it starts
    Setting("FAULTWATCH_STAGING", "path", Path, None, ("paths", "notebook"),
            "set by the notebook runner while a stage runs: where its outputs are staged"),
    Setting("FAULTWATCH_PROGRESS", "marker", anything_set, False, ("progress", "notebook"),
            "set by the notebook runner in its process: progress goes to the terminal"),
    Setting("FAULTWATCH_MODEL_TAG", "str", text, None,
            ("serve.settings", "package", "serve.launch"),
            "the store entry to serve; set by the package stage and the launchers",
            default_text="the bento's model_tag, else fault_cnn:latest"),
    Setting("FAULTWATCH_COLOUR", "str", colour, "", ("serve.settings", "deploy"),
            "the serving instance's name (blue, green), in every prediction log row"),
    Setting("FAULTWATCH_DEPLOY_TAG", "str", text, "", ("deploy.processes",),
            "set by deploy for its processes: finds them on the host (/proc)"),
    Setting("FAULTWATCH_DEPLOY_REPLICA", "int", at_least_one, None, ("deploy.processes",),
            "set by deploy for its processes: which replica of its colour (from 1)"),
    Setting("FAULTWATCH_DEPLOY_PROJECT", "path", Path, None, ("deploy.processes",),
            "set by deploy for its processes: the project root that started them"),
    Setting("FAULTWATCH_FAILPOINT", "str", text, "", ("deploy.failpoints",),
            "tests only: NAME[:N] kills a deploy command at its N-th point NAME (SIGKILL)"),
    Setting("FAULTWATCH_SHADOW_MAX_INFLIGHT", "int", at_least_one, 32,
            ("deploy.router (shadow.lua)",),
            "shadow copies waiting at once in the router; more are dropped",
            params_key="deploy.shadow_max_inflight"),
    Setting("FAULTWATCH_SHADOW_TIMEOUT_MS", "int", at_least_one, 10000,
            ("deploy.router (shadow.lua)",),
            "milliseconds a shadow copy waits for its answer in the router",
            params_key="deploy.shadow_timeout_s", params_scale=1000),
    # --- the service (faultwatch.serve.settings.ServeSettings)
    Setting("FAULTWATCH_PREDICTION_LOG_SYNC", "NORMAL/FULL", one_of(SYNC_MODES, upper=True),
            "NORMAL", ("serve.settings", "serve.predlog"),
            "SQLite's synchronous mode for the prediction log (any case)"),
    Setting("FAULTWATCH_PREDICTION_LOG_TIMEOUT", "seconds", number, 10.0,
            ("serve.settings", "serve.predlog"),
            "seconds a prediction waits for a locked log before it is answered 503"),
    Setting("FAULTWATCH_BATCHING", "queue/bentoml", one_of(BATCHING_MODES), "queue", _SERVE,
            "the batcher: faultwatch's queue, or BentoML's adaptive batching"),
    # Under load a batch is everything that queued during the previous call; 64 is above the
    # concurrency the service is tested at (32), and this CNN costs no more per signal at
    # batch 64 than at 32 on CPU (0.3-0.4 ms).
    Setting("FAULTWATCH_BATCH_SIZE", "int", at_least_one, 64, _SERVE,
            "signals per model call; at most FAULTWATCH_MAX_QUEUE"),
    # about 1 s of model time on 1 CPU thread
    Setting("FAULTWATCH_MAX_QUEUE", "int", at_least_one, 2048, _SERVE,
            "signals waiting beyond this are refused with 503"),
    # At c=32 p99 reached 0.4-0.7 s on a busy 2-core machine, so 2 s leaves room; 20 ms turned
    # 39 of 40 burst requests into 503s (shared/MEASURED.md).
    Setting("FAULTWATCH_MAX_LATENCY_MS", "int", int, 2000, _SERVE,
            "batching=bentoml only: BentoML answers 503 to a request it expects to wait longer"),
    Setting("FAULTWATCH_TORCH_THREADS", "int", at_least_one, 1, _SERVE,
            "torch threads of a serving process"),
    # a fleet bento (issue 23): the models it serves, loaded on demand
    Setting("FAULTWATCH_MODELS", "JSON", models_map, None, _SERVE,
            "a fleet's models, {\"group\": \"store tag\", ...}; set by the package stage",
            default_text="the bento's models argument, else one model (FAULTWATCH_MODEL_TAG)"),
    Setting("FAULTWATCH_MAX_LOADED_MODELS", "int", at_least_one, None, _SERVE,
            "a fleet's models kept in memory at once; the least recently used is evicted",
            default_text="the bento's max_loaded_models argument (params.yaml serve), else 10"),
    Setting("FAULTWATCH_WARM", "names", names_list, None, _SERVE,
            "a fleet's groups loaded at start (comma-separated); the others on first request",
            default_text="the bento's warm argument (params.yaml serve), else none"),
    # spans cost CPU on every request and go nowhere unless an exporter is set up
    Setting("FAULTWATCH_TRACE_PREDICTIONS", "0/1", flag, False, _SERVE,
            "OpenTelemetry spans per prediction"),
    # every answer is in the prediction log already; it costs ~15 % of the rate (MEASURED.md)
    Setting("FAULTWATCH_ACCESS_LOG", "0/1", flag, False, _SERVE, "BentoML's access log"),
    # so that a client which sends its whole body before reading gets the 413
    Setting("FAULTWATCH_MAX_DRAIN_BYTES", "int", at_least_one, 64 * 1024 * 1024, _SERVE, "an "
            "oversized body is read and dropped up to this many bytes, then the connection closed"),
    # a 1000-sample signal costs ~3 KB compressed: 1 logs everything at ~3 KB per prediction
    Setting("FAULTWATCH_LOG_SIGNALS", "0 to 1", fraction, 0.0, _SERVE,
            "the share of answered signals whose raw values are logged (table signals)"),
    Setting("FAULTWATCH_REALISED_F1_REFRESH", "seconds", positive_seconds, 5.0, _SERVE,
            "seconds between two reads of the labels for faultwatch_realised_f1 at /metrics"),
    Setting("FAULTWATCH_LABELLER_TOKENS", "path", Path, None, _SERVE, "the labellers' bearer "
            "tokens for /feedback (NAME:TOKEN lines; unset: /feedback refuses every label)",
            default_text="the project's .faultwatch/labellers (faultwatch serve, deploy)"),
    Setting("FAULTWATCH_PREDICT_TOKENS", "path", Path, None, _SERVE, "bearer tokens /predict "
            "and /predict_batch require (NAME:TOKEN lines)", default_text="unset: open"),
    # --- the service's input limits (faultwatch.serve.schema.ServingLimits)
    Setting("FAULTWATCH_MIN_LENGTH", "int", int, None, _LIMIT,
            "the shortest signal accepted", default_text=f"{_SELF} 16"),
    Setting("FAULTWATCH_MAX_LENGTH", "int", int, None, _LIMIT,
            "the longest signal accepted", default_text=f"{_SELF} 100000"),
    Setting("FAULTWATCH_MAX_BATCH", "int", int, None, _LIMIT,
            "signals per predict_batch request", default_text=f"{_SELF} 64"),
    Setting("FAULTWATCH_MAX_BODY_BYTES", "int", int, None, _LIMIT,
            "the largest request body accepted", default_text=f"{_SELF} 4194304"),
    # --- deploy, images
    Setting("FAULTWATCH_DEPLOY_LOCK_WAIT", "seconds", number, 120.0, ("deploy.state",),
            "seconds a deploy command waits for another one's lock before it refuses"),
    Setting("FAULTWATCH_CONTAINER_ENGINE", "podman/docker", engine_name, None, ("image",),
            "the container engine for images and container deploys",
            default_text="docker where one answers, else podman"),
    Setting("FAULTWATCH_TORCH_WHEELS", "path", Path, Path("/opt/wheels"), ("image",),
            "a folder of torch CPU wheels an image build uses instead of the PyTorch index"),
    # --- training
    Setting("WANDB_MODE", "str", text, "offline", ("train", "cli"),
            "online (with a key) logs training runs to W&B; disabled turns W&B off"),
    Setting("WANDB_API_KEY", "str", text, None, ("train",),
            "the W&B key (else ~/.netrc)", secret=True),
    Setting("WANDB_BASE_URL", "URL", text, "https://api.wandb.ai", ("train",),
            "the W&B server whose key ~/.netrc holds"),
    # --- set by other tools
    Setting("JPY_SESSION_NAME", "path", text, None, ("paths",),
            "set by Jupyter Server for a kernel: outputs go to reports/adhoc/<notebook>/"),
    Setting("DVC_STAGE", "str", text, None, ("progress",),
            "set by dvc repro for a stage's command: done lines name no next command"),
    Setting("MAKELEVEL", "str", text, None, ("progress",),
            "set by make in its recipes: hints name the venv's tools by their path"),
    Setting("XDG_CONFIG_HOME", "path", Path, None, ("image",),
            "where podman's per-user configuration lives", default_text="~/.config"),
)
# fmt: on


BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The declaration of `name`; KeyError where it is not declared (a programming error)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name} is not declared in faultwatch.settings.SETTINGS") from None


def parse(name: str, raw: str) -> Any:
    """`raw` as `name`'s typed value; SettingsError naming the variable, value and rule."""
    s = setting(name)
    try:
        return s.parse(raw)
    except ValueError as e:
        raise SettingsError(f"{name}={raw!r}: {e}") from None


def raw(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """`name`'s text in `environ` (os.environ when None), unparsed; None where unset or empty."""
    setting(name)
    env = os.environ if environ is None else environ
    return env.get(name) or None


def source(name: str, environ: Mapping[str, str] | None = None) -> str:
    """ENVIRONMENT where `name` is set to a non-empty value, else DEFAULT."""
    return ENVIRONMENT if raw(name, environ) is not None else DEFAULT


def get(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """`name`'s typed value from `environ` (os.environ, read now, when None), else its default."""
    given = raw(name, environ)
    return setting(name).default if given is None else parse(name, given)


@contextmanager
def temporarily(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set declared variables in this process's environment (None: unset) for the block, for
    code that reads them where no argument reaches (a module BentoML imports, a notebook's
    cells, the processes they start); each is put back as it was after the block."""
    for name in values:
        setting(name)
    before = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _put(name, value)
        yield
    finally:
        for name, value in before.items():
            _put(name, value)


def _put(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
