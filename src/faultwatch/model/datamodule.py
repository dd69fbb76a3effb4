"""`SignalDataModule`: the split files as tensors, through the one shared transform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from faultwatch.errors import DataError
from faultwatch.preprocess import to_matrix
from faultwatch.splits import frame_channels, split_channels
from faultwatch.splits import read_split as read_split_file


class EpochSeededSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch): a resumed run sees the same order as an
    uninterrupted one. Lightning calls `set_epoch` at the start of every epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def read_split(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(str(path), "file_exists", "no such split file (run the earlier stages)")
    df = read_split_file(path, columns=["id", "label", "y", "values"])
    if df.empty:
        raise DataError(str(path), "not_empty", "the split has no signals")
    return df


def split_tensors(df: pd.DataFrame, length: int) -> TensorDataset:
    """(n, length) signals, or (n, channels, length) for a multichannel split, and targets."""
    channels = frame_channels(df)
    n_channels = None if channels is None else len(channels)
    x = torch.from_numpy(to_matrix(df["values"], length, n_channels=n_channels))
    y = torch.from_numpy(df["y"].to_numpy(dtype=np.float32))
    return TensorDataset(x, y)


class SignalDataModule(pl.LightningDataModule):
    """Train (the augmented file), val and optionally test splits, resampled to `length`."""

    def __init__(
        self,
        train_path: Path | str,
        val_path: Path | str,
        test_path: Path | str | None = None,
        length: int = 512,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters("length", "batch_size", "seed", "num_workers", logger=False)
        self.paths = {
            "train": Path(train_path),
            "val": Path(val_path),
            "test": Path(test_path) if test_path else None,
        }
        self.frames: dict[str, pd.DataFrame] = {}
        self.datasets: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "fit", ("train", "val", "test")
        )
        for name in wanted:
            path = self.paths[name]
            if name in self.datasets or path is None:
                continue
            self.frames[name] = read_split(path)
            self.datasets[name] = split_tensors(self.frames[name], self.hparams.length)

    def channels(self) -> tuple[str, ...] | None:
        """The channel names of the train split (None: univariate); the val (and test) split
        must have the same ones in the same order, or the model would be scored on other
        sensors than it learnt from."""
        names = split_channels(self.paths["train"])
        for split in ("val", "test"):
            path = self.paths[split]
            if path is None or not path.is_file():
                continue
            other = split_channels(path)
            if other != names:
                raise DataError(
                    str(path),
                    "channels_match",
                    f"channels {list(other) if other else 'none (univariate)'} differ from the "
                    f"train split's {list(names) if names else 'none (univariate)'} "
                    f"({self.paths['train']})",
                )
        return names

    def class_counts(self, split: str = "train") -> tuple[int, int]:
        """(healthy, fault) signals in one split; reads it if setup has not."""
        frame = self.frames.get(split)
        if frame is None:
            frame = read_split(self.paths[split])
        n_fault = int(frame["y"].sum())
        return len(frame) - n_fault, n_fault

    def positive_label(self) -> str:
        frame = self.frames.get("train")
        frame = read_split(self.paths["train"]) if frame is None else frame
        labels = sorted(set(frame.loc[frame["y"] == 1, "label"].astype(str)))
        if len(labels) != 1:
            raise DataError(
                str(self.paths["train"]),
                "one_fault_label",
                f"expected one fault label, found {labels}",
            )
        return labels[0]

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        ds = self.datasets[name]
        hp = self.hparams
        return DataLoader(
            ds,
            batch_size=hp.batch_size,
            sampler=EpochSeededSampler(len(ds), hp.seed) if shuffle else None,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            # its own generator: loaders never draw from the global RNG (dropout's), so a
            # resumed run continues the same random stream as an uninterrupted one
            generator=torch.Generator().manual_seed(hp.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.datasets:
            raise DataError("<test split>", "test_configured", "no test_path was given")
        return self._loader("test", shuffle=False)
