"""Tiny synthetic signal splits for tests: noisy sines (healthy) and sines with a burst (fault).

Variable lengths like the real data; a few dozen signals, so a training run takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FAULT_LABEL = "F"


def make_split(n: int, n_fault: int, seed: int, prefix: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        length = int(rng.integers(60, 120))
        t = np.arange(length)
        fault = i % max(n // n_fault, 1) == 0 and sum(r["y"] for r in rows) < n_fault
        values = np.sin(2 * np.pi * t / rng.uniform(8, 14)) + rng.normal(0, 0.1, length)
        if fault:
            start = int(rng.integers(10, length - 20))
            values[start : start + 8] += 4.0
        rows.append(
            {
                "id": f"{prefix}:{i}",
                "label": FAULT_LABEL if fault else str(int(rng.integers(0, 3))),
                "y": int(fault),
                "length": length,
                "source_row": i,
                "values": values,
            }
        )
    return pd.DataFrame(rows)


def write_splits(root: Path, sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, Path]:
    """data/prepared/{train,val,test}.parquet under `root`, in the prepare stage's schema."""
    from faultwatch.augment import to_arrow
    from faultwatch.data.prepare import write_parquet_atomic

    sizes = sizes or {"train": (40, 6), "val": (20, 4), "test": (20, 4)}
    tables = {
        name: to_arrow(make_split(n, k, seed=i, prefix=name))
        for i, (name, (n, k)) in enumerate(sizes.items())
    }
    return write_parquet_atomic(tables, root / "data" / "prepared")
