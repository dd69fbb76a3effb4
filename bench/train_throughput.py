"""Training samples per second: a Lightning `Trainer` against a plain PyTorch loop.

Same network (`FaultCNN`), same data (synthetic signals, already resampled), same batch size,
same optimizer and loss, same number of threads, in one process. The machine is noisy, so
the two are measured in interleaved pairs (alternating which goes first) and the median of
the per-pair ratios is the figure. Each measurement times the whole `fit` call (Trainer set-up
included) against the whole plain loop; the Trainer has no logger, no checkpoint and no
progress bar, as in the timings of a training loop one would otherwise write by hand.

Two clocks: wall time (what a user waits) and this process's CPU time (less sensitive to
other processes competing for the cores; the figure to trust on a shared machine).

    .venv/bin/python bench/train_throughput.py [--pairs 9] [--epochs 3] [--n 2048] [--length 512]
        [--accelerator cpu|gpu]

On a GPU (`--accelerator gpu`) both move the network to it and each batch as it comes (as the
Trainer does), and the plain loop waits for the GPU before its clock stops; the CPU-time clock
then counts the host's side only.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from functools import partial

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from faultwatch.model.module import FaultClassifier
from faultwatch.model.network import FaultCNN

CHANNELS, KERNEL = [16, 32, 64], 7


def make_data(n: int, length: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, length, generator=g)
    y = (torch.rand(n, generator=g) < 0.1).float()
    return TensorDataset(x, y)


def loader(ds: TensorDataset, batch_size: int, seed: int) -> DataLoader:
    return DataLoader(
        ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def torch_device(accelerator: str) -> torch.device:
    return torch.device("cuda" if accelerator in ("gpu", "cuda") else "cpu")


def plain_loop(
    ds: TensorDataset, batch_size: int, epochs: int, lr: float, accelerator: str = "cpu"
) -> Clock:
    """A hand-written loop."""
    torch.manual_seed(0)
    device = torch_device(accelerator)
    net = FaultCNN(CHANNELS, KERNEL).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(9.0, device=device))
    dl = loader(ds, batch_size, 0)
    with Clock() as clock:
        net.train()
        for _ in range(epochs):
            for x, y in dl:
                x, y = x.to(device), y.to(device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), y)
                loss.backward()
                opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return clock


def lightning_fit(
    ds: TensorDataset, batch_size: int, epochs: int, lr: float, accelerator: str = "cpu"
) -> Clock:
    """`Trainer.fit` on FaultClassifier (the Trainer's set-up included)."""
    import pytorch_lightning as pl

    torch.manual_seed(0)
    model = FaultClassifier(
        FaultCNN(CHANNELS, KERNEL),
        optimizer=partial(torch.optim.AdamW, lr=lr),
        loss=nn.BCEWithLogitsLoss(pos_weight=torch.tensor(9.0)),
    )
    with Clock() as clock:
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=1,
            max_epochs=epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        trainer.fit(model, train_dataloaders=loader(ds, batch_size, 0))
    return clock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=9)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--accelerator", default="cpu", help="cpu or gpu")
    args = ap.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    ds = make_data(args.n, args.length)
    print(
        f"{args.n} signals of {args.length}, batch {args.batch_size}, {args.epochs} epochs per "
        f"measurement, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"on {torch.cuda.get_device_name(0) if torch_device(args.accelerator).type == 'cuda' else 'cpu'}"
    )
    # warm-up (oneDNN primitives, Lightning's imports): not measured
    plain_loop(ds, args.batch_size, 1, args.lr, args.accelerator)
    lightning_fit(ds, args.batch_size, 1, args.lr, args.accelerator)

    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    samples = args.epochs * args.n
    for i in range(args.pairs):
        order = ("plain", "lightning") if i % 2 == 0 else ("lightning", "plain")
        clocks = {}
        for name in order:
            fn = plain_loop if name == "plain" else lightning_fit
            clocks[name] = fn(ds, args.batch_size, args.epochs, args.lr, args.accelerator)
        plain, light = clocks["plain"], clocks["lightning"]
        ratios["wall"].append(plain.wall / light.wall)
        ratios["cpu"].append(plain.cpu / light.cpu)
        print(
            f"pair {i + 1} ({order[0]:9s} first): samples/s wall plain {samples / plain.wall:6.0f} "
            f"lightning {samples / light.wall:6.0f} ratio {ratios['wall'][-1]:.3f} | "
            f"per CPU-s plain {samples / plain.cpu:6.0f} lightning {samples / light.cpu:6.0f} "
            f"ratio {ratios['cpu'][-1]:.3f}"
        )
    for clock, values in ratios.items():
        print(
            f"median ratio lightning / plain ({clock} clock): {statistics.median(values):.3f} "
            f"(min {min(values):.3f}, max {max(values):.3f}, {args.pairs} pairs)"
        )


if __name__ == "__main__":
    main()
