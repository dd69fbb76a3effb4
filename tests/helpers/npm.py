"""The JSON schemas the manifest tests validate against, from npm (tests/npm/package-lock.json)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .paths import REPO

NPM_SRC = REPO / "tests" / "npm"
NPM_DIR = REPO / ".venv" / "npm"


def npm_modules() -> Path:
    """.venv/npm/node_modules as pinned by tests/npm/package-lock.json, installed when missing
    (`make setup` installs it): the schemas of deploy/ and of the GitHub workflow."""
    wanted = (NPM_SRC / "package-lock.json").read_text()
    modules = NPM_DIR / "node_modules"
    lock = NPM_DIR / "package-lock.json"
    if modules.is_dir() and lock.is_file() and lock.read_text() == wanted:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: the schema packages in tests/npm need Node.js and npm")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", ".npmrc"):
        shutil.copyfile(NPM_SRC / name, NPM_DIR / name)
    proc = subprocess.run(
        [npm, "ci", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"npm ci --prefix {NPM_DIR} failed:\n{proc.stderr[-2000:]}"
    return modules
