"""Test projects: a copy of this repository's tracked files on tiny data, as a fresh git repo,
and copies of a prepared project (built once per session by a fixture in conftest.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from .cli import git_commit, run
from .datafiles import write_tsv
from .paths import REPO, VENV_BIN
from .signals import make_signals

TINY_PARAMS = {
    "data": {
        "source": "data/raw/tiny.tsv",
        "positive_label": "fault",
        "min_positive": 5,
        "min_length": 16,
        "max_length": 1000,
        "limit": None,
    },
    "split": {"seed": 7, "val_fraction": 0.25, "test_fraction": 0.25, "out_dir": "data/prepared"},
}


# short params for tests that run the whole pipeline: seconds per stage, not minutes
TINY_PIPELINE = {
    "data": {"min_positive": 5},
    "augment": {"target_fault_ratio": 0.3},
    "train": {
        "length": 64,
        "channels": [4, 8],
        "kernel_size": 5,
        "batch_size": 16,
        "max_epochs": 3,
        "patience": 3,
        "accelerator": "cpu",
        "wandb": True,
    },
    "evaluate": {"baseline_n_estimators": 20, "baseline_feature_length": 32, "worst_n": 2},
}


def tracked_project_files(repo: Path = REPO) -> list[str]:
    """The files git tracks (as they are in the working tree), less the user's own data: what
    lies under data/ and DVC's `.dvc` pointer files (`dvc add data/raw/pumps.tsv`) would make a
    test project depend on data it does not have."""
    files = subprocess.run(
        ["git", "ls-files", "--cached"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [f for f in files if not f.startswith("data/") and not f.endswith(".dvc")]


def copy_project(dest: Path, params: dict | None = None) -> Path:
    """The repo's tracked files (no .venv, no outputs, no user data) in `dest`, as a fresh git
    repo, with tiny data in data/raw/tiny.tsv and `params` merged into params.yaml."""
    for f in tracked_project_files():
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (dest / ".venv").symlink_to(VENV_BIN.parent)
    write_tsv(make_signals(), dest / "data" / "raw" / "tiny.tsv")
    p = yaml.safe_load((dest / "params.yaml").read_text())
    for layer in (TINY_PARAMS, params or {}):
        for name, sec in layer.items():
            p.setdefault(name, {}).update(sec)
    (dest / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    git_commit(dest, "copy")
    return dest


def copy_tree(template: Path, dest: Path) -> Path:
    """A copy of a prepared test project (git history, DVC cache, outputs, store, links kept):
    what several test modules need, built once per session by a template fixture."""
    shutil.copytree(template, dest, symlinks=True)
    return dest


def prepare_three_axis(root: Path) -> Path:
    """helpers.signals.three_axis_signals (a list column per axis, x y z) through the real
    prepare stage in `root`: its splits under root/data/prepared, which it returns."""
    from faultwatch.data.params import DataParams, SplitParams
    from faultwatch.data.prepare import prepare

    from .datafiles import write_parquet_columns
    from .signals import AXES, three_axis_signals

    write_parquet_columns(three_axis_signals(), root / "axes.parquet", AXES)
    data = DataParams(
        source="axes.parquet",
        positive_label="fault",
        min_positive=4,
        min_length=16,
        production_dir=None,
    )
    prepare(data, SplitParams(seed=3, val_fraction=0.25, test_fraction=0.25), root)
    return root / "data/prepared"
