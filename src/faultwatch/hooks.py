"""Checks that pre-commit runs as local hooks: `python -m faultwatch.hooks {yaml,parameters} FILES`."""

from __future__ import annotations

import json
import sys

import yaml


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


CHECKS = {"yaml": check_yaml, "parameters": check_parameters_cell}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in CHECKS:
        print(f"usage: python -m faultwatch.hooks {{{','.join(CHECKS)}}} FILES...", file=sys.stderr)
        return 2
    problems = CHECKS[argv[0]](argv[1:])
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
