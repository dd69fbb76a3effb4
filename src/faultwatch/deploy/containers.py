"""The colours as containers (`faultwatch deploy up --runtime container`).

Each colour runs the image `faultwatch:<registry version>` (`faultwatch image build VERSION`)
with podman (or Docker), its port 3000 published on a free loopback port, so the router, the
smoke test and every deploy command treat it as they treat a process. Both colours mount the
folder of the one prediction log (`:U`: handed to the image's non-root user) and write the
same SQLite file, as processes do. The container's output goes to `<colour>.log` in the deploy
folder. `FAULTWATCH_DEPLOY_TAG` is in its environment, so its processes are found on the host
like a process colour's (the shadow's idle scheduling class works on them unchanged).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from faultwatch.deploy.state import DeployError
from faultwatch.image import IMAGE_NAME, LABEL_PREFIX, engine, image_exists, image_labels, inspect

CONTAINER_LOG_DIR = "/home/bentoml/predictions"


def image_for(version: str, model_tag: str) -> tuple[str, str]:
    """(engine, image) of a registry version; refuses a missing or stale image."""
    eng = engine()
    image = f"{IMAGE_NAME}:{version}"
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


def run(
    eng: str,
    image: str,
    name: str,
    host: str,
    port: int,
    prediction_log: Path,
    log: Path,
    env: dict[str, str],
) -> None:
    prediction_log.parent.mkdir(parents=True, exist_ok=True)
    argv = [eng, "run", "-d", "--name", name, "-p", f"{host}:{port}:3000"]
    if eng == "podman":
        argv += ["--log-driver", "k8s-file", "--log-opt", f"path={log}"]
        mount = f"{prediction_log.parent}:{CONTAINER_LOG_DIR}:U"
    else:  # Docker has no :U; the folder must be writable by the image's user (uid 1034)
        mount = f"{prediction_log.parent}:{CONTAINER_LOG_DIR}"
    argv += ["-v", mount]
    env = {**env, "FAULTWATCH_PREDICTION_LOG": f"{CONTAINER_LOG_DIR}/{prediction_log.name}"}
    for k, v in env.items():
        argv += ["-e", f"{k}={v}"]
    argv.append(image)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
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
