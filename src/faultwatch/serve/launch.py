"""`faultwatch serve`: one command that serves the right model from anywhere in the project.

`bentoml serve` runs its workers in the bento's folder, so a relative BENTOML_HOME that worked
where the command was typed no longer resolves there, and workers fail and restart in a loop.
`faultwatch serve` resolves everything first, from the project: the store
(`faultwatch.paths.bentoml_home`, made absolute), what to serve, the prediction log; it checks
them (a missing store, bento or model, or a model whose files were replaced, is an error at
once), then replaces itself with `bentoml serve` with those values exported. The prediction
log (FAULTWATCH_PREDICTION_LOG) is a file path, made absolute, or a postgresql:// URL passed
on unchanged; what is printed masks the URL's password.

What to serve (VERSION):
  (none)          the bento the package stage built (reports/package.json), else faultwatch:latest
  v0.0.1          a registry version: the newest bento packaging its model, else the service of
                  this checkout with that model (FAULTWATCH_MODEL_TAG)
  fault_cnn:TAG   a model store entry, served by the service of this checkout
  faultwatch:TAG  a bento (`TAG` alone means faultwatch:TAG)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faultwatch import registry, settings
from faultwatch.errors import FaultwatchError
from faultwatch.paths import bentoml_home
from faultwatch.serve.credentials import PROJECT_FILE
from faultwatch.serve.predlog import resolve_target, show_target
from faultwatch.serve.schema import ServingLimits
from faultwatch.serve.settings import ServeSettings
from faultwatch.serve.store import MODEL_NAME, verify_entry_files

BENTO_NAME = "faultwatch"
SERVICE = "faultwatch.serve.service:FaultDetector"
PACKAGE_FILE = Path("reports/package.json")  # faultwatch.package.PACKAGE_FILE (no bentoml import)
REGISTRY_VERSION = re.compile(r"v\d+\.\d+\.\d+")


class ServeError(FaultwatchError):
    """What `faultwatch serve` was asked to serve cannot be served."""


@dataclass(frozen=True)
class ServePlan:
    target: str  # what `bentoml serve` gets: a bento tag, or the service's import path
    model_tag: str
    what: str  # for a person: which bento or version, and why
    bentoml_home: Path
    prediction_log: Path | str  # a SQLite file, or a postgresql:// URL kept a str
    limits: dict[str, int]  # the input limits the service will enforce
    env: dict[str, str] = field(repr=False)  # the variables the server gets beyond os.environ

    def describe(self, host: str, port: int) -> dict[str, Any]:
        """What `faultwatch serve --show-config` prints: the plan and the server's settings."""
        # the server's environment: this one with the plan's variables over it
        serve_settings = ServeSettings.from_env({**os.environ, **self.env})
        return {
            "serving": self.what,
            "target": self.target,
            "model_tag": self.model_tag,
            "url": f"http://{host}:{port}",
            "BENTOML_HOME": str(self.bentoml_home),
            "prediction_log": show_target(self.prediction_log),
            "limits": self.limits,
            "settings": serve_settings.as_dict(),
        }


def _default_bento(root: Path) -> tuple[str, str]:
    record = root / PACKAGE_FILE
    if record.is_file():
        try:
            tag = json.loads(record.read_text())["bento_tag"]
        except (ValueError, KeyError, TypeError) as e:
            raise ServeError(
                f"{PACKAGE_FILE}: no bento_tag in it ({e}); run the package stage"
            ) from None
        return tag, f"the bento the package stage built ({PACKAGE_FILE})"
    return f"{BENTO_NAME}:latest", f"the newest bento ({PACKAGE_FILE} not found)"


def _bento_for_model(model_tag: str) -> str | None:
    import bentoml  # imported by `plan`, after it set BENTOML_HOME
    from bentoml.exceptions import NotFound

    try:
        bentos = bentoml.bentos.list(BENTO_NAME)
    except NotFound:
        return None
    mine = [b for b in bentos if b.info.labels.get("model_tag") == model_tag]
    return str(max(mine, key=lambda b: b.info.creation_time).tag) if mine else None


def plan(root: Path, version: str | None = None) -> ServePlan:
    """What to serve and with which environment; raises ServeError naming what is missing."""
    ServeSettings.from_env()  # a bad FAULTWATCH_* value stops here, not in a worker
    home = bentoml_home(root).resolve()
    if not home.is_dir():
        set_by = "BENTOML_HOME" if settings.get("BENTOML_HOME") else "the project's store"
        raise ServeError(
            f"{set_by} {home}: no such folder; the pipeline fills {root / '.bentoml'} "
            "(`dvc repro`), or set BENTOML_HOME to an existing BentoML home"
        )
    os.environ["BENTOML_HOME"] = str(home)  # before bentoml is imported: it reads it once
    import bentoml
    from bentoml.exceptions import NotFound

    model_tag: str | None = None
    if version is None:
        bento_tag, why = _default_bento(root)
    elif REGISTRY_VERSION.fullmatch(version):
        model_tag = registry.get(version, root).model_tag
        if not model_tag:
            raise ServeError(f"registry version {version} names no model store entry")
        bento_tag = _bento_for_model(model_tag)
        why = f"registry version {version}" + ("" if bento_tag else ", which no bento packages")
    elif version.startswith(f"{MODEL_NAME}:"):
        model_tag, bento_tag, why = version, None, f"store entry {version}"
    else:
        bento_tag = version if ":" in version else f"{BENTO_NAME}:{version}"
        why = f"bento {bento_tag}"

    if bento_tag is not None:
        try:
            bento = bentoml.bentos.get(bento_tag)
        except NotFound:
            built = sorted(str(b.tag) for b in bentoml.bentos.list())
            raise ServeError(
                f"no bento {bento_tag} in {home / 'bentos'} (built: {', '.join(built) or 'none'});"
                " the package stage builds one: `dvc repro -f -s package`"
            ) from None
        bento_tag = str(bento.tag)
        model_tag = (
            model_tag or bento.info.args.get("model_tag") or bento.info.labels.get("model_tag")
        )
        if not model_tag:
            raise ServeError(f"bento {bento_tag} does not say which model it serves (model_tag)")
        fleet = bento.info.args.get("models")
        what = f"bento {bento_tag} with {model_tag}: {why}"
        if fleet:  # a fleet bento (faultwatch.serve.fleet): its groups, loaded on demand
            groups = ", ".join(json.loads(fleet) if isinstance(fleet, str) else fleet)
            what = f"bento {bento_tag}, a fleet of model groups ({groups}): {why}"
    else:
        what = f"{model_tag} with this checkout's service: {why}"
    try:
        entry = bentoml.models.get(model_tag)
    except NotFound:
        raise ServeError(f"model {model_tag} is not in the store {home / 'models'}") from None
    verify_entry_files(entry)
    limits = ServingLimits.resolve(dict(entry.info.metadata))

    log = resolve_target(settings.get("FAULTWATCH_PREDICTION_LOG"), root)
    env = {
        "BENTOML_HOME": str(home),
        "FAULTWATCH_MODEL_TAG": str(entry.tag),
        "FAULTWATCH_PREDICTION_LOG": str(log),
        # who may label: the project's labellers unless the variable names another file
        "FAULTWATCH_LABELLER_TOKENS": str(labeller_tokens(root)),
    }
    return ServePlan(
        bento_tag or SERVICE, str(entry.tag), what, home, log, dataclasses.asdict(limits), env
    )


def labeller_tokens(root: Path) -> Path:
    """The labellers' tokens file a server of this project reads (faultwatch.serve.credentials):
    FAULTWATCH_LABELLER_TOKENS, else the project's .faultwatch/labellers; absolute."""
    given = settings.get("FAULTWATCH_LABELLER_TOKENS")  # relative: to where it was typed
    return (Path(given) if given else root / PROJECT_FILE).resolve()


def check_port_free(host: str, port: int) -> None:
    """ServeError when `host:port` cannot be bound (another server holds it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise ServeError(
                f"{host}:{port}: cannot listen there ({e.strerror}); another server holds the "
                f"port? pick another with --port, or stop it (`ss -ltnp 'sport = :{port}'` "
                "names it)"
            ) from None


def exec_server(root: Path, p: ServePlan, host: str, port: int) -> None:
    """Replace this process with `bentoml serve` (signals then reach the server directly).
    A port already taken stops it here with a message, not with the server's traceback."""
    check_port_free(host, port)
    # a Prometheus folder of its own (faultwatch.serve.bentoml_main): servers on one store
    # (blue, green, replicas) would otherwise take each other's metrics
    metrics = p.bentoml_home / "prometheus_faultwatch" / f"{host}-{port}"
    argv = [sys.executable, "-m", "faultwatch.serve.bentoml_main", str(metrics)]
    argv += ["serve", p.target, "--host", host, "--port", str(port)]
    env = {**os.environ, **p.env}
    print(f"serving {p.what}", flush=True)
    print(f"  on http://{host}:{port}, prediction log {show_target(p.prediction_log)}", flush=True)
    os.chdir(root)
    os.execve(sys.executable, argv, env)
