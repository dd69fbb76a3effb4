"""`faultwatch image`: the bento as an OCI image, built with buildah (or Docker where it runs).

`faultwatch image build [WHAT]` builds the image of a bento, tagged `<name>:<registry version>`
(when the bento packages one) and `<name>:<model store version>`, labelled with the bento's
provenance (registry version, model tag, the weights' sha256, the git commit, the project's
folder). <name> is the project's (`image_name`): `faultwatch-<project folder>`, so that two
projects on one host (two clones, each with its own v0.0.1) never tag over each other's images;
`faultwatch image name` prints it.
WHAT is what `faultwatch serve` takes: nothing (the bento of reports/package.json), a registry
version (the newest bento packaging its model, built now when there is none), or a bento tag.

The base image (bentofile.yaml: docker.base_image) is built from Debian's packages by
`deploy/base-image.sh` when it is missing: no image registry is needed. The CPU build of torch
comes from a local wheel folder when one holds it (FAULTWATCH_TORCH_WHEELS, default
/opt/wheels; mounted into the build, buildah only), else from the PyTorch CPU index.

Running containers needs a working OCI runtime: `check_runtime` runs a throw-away container
and, where the machine refuses podman's defaults (rlimits, crun, systemd cgroups, as on this
project's machine kind), writes a containers.conf drop-in that works and says so.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from faultwatch import progress, registry, settings
from faultwatch.errors import FaultwatchError
from faultwatch.package import package
from faultwatch.serve.launch import REGISTRY_VERSION, _bento_for_model, _default_bento

IMAGE_NAME = "faultwatch"  # the bento's name, and the prefix of the images' (`image_name`)
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
LABEL_PREFIX = "io.faultwatch."
BUILD_TIMEOUT_S = 1800
# BentoML hands each line of buildah's output to this logger at INFO, which nothing shows by
# default: the build is silent for minutes (`builder_output_shown` passes the lines on)
BUILDER_LOGGER = "bentoml._internal.container.base"
# what podman needs on machines that refuse its defaults (see ../shared/MEASURED.md)
CONTAINERS_CONF = """\
# written by faultwatch (faultwatch.image.check_runtime): podman's defaults failed here
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
CONF_NAME = "50-faultwatch.conf"


class ImageError(FaultwatchError):
    """An image cannot be built or run here; the message says why and what to do."""


def say(msg: str) -> None:
    """A step of the build: progress, on stderr (faultwatch.progress); stdout is the result."""
    progress.step(msg)


class _BuilderOutput(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say(f"  | {record.getMessage()}")


@contextlib.contextmanager
def builder_output_shown() -> Iterator[None]:
    """While it lasts, each line of the builder's output (BUILDER_LOGGER) is a progress line."""
    logger = logging.getLogger(BUILDER_LOGGER)
    handler = _BuilderOutput(logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, not again through whatever handler BentoML configured
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def image_name(root: Path) -> str:
    """The repository name of the project's images: `faultwatch-<the project folder's name>`,
    lower-cased, every run of other characters than a-z and 0-9 made one `-` (OCI names)."""
    slug = re.sub(r"[^a-z0-9]+", "-", root.resolve().name.lower()).strip("-")
    return f"{IMAGE_NAME}-{slug or 'project'}"


# ---------------------------------------------------------------------- engines
def _works(argv: list[str], timeout: float = 30) -> tuple[bool, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return p.returncode == 0, (p.stderr or p.stdout).strip()


@functools.cache
def engine() -> str:
    """`docker` where a Docker engine answers, else `podman` (buildah builds); or what
    FAULTWATCH_CONTAINER_ENGINE says. Asked once per process (`docker info` is slow; every
    container liveness check of a deploy command needs the answer)."""
    chosen = settings.get("FAULTWATCH_CONTAINER_ENGINE")  # SettingsError names a bad one
    if chosen:
        return chosen
    if shutil.which("docker") and _works(["docker", "info"], 20)[0]:
        return "docker"
    if shutil.which("podman") and shutil.which("buildah"):
        return "podman"
    raise ImageError(
        "no container engine: install buildah and podman (Debian: apt-get install buildah podman "
        "runc), or run a Docker engine"
    )


def image_exists(eng: str, image: str) -> bool:
    return _works([eng, "image", "inspect", image], 30)[0]


def inspect(eng: str, image: str) -> dict[str, Any]:
    p = subprocess.run([eng, "image", "inspect", image], capture_output=True, text=True)
    if p.returncode != 0:
        raise ImageError(f"no image {image}: {p.stderr.strip()}")
    data = json.loads(p.stdout)
    return data[0] if isinstance(data, list) else data


def image_labels(info: dict[str, Any]) -> dict[str, str]:
    return dict((info.get("Config") or {}).get("Labels") or info.get("Labels") or {})


def conf_path() -> Path:
    """The drop-in folder podman reads: system-wide for root, the user's otherwise."""
    if os.geteuid() == 0:
        return Path("/etc/containers/containers.conf.d") / CONF_NAME
    base = settings.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return base / "containers" / "containers.conf.d" / CONF_NAME


def check_runtime(image: str) -> str:
    """Run a throw-away container of `image`; fix podman's configuration once where its
    defaults fail here. Returns what was done; raises ImageError with podman's reason."""
    eng = engine()
    argv = [eng, "run", "--rm", "--network", "none", image, "true"]
    ok, why = _works(argv, 120)
    if ok:
        return f"{eng} runs containers here"
    if eng != "podman":
        raise ImageError(f"`{' '.join(argv)}` failed: {why}")
    conf = conf_path()
    if conf.exists():
        raise ImageError(
            f"podman cannot run a container here even with {conf}: {why.splitlines()[-1]}"
        )
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONTAINERS_CONF)
    ok, why2 = _works(argv, 120)
    if ok:
        return (
            f"podman's defaults failed here ({why.splitlines()[-1]}); wrote {conf} "
            "(runc, cgroupfs, fixed rlimits), and containers run"
        )
    conf.unlink()
    raise ImageError(
        "podman cannot run containers on this machine: with its defaults: "
        f"{why.splitlines()[-1]}; with runc, cgroupfs and fixed rlimits: {why2.splitlines()[-1]}"
    )


# ---------------------------------------------------------------------- base image
def base_image(root: Path, bentofile: str = "bentofile.yaml") -> str | None:
    spec = yaml.safe_load((root / bentofile).read_text()) or {}
    return (spec.get("docker") or {}).get("base_image")


def ensure_base(root: Path, eng: str, image: str) -> str:
    if image_exists(eng, image):
        return f"base image {image}: present"
    if not image.startswith("localhost/faultwatch-base"):
        return f"base image {image}: pulled by the build"
    script = root / "deploy" / "base-image.sh"
    say(f"  base image {image} is missing: building it from Debian's packages ({script.name})")
    t0 = time.monotonic()
    env = {**os.environ, "PATH": f"{root / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    p = subprocess.run([str(script), image], env=env, cwd=root)
    if p.returncode != 0:
        raise ImageError(f"{script} {image} failed (exit {p.returncode}); its output is above")
    return f"base image {image}: built in {time.monotonic() - t0:.0f} s"


# ---------------------------------------------------------------------- which bento
def resolve_bento(root: Path, what: str | None) -> Any:
    """The bento (bentoml.Bento) for WHAT, as `faultwatch serve` reads WHAT."""
    import bentoml
    from bentoml.exceptions import NotFound

    if what is not None and REGISTRY_VERSION.fullmatch(what):
        model_tag = registry.get(what, root).model_tag
        tag = _bento_for_model(model_tag) if model_tag else None
        if tag is None:
            say(f"  no bento packages {what} ({model_tag}): building one")
            tag = package(root, version=what)["bento_tag"]
    elif what is None:
        tag, _ = _default_bento(root)
    else:
        tag = what if ":" in what else f"{IMAGE_NAME}:{what}"
    try:
        return bentoml.bentos.get(tag)
    except NotFound:
        raise ImageError(
            f"no bento {tag} in the store; the package stage builds one (`dvc repro`), "
            "`faultwatch image build VERSION` builds one for a registry version"
        ) from None


@dataclass(frozen=True)
class Plan:
    bento_tag: str
    tags: tuple[str, ...]
    labels: dict[str, str]


def plan(bento: Any, root: Path, registry_version: str | None = None) -> Plan:
    """Tags and labels of the image of `bento` in the project at `root` (`image_name`);
    `registry_version`: the version it was asked for (the bento packages its model, even when
    it was packaged before the version existed)."""
    import bentoml

    labels = {str(k): str(v) for k, v in bento.info.labels.items()}
    model_tag = labels.get("model_tag") or bento.info.args.get("model_tag", "")
    sha = labels.get("weights_sha256", "")
    if model_tag:
        try:
            sha = bentoml.models.get(model_tag).info.metadata.get("weights_sha256", sha)
        except Exception:  # the label's short sha stands
            pass
    version = registry_version or labels.get("registry_version", "none")
    model_version = model_tag.split(":", 1)[-1] if model_tag else str(bento.tag.version)
    name = image_name(root)
    tags = [f"{name}:{model_version}"]
    if version and version != "none":
        tags.insert(0, f"{name}:{version}")
    oci = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.version": version if version != "none" else model_version,
        "org.opencontainers.image.revision": labels.get("git_commit", "unknown"),
        "org.opencontainers.image.description": "faultwatch: fault probability of 1-D signals",
    }
    mine = {
        "bento_tag": str(bento.tag),
        "registry_version": version,
        "model_tag": model_tag,
        "weights_sha256": sha,
        "git_commit": labels.get("git_commit", "unknown"),
        "stage": labels.get("stage", "unknown"),
        "data_hash": labels.get("data_hash", "unknown"),
        "project": str(root.resolve()),
    }
    return Plan(
        str(bento.tag), tuple(tags), {**oci, **{LABEL_PREFIX + k: v for k, v in mine.items()}}
    )


def torch_source(eng: str) -> tuple[dict[str, str], str | None, str]:
    """(build args, volume, what for a person) for the CPU build of torch."""
    folder = settings.get("FAULTWATCH_TORCH_WHEELS")
    wheels = sorted(folder.glob("torch-*+cpu-*.whl")) if folder.is_dir() else []
    if wheels and eng == "podman":
        args = {"UV_FIND_LINKS": "/wheels", "UV_EXTRA_INDEX_URL": ""}
        return args, f"{folder}:/wheels:ro", f"wheels in {folder}"
    return {"UV_EXTRA_INDEX_URL": TORCH_INDEX}, None, f"the PyTorch CPU index {TORCH_INDEX}"


def up_to_date(eng: str, p: Plan) -> bool:
    """Every tag exists and is the image of this bento."""
    for tag in p.tags:
        if not image_exists(eng, tag):
            return False
        if image_labels(inspect(eng, tag)).get(LABEL_PREFIX + "bento_tag") != p.bento_tag:
            return False
    return True


def size_mb(eng: str, image: str) -> float:
    return float(inspect(eng, image).get("Size", 0)) / 1e6


def build(
    root: Path, what: str | None = None, force: bool = False, cache: bool = True
) -> dict[str, Any]:
    """Build (or find up to date) the image of WHAT's bento; returns what a person needs.
    `cache=False`: no layer of an earlier build is reused (a cold build; implies `force`)."""
    import bentoml

    t0 = time.monotonic()
    eng = engine()
    say(f"[1/3] the bento ({eng})")
    bento = resolve_bento(root, what)
    p = plan(bento, root, what if what and REGISTRY_VERSION.fullmatch(what) else None)
    say(f"  {p.bento_tag} -> {', '.join(p.tags)}")
    if not force and cache and up_to_date(eng, p):
        say(f"  {p.tags[0]} is already the image of {p.bento_tag}: nothing to build")
        return {**record(eng, p), "built": False, "seconds": round(time.monotonic() - t0, 1)}
    base = base_image(root)
    say("[2/3] the base image")
    if base:
        say("  " + ensure_base(root, eng, base))
        # the image is built to be run: where podman's defaults cannot run a container here,
        # this configures it now, not at the user's first `podman run`
        say("  " + check_runtime(base))
    args, volume, source = torch_source(eng)
    options: dict[str, Any] = {"build_arg": args, "label": p.labels, "no_cache": not cache}
    if eng == "podman":
        options.update(isolation="chroot", layers=True)
        if volume:
            options["volume"] = volume
        backend = "buildah"
    else:
        backend = "docker"
    say(f"[3/3] building the image (torch from {source}); {backend}'s output follows")
    try:
        with builder_output_shown():
            bentoml.container.build(p.bento_tag, backend=backend, image_tag=p.tags, **options)
    except Exception as e:
        raise ImageError(f"building the image of {p.bento_tag} failed: {e}") from None
    for tag in p.tags:
        if not image_exists(eng, tag):
            raise ImageError(
                f"the build of {p.bento_tag} failed: no image {tag}; the builder's output above "
                "says why"
            )
    return {**record(eng, p), "built": True, "seconds": round(time.monotonic() - t0, 1)}


def record(eng: str, p: Plan) -> dict[str, Any]:
    info = inspect(eng, p.tags[0])
    user = (info.get("Config") or {}).get("User") or info.get("User") or "root"
    return {
        "engine": eng,
        "image": p.tags[0],
        "tags": list(p.tags),
        "bento_tag": p.bento_tag,
        "labels": p.labels,
        "size_mb": round(size_mb(eng, p.tags[0])),
        "user": user,
    }
