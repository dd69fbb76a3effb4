"""dvc.lock against what git versions: the committed lock must match the committed code.

`faultwatch.lockcheck` (the pre-commit hook `dvc-lock`) is checked on a small real DVC project
(`dvc repro` writes its dvc.lock; `dvc status` is the reference), then on this repository.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from helpers.cli import git_commit, run
from helpers.paths import REPO, VENV_BIN

from faultwatch.lockcheck import check, stale_lock_entries

PIPELINE = """\
stages:
  train:
    cmd: python3 -c "open('model.txt', 'w').write('m')"
    deps:
      - src/train.py
      - src/model
      - data/raw
    params:
      - train
    outs:
      - model.txt
"""


@pytest.fixture
def small_project(tmp_path):
    """git + DVC, one stage over a code file, a code folder, a data folder (a `dvc add`ed
    file git ignores) and a params section; `dvc repro` run and committed."""
    root = tmp_path / "p"
    (root / "src/model").mkdir(parents=True)
    (root / "data/raw").mkdir(parents=True)
    (root / "src/train.py").write_text("print('train')\n")
    (root / "src/model/net.py").write_text("LAYERS = 2\n")
    (root / "src/model/loss.py").write_text("LOSS = 'bce'\n")
    (root / "data/raw/signals.csv").write_text("label,value\n1,0.5\n")
    (root / "params.yaml").write_text("train:\n  lr: 0.001\n  channels:\n  - 4\n  - 8\n")
    (root / "dvc.yaml").write_text(PIPELINE)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
    run(["dvc", "add", "-q", "data/raw/signals.csv"], root)
    run(["dvc", "repro", "-q"], root)
    run(["git", "add", "-A"], root)
    git_commit(root, "pipeline run")
    return root


def modified_in_dvc_status(root) -> dict[str, list[str]]:
    """What real `dvc status` calls modified: {stage: [dep or params key]}."""
    status = json.loads(run(["dvc", "status", "--json"], root).stdout or "{}")
    found = {}
    for stage, entries in status.items():
        for entry in entries:
            for key, value in (
                entry.get("changed deps", {}) if isinstance(entry, dict) else {}
            ).items():
                if value == "modified":
                    found.setdefault(stage, []).append(key)
                elif isinstance(value, dict):  # params: {params.yaml: {key: modified}}
                    found.setdefault(stage, []).extend(f"{key}:{k}" for k in value)
    return found


def test_a_fresh_lock_passes_and_each_stale_dependency_is_named(small_project):
    root = small_project
    assert check(root) == [] and modified_in_dvc_status(root) == {}
    # what DVC does not hash, and what git does not version, never makes the lock stale:
    # bytecode (.dvcignore), the data DVC versions, a file not committed yet
    (root / "src/model/__pycache__").mkdir()
    (root / "src/model/__pycache__/net.cpython-311.pyc").write_bytes(b"\0bytecode")
    (root / "data/raw/signals.csv").write_text("label,value\n0,0.1\n")
    assert check(root) == []
    # a code file, a file in a code folder and a param: each named with its stage
    (root / "src/train.py").write_text("print('train, better')\n")
    (root / "src/model/net.py").write_text("LAYERS = 3\n")
    (root / "params.yaml").write_text("train:\n  lr: 0.01\n  channels:\n  - 4\n  - 8\n")
    stale = stale_lock_entries(root)
    assert [(s.stage, s.dep) for s in stale] == [
        ("train", "src/train.py"),
        ("train", "src/model"),
        ("train", "params.yaml:train.lr"),
    ]
    messages = check(root)
    assert messages[0].startswith("dvc.lock: stage 'train': src/train.py: changed since dvc.lock")
    assert (
        messages[2] == "dvc.lock: stage 'train': params.yaml:train.lr: 0.01 now, 0.001 in dvc.lock"
    )
    assert messages[-1].startswith("run `make run`")
    # the same dependencies real `dvc status` calls modified (the data too: it is DVC's;
    # it names the params key dvc.yaml lists, the check the value under it that changed)
    assert sorted(modified_in_dvc_status(root)["train"]) == sorted(
        ["src/train.py", "src/model", "data/raw", "params.yaml:train"]
    )
    # a new file in a code folder counts once git tracks it; `dvc repro` makes all fresh again
    (root / "src/model/extra.py").write_text("X = 1\n")
    run(["git", "add", "src/model/extra.py"], root)
    run(["dvc", "repro", "-q"], root)
    assert check(root) == []
    (root / "src/model/extra.py").unlink()
    assert [(s.stage, s.dep) for s in stale_lock_entries(root)] == [("train", "src/model")]


def test_the_precommit_hook_refuses_a_stale_lock(small_project):
    root = small_project
    shutil.copy(REPO / ".pre-commit-config.yaml", root)
    (root / ".venv").symlink_to(VENV_BIN.parent)
    hook = [".venv/bin/pre-commit", "run", "dvc-lock", "--all-files"]
    assert run(hook, root, check=False).returncode == 0
    (root / "src/train.py").write_text("print('changed, lock not rewritten')\n")
    proc = run(hook, root, check=False)
    assert proc.returncode == 1, proc.stdout
    assert "dvc.lock: stage 'train': src/train.py: changed since dvc.lock" in proc.stdout


def test_the_committed_dvc_lock_matches_the_committed_code():
    """HEAD's metrics come from HEAD's code: `make run`, then commit dvc.lock with the change."""
    started = time.perf_counter()
    problems = check(REPO)
    elapsed = time.perf_counter() - started
    assert problems == [], "\n".join(problems)
    assert elapsed < 10, f"the check took {elapsed:.1f} s: it runs on every commit"
