"""The drift reference (`Reference`, what faultwatch.monitor.report compares a window with): the
training signals seen the way the service logs production ones.

The same functions as the service (faultwatch.features.monitor_features and the log's
InputSummary for mean and std), so a difference between reference and window is a difference in
the data, never in the code; and the model's penultimate-layer embedding of the same signals,
per model version (each version has its own embedding space).

A multichannel split (faultwatch.splits.read_split: (channels, samples) values, the names in
`attrs["channels"]`) gives the features per channel, `rms[x]` ... `band_3[z]`, as the service
logs them (`channel_features`): those are its drift columns. The log's mean and std span all
channels of a signal, so a drift there could name no channel: they are not tested then.

A classical model (faultwatch.model.classical) has no embedding: `model_embeddings` raises
EmbeddingNotApplicable for it, and the report says embedding drift is not applicable to that
version, whose drift is judged on its input features, its output and its performance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from faultwatch.errors import FaultwatchError
from faultwatch.features import FEATURES, channel_feature_names, monitor_features
from faultwatch.serve.embedding import check_embeddable, has_embedding, proba_and_embedding
from faultwatch.serve.predlog import InputSummary
from faultwatch.serve.store import MODEL_NAME, load_from_store
from faultwatch.splits import frame_channels

if TYPE_CHECKING:
    from faultwatch.model.io import LoadedModel

SUMMARY = ("mean", "std")  # from the log's input summary
DRIFT_COLUMNS: tuple[str, ...] = (*SUMMARY, *FEATURES)  # the columns tested for input drift


def drift_columns(channels: tuple[str, ...] | None) -> tuple[str, ...]:
    """The columns tested for input drift: DRIFT_COLUMNS for a univariate model, the FEATURES
    of every channel (`rms[x]`, channel-major) for a multichannel one."""
    if channels is None:
        return DRIFT_COLUMNS
    return tuple(channel_feature_names(FEATURES, channels))


def reference_frame(train: pd.DataFrame) -> pd.DataFrame:
    """One row per training signal: `y` (1 = fault), `n`, `mean`, `std` (as the log's
    InputSummary computes them) and the FEATURES columns, per channel for a multichannel split
    (whose channel names the result's `attrs["channels"]` keeps)."""
    missing = [c for c in ("y", "values") if c not in train.columns]
    if missing:
        raise ValueError(f"the reference needs columns {missing} (prepare's split schema)")
    channels = frame_channels(train)
    values = [np.asarray(v, dtype="float64") for v in train["values"]]
    summaries = [InputSummary.of(v) for v in values]
    names = channel_feature_names(FEATURES, channels)
    out = pd.DataFrame(monitor_features(values).reshape(len(values), len(names)), columns=names)
    out.insert(0, "std", [s.std for s in summaries])
    out.insert(0, "mean", [s.mean for s in summaries])
    out.insert(0, "n", [s.n for s in summaries])
    out.insert(0, "y", train["y"].astype(int).to_numpy())
    if channels is not None:
        out.attrs["channels"] = channels
    return out


class EmbeddingNotApplicable(FaultwatchError):
    """The model of a version has no embedding (a classical model): embedding drift does not
    apply to it, which the report says (it is neither untested nor a failure)."""

    def __init__(self, family: str):
        super().__init__(
            f"embedding drift: not applicable, {family} model: drift judged on its input features"
        )
        self.family = family


def model_embeddings(model: LoadedModel, signals: Iterable[np.ndarray]) -> np.ndarray:
    """(n, channels[-1]) float32: the embedding the service logs (the globally pooled conv
    features that feed the head), by the service's own function, so both sides compare.
    EmbeddingNotApplicable for a model without one (classical)."""
    if not has_embedding(model):
        raise EmbeddingNotApplicable(str(getattr(model, "family", "classical")))
    check_embeddable(model)
    emb = proba_and_embedding(model, list(signals))[1]
    assert emb is not None  # has_embedding
    return emb


def model_for_version(
    version: str, model_dir: Path, register_file: Path
) -> tuple[LoadedModel | None, str]:
    """The model that logged `version`, to embed the reference with, and where it came from.

    The local model directory when `register_file` (reports/register.json) names this version
    and its weights are the ones registered; else the BentoML store's entry of that version.
    (None, why) when neither has it: embedding drift is then skipped for the version, since
    another version's embedding space would not compare.
    """
    from faultwatch.model.io import load_model, read_meta  # imports torch: only when embedding

    try:
        record = json.loads(register_file.read_text())
        tag = str(record.get("model_tag", ""))
        if tag.split(":", 1)[-1] == version:
            if read_meta(model_dir)["weights_sha256"] == record.get("weights_sha256"):
                return load_model(model_dir), str(model_dir)
    except (OSError, ValueError, FaultwatchError):
        pass  # no local record of this version: try the store
    try:
        return load_from_store(f"{MODEL_NAME}:{version}"), f"store {MODEL_NAME}:{version}"
    except Exception as e:  # bentoml.exceptions.NotFound, a tampered entry, no store at all
        return None, f"no model for version {version} ({type(e).__name__}: {e})"


# version -> (reference embeddings aligned with the reference frame's rows, or None; source);
# raises EmbeddingNotApplicable for a version whose model has no embedding (classical)
ReferenceEmbeddings = Callable[[str], tuple[np.ndarray | None, str]]


@dataclass
class Reference:
    """What a window is compared with: the training rows (reference.reference_frame), the
    test split's fault ratio, and per-version embeddings of the training signals. `channels`:
    a multichannel model's, in order (by default those the frame's attrs name), else None."""

    frame: pd.DataFrame
    test_fault_rate: float | None = None
    embeddings: ReferenceEmbeddings | None = None
    channels: tuple[str, ...] | None = None
    _cache: dict[str, tuple[np.ndarray | None, str] | EmbeddingNotApplicable] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        if self.channels is None and self.frame.attrs.get("channels") is not None:
            self.channels = tuple(self.frame.attrs["channels"])

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns tested for input drift (per channel for a multichannel model)."""
        return drift_columns(self.channels)

    @property
    def fault_rate(self) -> float:
        """The share of faults in the training split: what the window's fault rate is
        compared with."""
        return float(self.frame["y"].mean())

    def embeddings_for(self, version: str) -> tuple[np.ndarray | None, str]:
        """The training signals' embeddings in `version`'s space (computed once per version),
        and where the model came from; None and why when no model of that version is found.
        EmbeddingNotApplicable when that model has none (classical)."""
        if self.embeddings is None:
            return None, "no reference embeddings given"
        if version not in self._cache:
            try:
                self._cache[version] = self.embeddings(version)
            except EmbeddingNotApplicable as e:
                self._cache[version] = e
        got = self._cache[version]
        if isinstance(got, EmbeddingNotApplicable):
            raise got
        return got
