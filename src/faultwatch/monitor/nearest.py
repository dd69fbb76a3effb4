"""The nearest training examples of logged predictions: what the model saw in training that
looks most like a production signal, for a person deciding its label (06_review.ipynb).

Near in the model's own view: its penultimate-layer embedding, logged with each prediction,
against the embeddings of the training split (review.reference_path) by the model of that
version (faultwatch.monitor.reference.model_for_version, as the monitor finds it). A
classical model has no embedding, nor has a row logged without one or a version whose model
is not here: those are matched on the logged monitor features instead (faultwatch.features,
per channel for a multichannel model), each standardised by its spread in the training
split, and the notes say which space was used for which version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from faultwatch.errors import FaultwatchError
from faultwatch.monitor.reference import model_embeddings, model_for_version, reference_frame
from faultwatch.paths import resolve
from faultwatch.serve import predlog
from faultwatch.serve.embedding import has_embedding
from faultwatch.splits import read_split

EMBEDDING, FEATURES = "embedding", "features"
NEIGHBOUR_COLUMNS = ["prediction_id", "rank", "row", "train_id", "train_label", "y"]
NEIGHBOUR_COLUMNS += ["distance", "space"]


@dataclass
class Neighbours:
    """`frame`: one row per (prediction, rank): the training row (`row`: its position in
    `train`), its id, label and y, the distance and the space it was measured in; `train`:
    the training split; `notes`: per version, which space and why."""

    train: pd.DataFrame
    frame: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=NEIGHBOUR_COLUMNS))
    notes: list[str] = field(default_factory=list)

    def of(self, prediction_id: str) -> pd.DataFrame:
        return self.frame[self.frame["prediction_id"] == prediction_id]

    def summary(self, prediction_id: str) -> str:
        """`fault 0.12, healthy 0.3`: the nearest examples' labels and distances."""
        rows = self.of(prediction_id)
        return ", ".join(f"{r.train_label} {r.distance:.3g}" for r in rows.itertuples())


def read_training(reference_path: str, root: Path | None = None) -> pd.DataFrame:
    """The training split the reference path names; FileNotFoundError naming the key."""
    path = resolve(reference_path, root)
    if not path.is_file():
        raise FileNotFoundError(f"review.reference_path: {path}: not found (run `dvc repro`)")
    return read_split(path)


def _nearest(queries: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) of the k nearest reference rows of each query row, Euclidean over
    the dimensions both have (NaN: left out), nearest first."""
    diff = queries[:, None, :] - reference[None, :, :]
    dist = np.sqrt(np.nansum(diff * diff, axis=-1))
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


def _standardised(queue: pd.DataFrame, train: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """The logged features of `queue` and the same features of the training split, each
    column scaled by the training split's mean and std; None when they share no column."""
    logged = predlog.features_frame(queue)
    ref = reference_frame(train)
    shared = [c for c in logged.columns if c in ref.columns]
    if not shared:
        return None
    r = ref[shared].to_numpy(dtype="float64")
    mean, std = np.nanmean(r, axis=0), np.nanstd(r, axis=0)
    std = np.where(std > 0, std, 1.0)
    return (logged[shared].to_numpy(dtype="float64") - mean) / std, (r - mean) / std


Found = tuple[pd.Index, np.ndarray, np.ndarray, str]  # queue rows, indices, distances, space


def _by_embedding(
    version: str, rows: pd.DataFrame, target: str, train: pd.DataFrame, k: int, paths: tuple
) -> tuple[Found | None, str]:
    """The rows of `version` matched in its model's embedding space (None: none could be),
    and the note saying so."""
    model, source = model_for_version(version, *paths)
    # (the store's own message names the store's folder: long, and said in the monitor)
    why = f"no model of version {version} here (model_dir, or the store)" if model is None else ""
    if model is not None and not has_embedding(model):
        why = f"a {getattr(model, 'family', 'classical')} model has no embedding"
    if not why:
        try:
            reference = model_embeddings(model, train["values"])
            logged = predlog.read_embeddings(target, rows["prediction_id"].tolist())
        except (FaultwatchError, ValueError) as e:
            why = f"no embedding to compare ({e})"
    if why:
        return (
            None,
            f"{version}: {why}: nearest by the logged features, each standardised on the training split",
        )
    has = np.isfinite(logged).all(axis=1) if logged.size else np.zeros(len(rows), bool)
    if not has.any():
        return None, f"{version}: logged without embeddings: nearest by the features"
    idx, dist = _nearest(logged[has].astype("float64"), reference.astype("float64"), k)
    without = "" if has.all() else f"; {int((~has).sum())} rows logged without one: by features"
    return (rows.index[has], idx, dist, EMBEDDING), (
        f"{version}: nearest by the model's embedding ({source}){without}"
    )


def _frame(found: list[Found], queue: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """NEIGHBOUR_COLUMNS, in the queue's order, nearest first."""
    ids = train["id"] if "id" in train.columns else pd.Series(train.index.astype(str))
    labels = train["label"] if "label" in train.columns else train["y"]
    records = [
        (queue.at[at, "prediction_id"], rank, int(row), str(ids.iloc[row]), str(labels.iloc[row]))
        + (int(train["y"].iloc[row]), float(d), kind)
        for index, idx, dist, kind in found
        for at, neighbours, distances in zip(index, idx, dist, strict=True)
        for rank, (row, d) in enumerate(zip(neighbours, distances, strict=True), start=1)
    ]
    frame = pd.DataFrame.from_records(records, columns=NEIGHBOUR_COLUMNS)
    order = {pid: i for i, pid in enumerate(queue["prediction_id"])}
    frame["_at"] = frame["prediction_id"].map(order)
    return frame.sort_values(["_at", "rank"]).drop(columns="_at").reset_index(drop=True)


def nearest_examples(
    queue: pd.DataFrame,
    target: str,
    reference_path: str,
    model_dir: str,
    register_file: str,
    k: int = 3,
    root: Path | None = None,
) -> Neighbours:
    """The `k` nearest training examples of each row of `queue` (review.review_queue), by the
    embedding its version's model logged, else by the logged features (see the module)."""
    train = read_training(reference_path, root)
    out = Neighbours(train)
    if queue.empty:
        return out
    k = min(k, len(train))
    paths = (resolve(model_dir, root), resolve(register_file, root))
    found: list[Found] = []
    for version, rows in queue.groupby("model_version", sort=True):
        got, note = _by_embedding(str(version), rows, target, train, k, paths)
        out.notes.append(note)
        if got is not None:
            found.append(got)
    done = {i for f in found for i in f[0]}
    rest = queue.index[[i not in done for i in queue.index]]
    if len(rest):
        scaled = _standardised(queue.loc[rest], train)
        if scaled is None:
            out.notes.append("no logged feature matches the training split's: no neighbours")
        else:
            idx, dist = _nearest(scaled[0], scaled[1], k)
            found.append((rest, idx, dist, FEATURES))
    if found:
        out.frame = _frame(found, queue, train)
    return out
