"""Reading the registry with many tags: faultwatch's reader against GTO's, on the same repo.

A temporary git repository with G artifacts (model groups) x V versions, each version an
annotated registration tag with its record, approved, and one production version per group:
the tags GTO writes (`g7@v0.0.3`, `g7#approved#12`, `g7#prod#13`), made here with git directly
(registering 500 versions through GTO takes minutes). Timed in this process: GTO's import, its
`show` of every artifact's versions (what a fleet listing needs), and faultwatch.registry's
`artifacts` (one `git for-each-ref`); the ratio is the figure. Both find the same versions.

    .venv/bin/python bench/registry.py [--groups 50] [--versions 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@b",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, env=ENV, check=True, capture_output=True, text=True
    ).stdout


def make_repo(root: Path, groups: int, versions: int) -> None:
    git(root, "init", "-q")
    n = 0
    for k in range(versions):
        (root / "f").write_text(str(k))
        git(root, "add", "f")
        git(root, "commit", "-qm", f"c{k}")
        sha = git(root, "rev-parse", "HEAD").strip()
        for g in range(groups):
            record = json.dumps({"model_tag": f"g{g}:{k}", "test": {"f1": 0.5 + k / 100}})
            git(root, "tag", "-a", f"g{g}@v0.0.{k + 1}", sha, "-m", record)
            n += 1
            git(root, "tag", "-a", f"g{g}#approved#{n}", sha, "-m", "the gate passed it")
            if k == versions - 2:
                n += 1
                git(root, "tag", "-a", f"g{g}#prod#{n}", sha, "-m", "switched")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        t0 = time.perf_counter()
        make_repo(root, args.groups, args.versions)
        n_tags = len(git(root, "tag").split())
        print(
            f"{n_tags} tags ({args.groups} groups x {args.versions} versions) made in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        t0 = time.perf_counter()
        from faultwatch import registry

        ours_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        from gto import api

        gto_import = time.perf_counter() - t0
        ours, theirs = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fleet = registry.artifacts(root)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            shown = {  # the summary (a dict by artifact), then each artifact's versions
                name: api.show(str(root), name, versions_per_stage=-1)
                for name in api.show(str(root))
            }
            theirs.append(time.perf_counter() - t0)
        assert {k: [v.version for v in vs] for k, vs in fleet.items()} == {
            k: sorted((v["version"] for v in vs), key=lambda s: [int(x) for x in s[1:].split(".")])
            for k, vs in shown.items()
        }, "the two readers disagree"
        a, b = statistics.median(ours), statistics.median(theirs)
        print(
            f"faultwatch.registry.artifacts: {a * 1e3:.0f} ms (import {ours_import * 1e3:.0f} ms)"
        )
        print(f"GTO api.show, every artifact:  {b * 1e3:.0f} ms (import {gto_import * 1e3:.0f} ms)")
        print(
            f"GTO / faultwatch: {b / a:.0f}x (median of {args.repeat}); with imports "
            f"{(b + gto_import) / (a + ours_import):.0f}x"
        )
        # the command a person types: `faultwatch registry list` (a process: its imports, the
        # params, one read of the tags), against `gto show` of the same repository
        (root / "params.yaml").write_text("groups: {}\n")
        (root / "dvc.yaml").write_text("stages: {}\n")
        venv = Path(__file__).resolve().parents[1] / ".venv" / "bin"
        cli, gto_cli = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = subprocess.run(
                [str(venv / "faultwatch"), "registry", "list"], cwd=root, env=ENV,
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            cli.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([str(venv / "gto"), "show"], cwd=root, env=ENV, capture_output=True,
                           check=True)  # fmt: skip
            gto_cli.append(time.perf_counter() - t0)
        assert len(out.splitlines()) == args.groups + 2, out[:500]
        c, g = statistics.median(cli), statistics.median(gto_cli)
        print(
            f"`faultwatch registry list` ({args.groups} groups, whole process): {c:.2f} s; "
            f"`gto show` (the summary only): {g:.2f} s; ratio {g / c:.1f}x"
        )


if __name__ == "__main__":
    main()
