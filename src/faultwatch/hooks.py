"""Checks pre-commit runs as local hooks: `python -m faultwatch.hooks CHECK FILES`."""

from __future__ import annotations

import json
import sys

import yaml

from faultwatch.lockcheck import check


def check_yaml(files: list[str]) -> list[str]:
    problems = []
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                list(yaml.safe_load_all(fh))
        except yaml.YAMLError as e:
            problems.append(f"{f}: not valid YAML: {e}")
    return problems


def check_parameters_cell(files: list[str]) -> list[str]:
    """Every notebook needs one code cell tagged `parameters` (papermill injects after it)."""
    problems = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            nb = json.load(fh)
        tagged = [
            c
            for c in nb.get("cells", [])
            if c.get("cell_type") == "code"
            and "parameters" in c.get("metadata", {}).get("tags", [])
        ]
        if len(tagged) != 1:
            problems.append(f"{f}: expected one code cell tagged 'parameters', found {len(tagged)}")
    return problems


def environment_yml(lock_text: str) -> str:
    """environment.yml for conda users, pinning exactly what requirements.lock pins."""
    pins = [ln.strip() for ln in lock_text.splitlines() if ln and not ln.startswith((" ", "#"))]
    lines = [
        "# Generated from requirements.lock by `make lock`: the same pins for conda users.",
        "#   conda env create -f environment.yml && conda activate faultwatch && pip install -e .",
        "name: faultwatch",
        "channels: [conda-forge]",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
        "      - --extra-index-url https://download.pytorch.org/whl/cpu",
        *(f"      - {p}" for p in pins),
    ]
    return "\n".join(lines) + "\n"


def check_environment(files: list[str]) -> list[str]:
    """environment.yml must match requirements.lock (regenerate with `make lock`)."""
    with open("requirements.lock", encoding="utf-8") as f:
        want = environment_yml(f.read())
    with open("environment.yml", encoding="utf-8") as f:
        have = f.read()
    return (
        [] if have == want else ["environment.yml differs from requirements.lock: run `make lock`"]
    )


def write_environment() -> int:
    with open("requirements.lock", encoding="utf-8") as f:
        text = environment_yml(f.read())
    with open("environment.yml", "w", encoding="utf-8") as f:
        f.write(text)
    return 0


def check_lock(files: list[str]) -> list[str]:
    """dvc.lock must hold the hashes of the code, notebooks and params git versions."""
    return check(".")


CHECKS = {
    "yaml": check_yaml,
    "parameters": check_parameters_cell,
    "environment": check_environment,
    "lock": check_lock,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["write-environment"]:
        return write_environment()
    if not argv or argv[0] not in CHECKS:
        print(f"usage: python -m faultwatch.hooks {{{','.join(CHECKS)}}} FILES...", file=sys.stderr)
        return 2
    problems = CHECKS[argv[0]](argv[1:])
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
