"""The code's shape, held by tools rather than by memory: the import layers (import-linter, the
contracts in pyproject.toml), module and function sizes, settings read in one place, no part
reading another's printed text."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "faultwatch"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def lint_imports(cwd: Path, src: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the package under `src` (first on the path: a copy, not the install)."""
    env = {"PATH": str(LINT_IMPORTS.parent) + ":/usr/bin:/bin", "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold():
    r = lint_imports(ROOT, ROOT / "src")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: " in r.stdout and " broken" in r.stdout, r.stdout
    assert re.search(r"Contracts: \d+ kept, 0 broken", r.stdout), r.stdout


@pytest.mark.parametrize(
    "where, line",
    [
        # an upward import at the top of a low module
        ("paths.py", "import faultwatch.cli  # noqa\n"),
        # the same hidden in a function: still an import, still refused
        ("params.py", "def _sneaky():\n    from faultwatch.deploy import live  # noqa\n"),
        # a backend module imported from outside the predlog package
        ("monitor/__init__.py", "from faultwatch.serve.predlog import sqlite  # noqa\n"),
    ],
)
def test_breaking_a_contract_on_purpose_fails_lint_imports(tmp_path, where, line):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    src = tmp_path / "src"
    shutil.copytree(SRC, src / "faultwatch", ignore=shutil.ignore_patterns("__pycache__"))
    target = src / "faultwatch" / where
    target.write_text(target.read_text() + "\n\n" + line)
    r = lint_imports(tmp_path, src)
    assert r.returncode != 0, r.stdout
    assert "BROKEN" in r.stdout, r.stdout


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_80_lines():
    long = []
    for p in modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


# the environment is read only through faultwatch.settings; what may still name os.environ is
# building or setting the environment of a child process (`dict(os.environ, ...)`, a write)
def code_lines(path: Path) -> dict[int, str]:
    """The lines of a module that hold code, without its comments and strings."""
    out: dict[int, str] = {}
    with path.open("rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type in (tokenize.NAME, tokenize.OP):
                out[tok.start[0]] = out.get(tok.start[0], "") + tok.string
    return out


OS_ENVIRON = re.compile(r"\bos\.(environ|getenv)\b|fromosimport(environ|getenv)")
CHILD = re.compile(
    r"dict\(os\.environ|os\.environ\.copy\(\)|\*\*os\.environ"
    r"|os\.environ\[[^]]*\]=|os\.environ\.(setdefault|update|pop)\("
)


def test_the_environment_is_read_only_through_the_settings_module():
    readers = []
    for p in modules():
        if p == SRC / "settings.py":
            continue
        lines = p.read_text().splitlines()
        for i, code in code_lines(p).items():
            if OS_ENVIRON.search(code) and not CHILD.search(code):
                readers.append(f"{p.relative_to(SRC)}:{i}: {lines[i - 1].strip()}")
    assert not readers, "read the environment through faultwatch.settings:\n" + "\n".join(readers)


def test_no_part_reads_another_parts_printed_text():
    hits = [
        f"{p.relative_to(SRC)}"
        for p in modules()
        if "redirect_stdout" in p.read_text() or "redirect_stderr" in p.read_text()
    ]
    assert not hits, hits


def test_the_readme_shows_the_layers_of_the_contract():
    """README's Layout lists the layers as pyproject.toml's contract has them, top to bottom."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "layers"]
    declared = [set(re.split(r"\s*[|:]\s*", layer)) for layer in contract["layers"]]
    text = (ROOT / "README.md").read_text()
    block = text.split("The package's layers, top to bottom", 1)[1].split("```")[1]
    shown = [
        {name.rstrip("/") for name in line.split("  ")[0].split()}
        for line in block.splitlines()
        if line.strip() and not line.startswith(" ")
    ]
    assert shown == declared[1:], (shown, declared)  # __main__ is not a layer anyone reads
