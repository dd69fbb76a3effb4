"""What a notebook stage costs over the same code as a script.

One run, interleaved rounds, medians: the EDA stage through `faultwatch nb run` (in-process
engine), through `faultwatch nb run --kernel`, through the plain `papermill` CLI (Jupyter
kernel), and the notebook's code cells as a plain Python script; plus a no-op `dvc repro`.
Run from the project root after `make run` (it needs data/prepared):

    .venv/bin/python bench/notebook_overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTEBOOK = ROOT / "notebooks" / "01_eda.ipynb"


def as_script(nb_path: Path, dest: Path) -> Path:
    nb = nbformat.read(nb_path, 4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    dest.write_text("\n\n".join(code) + "\n")
    return dest


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not (ROOT / "data/prepared/train.parquet").exists():
        print("run `make run` first: the EDA stage needs data/prepared", file=sys.stderr)
        return 1
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
    with tempfile.TemporaryDirectory() as tmp:
        script = as_script(NOTEBOOK, Path(tmp) / "eda_script.py")
        # order matters: the in-process runner writes the bytes dvc.lock expects, so the
        # no-op `dvc repro` right after it has nothing to do (a kernel run's outputs differ)
        cases = {
            "runner --kernel": [str(BIN / "faultwatch"), "nb", "run", "--kernel", str(NOTEBOOK)],
            "papermill CLI": [
                str(BIN / "papermill"),
                "--no-progress-bar",
                str(NOTEBOOK),
                f"{tmp}/out.ipynb",
            ],
            "script": [str(BIN / "python"), str(script)],
            "runner": [str(BIN / "faultwatch"), "nb", "run", str(NOTEBOOK)],
            "dvc repro (no-op)": [str(BIN / "dvc"), "repro", "eda"],
        }
        timed([str(BIN / "dvc"), "repro", "eda"], env)  # bring the outputs up to date first
        times: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(args.rounds):
            for name, cmd in cases.items():
                times[name].append(timed(cmd, env))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedian of {args.rounds} rounds (wall seconds, whole process):")
    for k, v in med.items():
        print(f"  {k:<18} {v:6.2f}")
    s, r, k, p = med["script"], med["runner"], med["runner --kernel"], med["papermill CLI"]
    print("\nratios and overheads:")
    print(f"  runner / papermill CLI          {r / p:5.2f}   (target <= 1)")
    print(f"  runner - script                 {r - s:+5.2f} s (target <= 4 s)")
    print(f"  runner --kernel / papermill CLI {k / p:5.2f}")
    print(f"  papermill CLI - script          {p - s:+5.2f} s")
    print(f"  no-op dvc repro                 {med['dvc repro (no-op)']:5.2f} s (target < 3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
