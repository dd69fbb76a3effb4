"""Training samples per second with three channels against one, on the real train path.

Two projects of the same synthetic vibration signals (N signals of LENGTH points, 20 % faults:
a burst on one axis): one with the three axes (x, y, z), one with x alone (`data.channels`
selects it, so both go through the same multichannel code; the bundled data's univariate path
is the same network with one input channel). Each goes through the real `prepare` and
`faultwatch.train.train` with params.yaml's `train` section (the network, batch size), every
epoch run (patience = max_epochs), W&B off, in a temporary folder. Runs alternate 1 / 3
channels in pairs (which goes first alternates too) and the figure is the median of the
per-pair ratios of samples/s, as the train stage records it (training samples over the
seconds of the epochs' training batches).

The extra channels cost only the first convolution's input (3 x kernel x 16 weights instead of
1 x kernel x 16) and the data: the rest of the network is the same size.

    .venv/bin/python bench/train_channels.py [--pairs 3] [--n 512] [--length 1024] [--epochs 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.datafiles import write_parquet_nested  # noqa: E402


def vibration(n: int, length: int, seed: int = 0) -> pd.DataFrame:
    """Three phase-shifted axes with noise; a fault adds a burst on z."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 40 * np.pi, length)
    rows = []
    for i in range(n):
        fault = i % 5 == 0
        axes = np.stack([np.sin(t + p) for p in (0.0, 0.5, 1.0)])
        axes += 0.1 * rng.standard_normal(axes.shape)
        if fault:
            axes[2, length // 3 : length // 3 + length // 20] += 3.0
        rows.append((f"v{i}", "fault" if fault else "ok", axes))
    return pd.DataFrame(rows, columns=["id", "label", "values"])


def project(tmp: Path, source: Path, channels: list[str]) -> Path:
    from faultwatch.data.params import DataParams, SplitParams
    from faultwatch.data.prepare import prepare

    root = tmp / "-".join(channels)
    root.mkdir()
    (root / "params.yaml").write_text("{}\n")
    data = DataParams(
        source=str(source),
        positive_label="fault",
        min_positive=4,
        production_dir=None,
        channels=channels,
    )
    prepare(data, SplitParams(seed=0, val_fraction=0.15, test_fraction=0.15), root)
    return root


def samples_per_s(root: Path, epochs: int, run: int) -> float:
    from faultwatch.model.params import TrainParams
    from faultwatch.train import train

    section = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    section.update(
        train_path="data/prepared/train.parquet",
        max_epochs=epochs,
        patience=epochs,
        wandb=False,
        accelerator="cpu",
        model_dir=f"models/run{run}",
        report_dir=f"reports/run{run}",
        seed=42 + run,  # a new run key: nothing resumes from the previous run's checkpoint
    )
    return train(TrainParams(**section), root).samples_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        source = write_parquet_nested(vibration(args.n, args.length), tmp / "vibration.parquet")
        roots = {
            1: project(tmp, source, ["dim_0"]),
            3: project(tmp, source, ["dim_0", "dim_1", "dim_2"]),
        }
        figures: dict[int, list[float]] = {1: [], 3: []}
        ratios = []
        for pair in range(args.pairs):
            order = (1, 3) if pair % 2 == 0 else (3, 1)
            got = {
                c: samples_per_s(roots[c], args.epochs, pair * 2 + i) for i, c in enumerate(order)
            }
            for c, v in got.items():
                figures[c].append(v)
            ratios.append(got[3] / got[1])
            print(
                f"pair {pair}: 1 channel {got[1]:,.0f}/s, 3 channels {got[3]:,.0f}/s, ratio {ratios[-1]:.2f}"
            )
    print(
        f"\n{args.n} signals x {args.length} points, {args.epochs} epochs, params.yaml's network: "
        f"1 channel median {statistics.median(figures[1]):,.0f} samples/s, 3 channels "
        f"{statistics.median(figures[3]):,.0f} samples/s; 3 / 1 = {statistics.median(ratios):.2f} "
        f"(median of {len(ratios)} pairs)"
    )


if __name__ == "__main__":
    main()
