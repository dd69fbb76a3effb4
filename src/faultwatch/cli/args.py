"""Argument types the command groups share: argparse calls them on the text of an option, and
an ArgumentTypeError's message is printed after the option's name. Their names keep the leading
underscore they had: argparse prints a type's name when it raises ValueError (`invalid _override
value`), and scripts may match that."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import yaml


def _override(text: str) -> tuple[str, object]:
    """`-p key=value`: the value parsed as YAML (10 is an int, [1, 2] a list)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, yaml.safe_load(value)


def _percent(text: str) -> int:
    """A whole percentage, 0 to 100."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole percentage, 0 to 100") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value}: a percentage is 0 to 100")
    return value


def _steps(text: str) -> list[int] | str:
    """Rising canary percentages (10,25,50,100); "" (the flag alone) for params' own."""
    if text == "":
        return text  # --steps alone: params deploy.canary_steps
    steps = [_percent(s.strip()) for s in text.split(",")]
    if any(s == 0 for s in steps) or steps != sorted(set(steps)):
        raise argparse.ArgumentTypeError(f"{text!r}: rising percentages, e.g. 10,25,50,100")
    return steps


def _number(
    rule: str, ok: Callable[[float], bool], kind: type = float
) -> Callable[[str], float | int]:
    """An argparse type: a finite number of `kind` for which `ok(value)` holds; the message
    gives the rule (argparse names the flag)."""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {rule}") from None
        if kind is float and not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {rule}")
        return value

    return parse


def _when(text: str) -> float:
    """Unix seconds or an ISO 8601 time (UTC when it names no zone), as unix seconds."""
    # imported here: the retraining loop brings the deployment's modules, which every command
    # (and --help) would otherwise import
    from faultwatch.retrain import parse_time

    try:
        return parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
