"""Running the project's tools as a person does: the venv's programs first on PATH, W&B offline,
no FAULTWATCH_ROOT; `fw()` is the faultwatch CLI in a test project."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .paths import VENV_BIN


def tool_env(**extra: str) -> dict[str, str]:
    """This process's environment as the tools should see it, plus `extra`."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["WANDB_MODE"] = "offline"
    env.pop("FAULTWATCH_ROOT", None)
    env.pop("MAKELEVEL", None)  # under `make test`: the commands' hints are the shell's, not make's
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """`cmd` in `cwd` (tool_env plus `env`), output captured; with `check`, fails on non-zero."""
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(**env), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def git_commit(repo: Path, message: str) -> None:
    """Commit everything staged (or nothing) as a test author, without hooks."""
    run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ],
        repo,
    )


def store_env(root: Path) -> dict[str, str]:
    """The environment of a test project's commands: its own BentoML store, no telemetry."""
    return {"BENTOML_HOME": str(root / ".bentoml"), "BENTOML_DO_NOT_TRACK": "true"}


def project_env(root: Path) -> dict[str, str]:
    """store_env, and no git above the project (GIT_CEILING_DIRECTORIES)."""
    return {**store_env(root), "GIT_CEILING_DIRECTORIES": str(root.parent)}


def fw(root: Path, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    """`faultwatch ARGS` as a person types it, in the project `root` (project_env plus `extra`)."""
    return run(["faultwatch", *args], root, check=check, **project_env(root), **extra)
