"""The network: a small 1-D CNN with global average pooling, one logit out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class FaultCNN(nn.Module):
    """Conv blocks (conv, batch norm, ReLU, max-pool by 2), global average pooling, a linear head.

    Input (batch, length) or (batch, in_channels, length) of normalised signals; output (batch,)
    logits of the fault class. Global pooling makes the weights independent of the input length.
    `in_channels` is the signal's channels (three accelerometer axes: 3); the first convolution
    sees them all at once, so a fault on one axis or in the relation of two is learnt.
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: int = 7,
        dropout: float = 0.1,
        in_channels: int = 1,
    ):
        super().__init__()
        self.config: dict[str, Any] = {
            "channels": [int(c) for c in channels],
            "kernel_size": int(kernel_size),
            "dropout": float(dropout),
        }
        if int(in_channels) != 1:  # a univariate model's description stays as it was
            self.config["in_channels"] = int(in_channels)
        self.in_channels = int(in_channels)
        blocks: list[nn.Module] = []
        c_in = self.in_channels
        for c_out in self.config["channels"]:
            blocks += [
                nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2, ceil_mode=True),
            ]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        z = self.features(x).mean(dim=-1)
        return self.head(self.dropout(z)).squeeze(-1)


# Architecture name (as written in model.json) -> class; loading builds the network from here.
ARCHITECTURES: dict[str, type[nn.Module]] = {"FaultCNN": FaultCNN}


def build_network(name: str, args: dict[str, Any]) -> nn.Module:
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name](**args)
