"""What a service process serves, resolved and checked once, when faultwatch.serve.service is
imported (which `bentoml serve` and `bentoml build` do before any worker starts).

`served_model(settings)` picks the store entry (FAULTWATCH_MODEL_TAG, else the bento's
`model_tag` build argument, else fault_cnn:latest), checks that BENTOML_HOME resolves, that the
entry is in the store and that its weights are the ones recorded at registration, and reads
what follows from the entry: the input limits, the signal-quality thresholds, the class names
and, for a multichannel model, its channels.
A failure stops the command with a message naming the entry, instead of workers that fail and
restart in a loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import bentoml

from faultwatch import settings
from faultwatch.serve.predlog import default_target
from faultwatch.serve.schema import ServingLimits
from faultwatch.serve.settings import ServeSettings
from faultwatch.serve.store import (
    MODEL_NAME,
    StoreError,
    family_of,
    read_threshold,
    store_location,
    verify_entry_files,
)
from faultwatch.signal_quality import QualityThresholds


@dataclass(frozen=True)
class ServedModel:
    """The store entry a service process serves, and what the service reads from it."""

    tag: str  # as asked for (see `model_tag`)
    ref: bentoml.models.BentoModel  # the service class's `model_ref`
    entry: bentoml.Model  # the store entry, checked
    limits: ServingLimits  # defaults, then the entry's input_schema, then the environment
    quality: QualityThresholds  # the sensor checks the model was registered with
    class_names: list[str]  # [healthy, fault]: the realised F1 is the fault class's
    log_target: Path | str  # the prediction log: a SQLite file or a postgresql:// URL
    # a multichannel model's channel names, in the network's order (model.json); None: univariate
    channels: tuple[str, ...] | None = None
    family: str = "cnn"  # model.json's: cnn or classical (faultwatch.serve.store.family_of)


def model_tag(serve_settings: ServeSettings) -> str:
    """FAULTWATCH_MODEL_TAG, else the bento's build argument `model_tag` (`bentoml build --arg
    model_tag=...` pins the packaged version), else the newest `fault_cnn` in the store."""
    arg = getattr(bentoml.use_arguments(), "model_tag", None)
    return serve_settings.model_tag or arg or f"{MODEL_NAME}:latest"


def checked_entry(ref: bentoml.models.BentoModel, tag: str) -> bentoml.Model:
    """The store entry `ref` names, checked before any worker starts (see the docstring)."""
    home = settings.get("BENTOML_HOME")
    if home and not Path(home).is_dir():
        raise StoreError(
            f"BENTOML_HOME={home}: no such folder (seen from {Path.cwd()}). `bentoml serve` "
            "runs the service in the bento's folder, where a relative path does not resolve: "
            "give an absolute path, or run `faultwatch serve`"
        )
    stored = ref.stored
    if stored is None:
        raise StoreError(
            f"model {tag} is not in the BentoML store ({store_location()}): register it "
            "(`dvc repro`), or set FAULTWATCH_MODEL_TAG to an entry of `bentoml models list`"
        )
    verify_entry_files(stored)  # swapped files stop the start here, naming the entry
    read_threshold(stored.path)
    return stored


def served_model(serve_settings: ServeSettings) -> ServedModel:
    """The entry to serve, checked, and what follows from it; StoreError naming what is wrong."""
    tag = model_tag(serve_settings)
    ref = bentoml.models.BentoModel(tag)
    entry = checked_entry(ref, tag)
    meta = json.loads((Path(entry.path) / "model.json").read_text())
    channels = None if meta.get("channels") is None else tuple(map(str, meta["channels"]))
    limits = ServingLimits.resolve(dict(entry.info.metadata), channels)
    quality = QualityThresholds.from_metadata(entry.info.metadata)
    log_target = serve_settings.prediction_log or default_target()
    class_names = [str(c) for c in meta["class_names"]]
    return ServedModel(
        tag, ref, entry, limits, quality, class_names, log_target, channels, family_of(meta)
    )
