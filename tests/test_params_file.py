"""params.yaml in the layout `dvc exp run -S` writes back, so that an experiment's change of one
value is a one-line diff of params.yaml; every section still loads and validates."""

from __future__ import annotations

import difflib

import yaml
from helpers.paths import REPO


def set_params(path, *overrides: str) -> None:
    """What `dvc exp run -S KEY=VALUE` does to params.yaml: DVC's own writer
    (dvc/repo/experiments/queue/base.py calls dvc.utils.hydra.apply_overrides, which rewrites
    the whole file through ruamel's round trip: dvc/utils/serialize/_yaml.py)."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(str(path), list(overrides))


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [ln for ln in diff if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def test_dvc_exp_run_set_param_changes_one_line_of_params_yaml(tmp_path):
    original = (REPO / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(original)
    lr = yaml.safe_load(original)["train"]["lr"]
    # the same value: DVC's writer must leave every line as it is
    set_params(path, f"train.lr={lr}")
    rewritten = changed_lines(original, path.read_text())
    assert rewritten == [], (
        "params.yaml: lines `dvc exp run -S` rewrites (write them as it does: single quotes, "
        "nothing for null, block lists `- item`):\n" + "\n".join(rewritten)
    )
    # another value: one line changes, comments and all else kept
    set_params(path, f"train.lr={lr * 10}")
    assert [ln.split("#")[0].strip() for ln in changed_lines(original, path.read_text())] == [
        f"-  lr: {lr}",
        f"+  lr: {lr * 10}",
    ]


def test_every_section_loads_and_dvc_reads_the_same_values():
    """The loaders validate each section as written (block lists, nothing for null), and DVC's
    own reader (what dvc.lock and `dvc exp show` record) sees the same values as faultwatch."""
    from dvc.utils.serialize import load_yaml

    from faultwatch.params import load_params, section

    raw = load_params(REPO / "params.yaml")
    assert raw["data"]["limit"] is None and raw["data"]["positive_label"] == "9"
    assert raw["train"]["channels"] == [16, 32, 64, 64, 64]
    from faultwatch.groups import specs

    for name in raw:
        if name == "groups":  # the model groups: each entry's overrides validated by section
            assert specs(raw) == {}
            continue
        section(name, raw)  # a bad value fails with its dotted key
    assert load_yaml(str(REPO / "params.yaml")) == raw
