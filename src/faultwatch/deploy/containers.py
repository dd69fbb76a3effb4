"""The colours as containers (`faultwatch deploy up --runtime container`).

Each colour runs the project's image `faultwatch-<project folder>:<registry version>`
(`faultwatch.image.image_name`; `faultwatch image build VERSION`)
with podman (or Docker), its port 3000 published on a free loopback port, so the router, the
smoke test and every deploy command treat it as they treat a process. Both colours mount the
folder of the one prediction log (`:U`: handed to the image's non-root user) and write the
same SQLite file, as processes do. With FAULTWATCH_PREDICTION_LOG=postgresql://... there is
nothing to mount: the URL is passed to the container as it is. A container on the runtime's
default network has its own loopback, so a URL whose host is this machine's loopback
(127.0.0.1, localhost, ::1) or a unix socket would reach nothing there; it is refused before
anything starts (`check_reachable`), saying to use an address the containers can reach.
Host networking (`--network host`) is not the answer here: both colours listen on port 3000
inside, and with the host's network they would both want the host's port 3000. The container's
output goes to `<colour>.log` in the deploy folder. `FAULTWATCH_DEPLOY_TAG` is in its environment, so its processes are found on the host
like a process colour's (the shadow's idle scheduling class works on them unchanged).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from faultwatch.deploy.errors import DeployError
from faultwatch.image import LABEL_PREFIX, engine, image_exists, image_labels, image_name, inspect
from faultwatch.paths import project_root
from faultwatch.serve.predlog import is_postgres_url, show_target

CONTAINER_LOG_DIR = "/home/bentoml/predictions"
# the labellers' tokens inside a container: a copy of the project's, mounted read-only
CONTAINER_LABELLERS = "/run/secrets/faultwatch-labellers"


def image_for(version: str, model_tag: str, root: Path | None = None) -> tuple[str, str]:
    """(engine, image) of a registry version of the project at `root` (default: the one here);
    refuses a missing or stale image."""
    eng = engine()
    image = f"{image_name(root or project_root())}:{version}"
    if not image_exists(eng, image):
        raise DeployError(
            f"no image {image} ({eng}): build it with `faultwatch image build {version}`"
        )
    has = image_labels(inspect(eng, image)).get(LABEL_PREFIX + "model_tag")
    if has != model_tag:
        raise DeployError(
            f"image {image} holds {has or 'an unlabelled model'}, but registry version {version} "
            f"is {model_tag}: rebuild it with `faultwatch image build {version} --force`"
        )
    return eng, image


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: resolved by the container, on its own network


def check_reachable(prediction_log: Path | str) -> None:
    """Refuse a PostgreSQL URL that a container cannot reach: a host on this machine's
    loopback, or a unix socket (no host, or a host= that is a path). A file is fine (mounted)."""
    if not is_postgres_url(prediction_log):
        return
    url = str(prediction_log)
    parts = urlsplit(url)
    in_query = re.search(r"(?:^|&)host=([^&]*)", parts.query)
    hosts = unquote(in_query.group(1)) if in_query else (parts.hostname or "")
    for host in hosts.split(",") if hosts else [""]:
        if host == "" or host.startswith("/") or _is_loopback(host):
            what = (
                "it connects through a unix socket of"
                if not host or host.startswith("/")
                else f"its host {host} is the loopback of"
            )
            raise DeployError(
                f"FAULTWATCH_PREDICTION_LOG={show_target(url)}: {what} this machine, which a "
                "container on the runtime's network cannot reach (it has its own loopback). Use an address the containers can reach (the database's host "
                "name or IP, with PostgreSQL listening there and pg_hba.conf allowing the "
                "containers' network), or `deploy up --runtime process`"
            )


def run(
    eng: str,
    image: str,
    name: str,
    host: str,
    port: int,
    prediction_log: Path | str,
    log: Path,
    env: dict[str, str],
    labellers: Path | None = None,
) -> None:
    """Start the container `name` of `image`, its port 3000 on host:port, logging to
    `prediction_log`: a file's folder is mounted; a PostgreSQL URL is passed on (and refused
    when the container could not reach it: `check_reachable`)."""
    check_reachable(prediction_log)
    argv = [eng, "run", "-d", "--name", name, "-p", f"{host}:{port}:3000"]
    if eng == "podman":
        argv += ["--log-driver", "k8s-file", "--log-opt", f"path={log}"]
    if is_postgres_url(prediction_log):
        target = str(prediction_log)
    else:
        folder = Path(prediction_log).parent
        folder.mkdir(parents=True, exist_ok=True)
        # Docker has no :U; the folder must be writable by the image's user (uid 1034)
        argv += ["-v", f"{folder}:{CONTAINER_LOG_DIR}" + (":U" if eng == "podman" else "")]
        target = f"{CONTAINER_LOG_DIR}/{Path(prediction_log).name}"
    if labellers is not None:  # who may label, read-only (a copy the image's user owns)
        argv += ["-v", f"{labellers}:{CONTAINER_LABELLERS}:ro" + (",U" if eng == "podman" else "")]
        argv += ["-e", f"FAULTWATCH_LABELLER_TOKENS={CONTAINER_LABELLERS}"]
    for k, v in env.items():
        argv += ["-e", f"{k}={v}"]
    # `-e NAME` alone takes the value from the engine's environment: a URL's password stays
    # out of the command line (`ps`)
    argv += ["-e", "FAULTWATCH_PREDICTION_LOG"]
    argv.append(image)
    p = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FAULTWATCH_PREDICTION_LOG": target},
    )
    if p.returncode != 0:
        remove(eng, name)
        raise DeployError(f"`{eng} run` of {image} failed: {p.stderr.strip()}")


def host_pid(eng: str, name: str) -> int:
    p = subprocess.run(
        [eng, "inspect", "--format", "{{.State.Pid}}", name], capture_output=True, text=True
    )
    return int(p.stdout.strip() or 0) if p.returncode == 0 else 0


def running(name: str) -> bool:
    try:
        eng = engine()
    except Exception:
        return False
    p = subprocess.run(
        [eng, "inspect", "--format", "{{.State.Running}}", name], capture_output=True, text=True
    )
    return p.returncode == 0 and p.stdout.strip() == "true"


def remove(eng: str, name: str, timeout_s: int = 20) -> None:
    """Stop (SIGTERM, then SIGKILL after timeout_s) and remove; quiet when it is gone."""
    subprocess.run([eng, "stop", "-t", str(timeout_s), name], capture_output=True, text=True)
    subprocess.run([eng, "rm", "-f", name], capture_output=True, text=True)


def stop(name: str) -> None:
    try:
        eng = engine()
    except Exception:
        return
    remove(eng, name)
