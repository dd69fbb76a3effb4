"""The model in the BentoML model store: import a saved model, load it back verified.

A store entry named `fault_cnn` is a folder holding the files of `faultwatch.model.io.save_model`
(`weights.safetensors`, `model.json`) plus `threshold.json` ({"threshold": float}). Loading goes
through `load_model`, so the sha256 of the weights is checked and nothing is unpickled. Either
model family is stored so: a CNN, or a classical model (faultwatch.model.classical: the same
two files, its trees as arrays), which `load_model` returns with the same interface.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultwatch import settings
from faultwatch.errors import FaultwatchError

if TYPE_CHECKING:
    import bentoml

    from faultwatch.model.io import LoadedModel

MODEL_NAME = "fault_cnn"
MODEL_FILES = ("weights.safetensors", "model.json")
THRESHOLD_FILE = "threshold.json"


class StoreError(FaultwatchError):
    """A store entry or a model folder is missing a file or holds a bad value."""


def family_of(model_json: Mapping[str, Any]) -> str:
    """The model family a model.json describes, as faultwatch.model.io.family says it (`cnn`
    unless it names one), read without importing torch (the service's import must not)."""
    return str(model_json.get("family", "cnn"))


def import_model(
    model_dir: Path | str,
    threshold: float,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    name: str = MODEL_NAME,
) -> bentoml.Tag:
    """Copy a saved model into the store as a new version of `name`; returns its tag.

    The model is loaded first (sha256 checked), so a broken folder never reaches the store.
    `metadata` should carry the provenance and `input_schema` ({"min_length", "max_length"},
    which the service's validation uses); `threshold` and the weights' sha256 are added.
    """
    import bentoml

    from faultwatch.model.io import load_model  # imports torch: the service's import must not

    src = Path(model_dir)
    missing = [f for f in MODEL_FILES if not (src / f).is_file()]
    if missing:
        raise StoreError(f"{src}: missing {', '.join(missing)} (expected save_model's output)")
    if not (
        isinstance(threshold, int | float) and math.isfinite(threshold) and 0 <= threshold <= 1
    ):
        raise StoreError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    loaded = load_model(src)
    meta = dict(metadata or {})
    meta["threshold"] = float(threshold)
    sha = loaded.meta.get("sha256") or loaded.meta.get("weights_sha256")
    if sha:
        meta.setdefault("weights_sha256", sha)
    with bentoml.models.create(
        name, labels={str(k): str(v) for k, v in (labels or {}).items()}, metadata=meta
    ) as entry:
        for f in MODEL_FILES:
            shutil.copy2(src / f, Path(entry.path) / f)
        (Path(entry.path) / THRESHOLD_FILE).write_text(json.dumps({"threshold": float(threshold)}))
    return entry.tag


def read_threshold(entry_dir: Path | str) -> float:
    path = Path(entry_dir) / THRESHOLD_FILE
    try:
        value = json.loads(path.read_text())["threshold"]
    except FileNotFoundError as e:
        raise StoreError(f"{path}: not found (the register stage writes it)") from e
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise StoreError(f'{path}: expected {{"threshold": <float>}}: {e}') from e
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 1):
        raise StoreError(f"{path}: threshold must be a probability in [0, 1], got {value!r}")
    return float(value)


def _recorded_sha256(entry: bentoml.Model) -> str:
    recorded = entry.info.metadata.get("weights_sha256")
    if not recorded:
        raise StoreError(
            f"store entry {entry.tag}: no weights_sha256 in its metadata (not registered by "
            "`faultwatch register`): refusing to load it"
        )
    return str(recorded)


def _replaced(entry: bentoml.Model, actual: str, recorded: str) -> str:
    return (
        f"store entry {entry.tag}: weights sha256 {actual[:16]}… is not the one recorded at "
        f"registration ({recorded[:16]}…); the entry's files were replaced: refusing to load it"
    )


def verify_entry_files(entry: bentoml.Model) -> None:
    """The entry's weights file against the sha256 recorded at registration, with hashlib only:
    the service runs this when it is imported, so `bentoml serve` and `bentoml build` stop at
    once, before torch is imported or a worker started. `load_entry` checks again on load."""
    recorded = _recorded_sha256(entry)
    folder = Path(entry.path)
    meta_path = folder / MODEL_FILES[1]
    try:
        weights_name = json.loads(meta_path.read_text()).get("weights_file", MODEL_FILES[0])
        digest = hashlib.sha256()
        with open(folder / weights_name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, ValueError, AttributeError) as e:
        raise StoreError(f"store entry {entry.tag}: cannot read its model files: {e}") from None
    if digest.hexdigest() != recorded:
        raise StoreError(_replaced(entry, digest.hexdigest(), recorded))


def load_entry(entry: bentoml.Model) -> LoadedModel:
    """The model of a store entry, verified twice: the weights against the `model.json` beside
    them, and against the sha256 recorded in the entry's metadata at registration (replacing
    both files of an entry would pass the first check alone)."""
    from faultwatch.model.io import WeightsTampered, load_model  # imports torch (see above)

    loaded = load_model(Path(entry.path))
    recorded = _recorded_sha256(entry)
    actual = loaded.meta["weights_sha256"]
    if actual != recorded:
        raise WeightsTampered(_replaced(entry, actual, recorded))
    return loaded


def store_location() -> str:
    """Where BentoML looks for models, as a person would set it, for error messages."""
    home = settings.get("BENTOML_HOME")
    return f"BENTOML_HOME={home}" if home else "~/bentoml (BENTOML_HOME is not set)"


def load_from_store(tag: str | bentoml.Tag) -> LoadedModel:
    """The model of store entry `tag` (e.g. "fault_cnn:latest"), verified by `load_entry`."""
    import bentoml

    return load_entry(bentoml.models.get(tag))
