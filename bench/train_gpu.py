"""Training throughput of the real train path (`faultwatch.train.train`) on CPU or GPU.

The `train` section of params.yaml as it is, except what this script sets: the accelerator,
the precision, `patience = max_epochs` (every run goes the same number of epochs, so runs
compare), W&B off, and the model, report and checkpoint folders in a temporary folder (the
project's own outputs are left alone). For each precision given, one run in this process, in
order; the first run on a GPU pays CUDA's start-up (context, cuDNN's autotuning), so its epoch
0 is slower: the figure to compare is the median samples/s of the epochs after the first.

samples/s is what the train stage records in reports/train/run.json: training samples over the
seconds from an epoch's start to its last batch (validation not included). `wall_s` is the whole
`train()` call: data loading, the Trainer's set-up, validation, checkpoints, saving the model.

    .venv/bin/python bench/train_gpu.py                                # accelerator cpu
    python bench/train_gpu.py --accelerator gpu --precision 32-true 16-mixed bf16-mixed
    python bench/train_gpu.py --data-dir DIR  # DIR/augmented/train.parquet, DIR/prepared/val.parquet
    python bench/train_gpu.py --accelerator gpu --cpu-baseline   # the CPU first: GPU/CPU ratio

It ends with each run's samples/s and its ratio to the first run of this process.

Measured 2026-11 (torch 2.11.0+cu130, Lightning 2.6.6; params.yaml's train section, 962
training signals of 1024 points per epoch, 30 epochs, deterministic): NVIDIA H100 80GB HBM3
5,300-5,600 samples/s at 32-true, 5,600 at 16-mixed, 5,500 at bf16-mixed (about 0.17 s per
epoch: 15 batches of 64, bound by the per-step work on the host, not the GPU); the same
machine's CPU 2,180 samples/s on 16 threads, 700 on 2 (`taskset -c 0,1`, OMP_NUM_THREADS=2).
Batch 256 on the H100: about 15,000. Best val_pr_auc 1.0 in every run (6 faults in val).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

from faultwatch.model.params import TrainParams
from faultwatch.params import load_params
from faultwatch.paths import project_root
from faultwatch.train import train


def device_name(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def one_run(base: dict, args: argparse.Namespace, precision: str, root: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="train-gpu-") as tmp:
        overrides = {
            "accelerator": args.accelerator,
            "precision": precision,
            "deterministic": args.deterministic,
            "wandb": False,
            "model_dir": f"{tmp}/model",
            "report_dir": f"{tmp}/report",
            "checkpoint_root": f"{tmp}/checkpoints",
        }
        if args.epochs:
            overrides["max_epochs"] = args.epochs
        if args.batch_size:
            overrides["batch_size"] = args.batch_size
        if args.data_dir:
            overrides["train_path"] = str(Path(args.data_dir, "augmented", "train.parquet"))
            overrides["val_path"] = str(Path(args.data_dir, "prepared", "val.parquet"))
        params = TrainParams.model_validate({**base, **overrides})
        params = params.model_copy(update={"patience": params.max_epochs})
        t0 = time.perf_counter()
        result = train(params, root)
        wall = time.perf_counter() - t0
    h = result.history
    later = h["samples_per_s"].iloc[1:] if len(h) > 1 else h["samples_per_s"]
    return {
        "accelerator": args.accelerator,
        "device": device_name(args.accelerator),
        "precision": precision,
        "deterministic": params.deterministic,
        "batch_size": params.batch_size,
        "epochs": result.epochs_run,
        "samples_per_epoch": int(h["samples"].iloc[0]),
        "samples_per_s": round(result.samples_per_s, 1),
        "samples_per_s_median_after_epoch0": round(statistics.median(later), 1),
        "epoch0_train_s": round(float(h["train_seconds"].iloc[0]), 3),
        "train_seconds": round(result.train_seconds, 3),
        "train_s_per_epoch_median": round(statistics.median(h["train_seconds"].iloc[1:]), 4)
        if len(h) > 1
        else None,
        "wall_s": round(wall, 2),
        "wall_s_per_epoch": round(wall / result.epochs_run, 3),
        "best_val_pr_auc": round(result.best_val_pr_auc, 6),
        "best_epoch": result.best_epoch,
        "final_val_pr_auc": round(float(h["val_pr_auc"].iloc[-1]), 6),
        "final_val_loss": round(float(h["val_loss"].iloc[-1]), 6),
        "torch": torch.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--accelerator", default="cpu", help="cpu, gpu or auto (params: train.accelerator)"
    )
    ap.add_argument("--precision", nargs="+", default=["32-true"], help="one run per value")
    ap.add_argument("--epochs", type=int, default=None, help="default: train.max_epochs")
    ap.add_argument("--batch-size", type=int, default=None, help="default: train.batch_size")
    ap.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="default: deterministic as in params (train.deterministic)",
    )
    ap.add_argument("--data-dir", default=None, help="default: the paths in params.yaml")
    ap.add_argument("--json", default=None, help="append one JSON line per run to this file")
    ap.add_argument(
        "--cpu-baseline",
        action="store_true",
        help="first a 32-true run on the CPU in this process: the baseline of the ratios",
    )
    args = ap.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")

    root = project_root()
    base = dict(load_params(root / "params.yaml")["train"])
    if args.deterministic:
        args.deterministic = bool(base.get("deterministic", True))
    plan = [(args.accelerator, p) for p in args.precision]
    if args.cpu_baseline:
        plan.insert(0, ("cpu", "32-true"))
    rows = []
    for accelerator, precision in plan:
        try:
            row = one_run(
                base,
                argparse.Namespace(**{**vars(args), "accelerator": accelerator}),
                precision,
                root,
            )
        except Exception as e:  # report and go on with the next precision
            traceback.print_exc()
            row = {
                "accelerator": args.accelerator,
                "precision": precision,
                "error": f"{type(e).__name__}: {e}",
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    # the ratio of each run's median samples/s (epochs after the first) to the first run's
    done = [r for r in rows if "error" not in r]
    if done:
        first = done[0]
        key = "samples_per_s_median_after_epoch0"
        for r in done:
            print(
                f"{r['accelerator']} {r['precision']}: {r[key]:.0f} samples/s, "
                f"ratio to {first['accelerator']} {first['precision']}: "
                f"{r[key] / first[key]:.2f}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
