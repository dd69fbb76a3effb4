"""Stratified train / val / test split with a seed."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split


def split_stratified(
    df: pd.DataFrame, y: pd.Series, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Split on the label `y` so each part keeps the class ratio; same seed, same split."""
    rest, test = train_test_split(df, test_size=test_fraction, stratify=y, random_state=seed)
    val_of_rest = val_fraction / (1 - test_fraction)
    train, val = train_test_split(
        rest, test_size=val_of_rest, stratify=y.loc[rest.index], random_state=seed
    )
    return {"train": train.sort_index(), "val": val.sort_index(), "test": test.sort_index()}
