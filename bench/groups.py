"""Model groups through DVC: `dvc repro` of N tiny groups, a no-op, one group changed, and
groups trained one by one against in parallel (DVC's experiment queue).

Each run is a fresh copy of this project's tracked files (a git repo, the .venv linked) with N
groups, each its own small file under data/raw (24 signals of 48-64 samples: a sawtooth, the
fault the sawtooth reversed) and tiny training params (length 32, two epochs). Timed, whole
processes, in this session:
  - `dvc repro --glob 'group-register@*'` for each N of --groups (every stage of every group,
    one after another: what `dvc repro` does);
  - for the largest N: the same again with nothing changed (the no-op), then after one group's
    file changed (its group-params stage and every group's, which hash their own files, then
    that group's stages);
  - --parallel P groups: `dvc repro` (one by one) against `faultwatch group train --jobs J`
    (the experiment queue with J workers, then the results merged into the workspace), on two
    fresh copies; the ratio is the figure.

    .venv/bin/python bench/groups.py [--groups 1,10,50] [--parallel 10] [--jobs 2]
    (--parallel 0: no parallel comparison)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@b",
    "WANDB_MODE": "offline",
    "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
}
TINY = {
    "data": {"positive_label": "fault", "min_positive": 4, "min_length": 16,
             "max_length": 1000, "limit": None, "production_dir": None},
    "split": {"seed": 7, "val_fraction": 0.25, "test_fraction": 0.25},
    "augment": {"target_fault_ratio": 0.3},
    "train": {"length": 32, "channels": [4, 8], "kernel_size": 5, "batch_size": 16,
              "max_epochs": 2, "patience": 2, "accelerator": "cpu", "wandb": False},
    "evaluate": {"baseline_n_estimators": 10, "baseline_feature_length": 32, "worst_n": 1},
}  # fmt: skip


def sh(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def group_data(seed: int, n: int = 24, faults: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = int(rng.integers(48, 65))
        x = (np.linspace(0, rng.uniform(3, 5), k) + rng.uniform(0, 1)) % 1.0 - 0.5
        if i >= n - faults:
            x = x[::-1].copy()
        x = x + 0.03 * rng.standard_normal(k)
        rows.append((f"s{i}", "fault" if i >= n - faults else "ok", list(x.round(5))))
    return pd.DataFrame(rows, columns=["id", "label", "values"])


def make_project(dest: Path, groups: int) -> Path:
    files = sh(["git", "ls-files", "--cached"], REPO).splitlines()
    for f in files:
        if f.startswith("data/") or f.endswith(".dvc") or not (REPO / f).is_file():
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dest / f)
    (dest / ".venv").symlink_to(VENV)
    (dest / "data/raw").mkdir(parents=True, exist_ok=True)
    p = yaml.safe_load((dest / "params.yaml").read_text())
    for name, sec in TINY.items():
        p[name].update(sec)
    p["groups"] = {}
    for g in range(groups):
        group_data(g).to_parquet(dest / f"data/raw/g{g}.parquet", index=False)
        p["groups"][f"g{g}"] = {"data": {"source": f"data/raw/g{g}.parquet"}}
    (dest / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    sh(["git", "init", "-q"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "commit", "-qm", "bench"], dest)
    return dest


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = sh(cmd, cwd)
    return time.perf_counter() - t0, out


REPRO = ["dvc", "repro", "--glob", "group-register@*"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", default="1,10,50")
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    sizes = [int(x) for x in args.groups.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="fw-groups-") as tmp:
        tmp = Path(tmp)
        seq = {}
        for n in sizes:
            root = make_project(tmp / f"n{n}", n)
            seq[n], _ = timed(REPRO, root)
            print(f"dvc repro, {n:>3} groups: {seq[n]:7.1f} s ({seq[n] / n:.1f} s a group)")
            if n == max(sizes):
                noop, out = timed(REPRO, root)
                ran = out.count("Running stage")
                print(
                    f"dvc repro, {n:>3} groups, nothing changed: {noop:6.1f} s ({ran} stages ran)"
                )
                group_data(1000).to_parquet(root / "data/raw/g0.parquet", index=False)
                one, out = timed(REPRO, root)
                ran = [s for s in out.split("Running stage '")[1:]]
                rest = [s.split("'")[0] for s in ran if not s.startswith("group-params@")]
                print(
                    f"dvc repro, {n:>3} groups, one group's file changed: {one:6.1f} s "
                    f"(every group-params, then {', '.join(rest)})"
                )
            shutil.rmtree(root, ignore_errors=True)
        p = args.parallel
        if not p:
            return
        if p not in seq:
            root = make_project(tmp / f"p{p}", p)
            seq[p], _ = timed(REPRO, root)
            shutil.rmtree(root, ignore_errors=True)
        root = make_project(tmp / f"q{p}", p)
        par, _ = timed(["faultwatch", "group", "train", "--jobs", str(args.jobs)], root)
        status = sh(["dvc", "status"], root).splitlines()
        # the group-eda stages were not asked for (nor by the one-by-one run)
        changed = [s for s in status if s.startswith("group-") and not s.startswith("group-eda@")]
        clean = not changed
        print(
            f"{p} groups one by one (dvc repro): {seq[p]:.1f} s; in parallel (group train "
            f"--jobs {args.jobs}): {par:.1f} s; ratio {seq[p] / par:.2f}x "
            f"(dvc status after: {'clean' if clean else 'NOT clean'})"
        )


if __name__ == "__main__":
    main()
