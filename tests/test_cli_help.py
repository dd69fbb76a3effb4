"""The `faultwatch` command as a newcomer meets it: --help tells the order of things, --version
answers, every argument has a help line, and no two commands are a letter apart."""

from __future__ import annotations

import argparse
import importlib.metadata
import re

from helpers.cli import run

from faultwatch.cli import parser


def test_version_comes_from_the_package_metadata(tmp_path):
    out = run(["faultwatch", "--version"], tmp_path).stdout
    assert out == f"faultwatch {importlib.metadata.version('faultwatch')}\n"


def test_help_tells_the_order_of_things(tmp_path):
    out = run(["faultwatch", "--help"], tmp_path).stdout
    assert "dvc.yaml" not in out
    steps = ["make run", "faultwatch promote", "faultwatch deploy up", "faultwatch monitor"]
    steps.append("faultwatch retrain")
    at = [out.find(s) for s in steps]
    assert -1 not in at and at == sorted(at), dict(zip(steps, at, strict=True))


def test_no_two_listed_commands_are_a_letter_apart(tmp_path):
    out = run(["faultwatch", "--help"], tmp_path).stdout
    listed = re.findall(r"^    ([a-z][\w-]*)", out, re.M)
    assert "report" in listed and "reports" not in listed, listed
    for a in listed:
        for b in listed:
            assert a == b or not (a.startswith(b) and len(a) - len(b) == 1), (a, b)


def test_every_argument_has_help(tmp_path):
    out = run(["faultwatch", "deploy", "canary", "--help"], tmp_path).stdout
    (pct,) = re.findall(r"^  PCT +(.+)$", out, re.M)
    assert "share of the traffic" in pct, out


def test_report_list_lists_the_files_and_the_old_name_still_works(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    for f in ("metrics/train.json", "metrics/evaluate.json", "notebooks/03_train.html"):
        (tmp_path / "reports" / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "reports" / f).write_text("{}")
    listed = run(["faultwatch", "report", "--list"], tmp_path).stdout
    lines = listed.splitlines()
    assert lines[1].split() == ["metrics/", "evaluate.json,", "train.json"], lines
    assert lines[2].split() == ["notebooks/", "03_train.html"], lines
    assert "reports/index.html is not written yet" in lines[-1], lines
    assert not (tmp_path / "reports/index.html").exists()  # --list writes nothing
    assert run(["faultwatch", "reports"], tmp_path).stdout == listed


# what `faultwatch --help` lists, in this order (scripts and the README name them)
COMMANDS = [
    "prepare",
    "group",
    "nb",
    "register",
    "package",
    "image",
    "promote",
    "approve",
    "reject",
    "registry",
    "serve",
    "labellers",
    "deploy",
    "simulate-traffic",
    "retrain",
    "monitor",
    "review",
    "report",
    "config",
]


def commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every command and sub-command under `p`, depth first."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield (*path, name), sp
                yield from commands(sp, (*path, name))


def test_help_lists_the_commands_in_their_order(tmp_path):
    out = run(["faultwatch", "--help"], tmp_path).stdout
    assert re.findall(r"^    ([a-z][\w-]*)", out, re.M) == COMMANDS, out


def test_every_command_runs_its_own_handler():
    """Each command group registers its handlers next to its sub-parsers (set_defaults): every
    command that takes no sub-command has a handler from its group's module, and no two
    deploy verbs share one (no dispatch by name)."""
    leaves = {
        path: sp.get_default("func")
        for path, sp in commands(parser())
        if not any(isinstance(a, argparse._SubParsersAction) for a in sp._actions)
    }
    assert len(leaves) >= 25, sorted(leaves)
    for path, func in leaves.items():
        assert callable(func), path
        assert func.__module__.startswith("faultwatch.cli."), (path, func.__module__)
    deploy = [func for path, func in leaves.items() if path[0] == "deploy"]
    assert len(deploy) == 9 and len(set(deploy)) == len(deploy), deploy
