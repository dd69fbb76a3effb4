"""The monitor stage as a person runs it: `faultwatch monitor` over a 100 000-row prediction
log, whole process (start, imports, reading the log, the reference's features and embeddings,
the decision, the notebook and its pages), against a plain Evidently drift report of the same
rows (its own process: import, read the same features from the same log, DataDriftPreset,
save_html), in one run, interleaved rounds, medians.

The project: PLAID's seeded 65 % training split (bench/monitor.py's), an untrained FaultCNN
(the bench's network, as models/fault_cnn), and a SQLite log of 100 000 predictions replaying
the other 35 % with gain and noise (features, embeddings, 30 % labelled), written through
faultwatch.serve.predlog as the service writes it.

    .venv/bin/python bench/monitor_stage.py [--rows 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

# the plain report: what a person would write with Evidently alone, given the same log
PLAIN = """
import sqlite3, sys
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from faultwatch.features import FEATURES
cols = list(FEATURES)
with sqlite3.connect(sys.argv[1]) as db:
    current = pd.read_sql(f"SELECT {', '.join(cols)} FROM predictions", db)
reference = pd.read_parquet(sys.argv[2], columns=cols)
definition = DataDefinition(numerical_columns=cols)
snapshot = Report([DataDriftPreset(columns=cols, method="psi", threshold=0.2)]).run(
    Dataset.from_pandas(current.sample(min(len(current), 20000), random_state=0), data_definition=definition),
    Dataset.from_pandas(reference, data_definition=definition),
)
snapshot.save_html(sys.argv[3])
"""


def build_project(dest: Path, rows: int) -> None:
    """The project the monitor runs in: its training split, model, registration and log."""
    import torch
    from monitor import plaid_split, production, write_sqlite_log

    from faultwatch.model.io import load_model, save_model
    from faultwatch.model.network import FaultCNN
    from faultwatch.monitor.reference import reference_frame

    (dest / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks/05_monitor.ipynb", dest / "notebooks")
    train, pool = plaid_split()
    (dest / "data/prepared").mkdir(parents=True)
    train.assign(values=train["values"].map(list)).to_parquet(dest / "data/prepared/train.parquet")
    # the plain report's reference: the same features of the same training signals
    reference_frame(train).to_parquet(dest / "reference_features.parquet")
    torch.manual_seed(0)
    net = FaultCNN(channels=[16, 32, 64, 64, 64], kernel_size=9).eval()
    desc = save_model(dest / "models/fault_cnn", net, {"input_length": 1024, "positive_label": "9"})
    (dest / "reports").mkdir()
    (dest / "reports/register.json").write_text(
        json.dumps({"model_tag": "fault_cnn:v1", "weights_sha256": desc["weights_sha256"]})
    )
    frame, emb = production(pool, rows, load_model(dest / "models/fault_cnn"))
    write_sqlite_log(frame, emb, dest / "predictions.sqlite", labels=True)
    monitor = {"log": "predictions.sqlite", "last": "2h", "label_delay": "1m"}
    (dest / "params.yaml").write_text(json.dumps({"monitor": monitor}))


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "WANDB_MODE": "offline", "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "proj"
        t0 = time.perf_counter()
        build_project(project, args.rows)
        print(f"project with a {args.rows}-row log built in {time.perf_counter() - t0:.0f} s")
        runs = {
            "faultwatch monitor (pages)": [str(BIN / "faultwatch"), "monitor"],
            "faultwatch monitor --no-html": [str(BIN / "faultwatch"), "monitor", "--no-html"],
            "plain Evidently report": [
                sys.executable,
                "-c",
                PLAIN,
                "predictions.sqlite",
                "reference_features.parquet",
                "plain.html",
            ],
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        timed(runs["faultwatch monitor --no-html"], project)  # warm the page cache
        for _ in range(args.rounds):
            for name, cmd in runs.items():
                times[name].append(timed(cmd, project))
        result = json.loads((project / "reports/metrics/monitor.json").read_text())
    med = {k: statistics.median(v) for k, v in times.items()}
    plain = med["plain Evidently report"]
    print(f"rows {args.rows}, rounds {args.rounds}, whole processes, median s (ratio to plain):")
    for name, s in med.items():
        print(
            f"  {name:32s} {s:6.2f} s  {s / plain:5.2f} x   runs {[round(t, 2) for t in times[name]]}"
        )
    print(f"  retrain_needed {result['retrain_needed']}, reasons {len(result['reasons'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
