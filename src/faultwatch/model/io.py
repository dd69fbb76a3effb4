"""The saved model: `weights.safetensors` beside `model.json` (what serving needs).

Weights load with safetensors (no pickle, no code), after their sha256 is checked against
model.json. Loading needs torch, not Lightning.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faultwatch.errors import FaultwatchError
from faultwatch.model.network import ARCHITECTURES, build_network
from faultwatch.preprocess import to_matrix

WEIGHTS = "weights.safetensors"
META = "model.json"
FORMAT = "faultwatch-model/1"
PREPROCESSING = {"resample": "linear", "normalise": "zscore_per_signal"}
# a multichannel model: every channel resampled and z-scored on its own
PREPROCESSING_CHANNELS = {"resample": "linear", "normalise": "zscore_per_channel"}


def preprocessing_for(channels: list[str] | None) -> dict[str, str]:
    """The transform model.json records: per signal (univariate) or per channel."""
    return dict(PREPROCESSING if channels is None else PREPROCESSING_CHANNELS)


class ModelError(FaultwatchError):
    """A saved model is missing, malformed or does not match its description."""


class WeightsTampered(ModelError):
    """The weights file's sha256 is not the one model.json records."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def save_model(model_dir: Path | str, network: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the weights and model.json; returns the description written.

    `meta` must hold `input_length` and `positive_label`; `threshold` (default 0.5, a
    placeholder until evaluation picks one on validation), `class_names`, `channels` (the
    channel names in the order the network reads them; absent for a univariate model)
    and anything else given are recorded as they are.
    """
    from safetensors.torch import save

    name = type(network).__name__
    if name not in ARCHITECTURES:
        raise ModelError(f"{name}: not a known architecture ({', '.join(ARCHITECTURES)})")
    for key in ("input_length", "positive_label"):
        if key not in meta:
            raise ModelError(f"save_model: meta needs {key!r}")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    weights = save(state)
    description = {
        "format": FORMAT,
        "architecture": name,
        "architecture_args": network.config,
        "input_length": int(meta["input_length"]),
        "preprocessing": preprocessing_for(meta.get("channels")),
        "threshold": 0.5,
        "class_names": ["healthy", str(meta["positive_label"])],
        **meta,
        "weights_file": WEIGHTS,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    description["positive_label"] = str(description["positive_label"])
    # weights first: a model.json on disk always describes the weights beside it
    _write_bytes_atomic(model_dir / WEIGHTS, weights)
    text = json.dumps(description, indent=2, sort_keys=True) + "\n"
    _write_bytes_atomic(model_dir / META, text.encode())
    return description


def read_meta(model_dir: Path | str) -> dict[str, Any]:
    path = Path(model_dir) / META
    if not path.is_file():
        raise ModelError(f"{path}: no model description (is {model_dir} a saved model?)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: not valid JSON: {e}") from None
    if family(meta) == "classical":
        from faultwatch.model.classical import ClassicalModelError, check_meta

        try:
            check_meta(path, meta)
        except ClassicalModelError as e:
            raise ModelError(str(e)) from None
        return meta
    required = (
        "architecture",
        "architecture_args",
        "input_length",
        "weights_sha256",
        "preprocessing",
    )
    missing = [k for k in required if k not in meta]
    if missing:
        raise ModelError(f"{path}: missing keys {missing}")
    check_channels(path, meta)
    expected = preprocessing_for(meta.get("channels"))
    if meta["preprocessing"] != expected:
        raise ModelError(
            f"{path}: preprocessing {meta['preprocessing']} is not the one this code applies ({expected})"
        )
    return meta


def family(meta: dict[str, Any]) -> str:
    """The model family a model.json describes: `cnn` (the default: a CNN's model.json does
    not say) or `classical` (faultwatch.model.classical)."""
    return str(meta.get("family", "cnn"))


def check_channels(path: Path, meta: dict[str, Any]) -> None:
    """`channels`, where recorded: distinct names, as many as the network's input channels."""
    channels = meta.get("channels")
    args = meta["architecture_args"] if isinstance(meta["architecture_args"], dict) else {}
    n_in = args.get("in_channels", 1)
    if channels is None:
        if n_in != 1:
            raise ModelError(f"{path}: the network reads {n_in} channels but none are named")
        return
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) and c for c in channels)
        or len(set(channels)) != len(channels)
    ):
        raise ModelError(f"{path}: 'channels' must be a list of distinct names, got {channels!r}")
    if len(channels) != n_in:
        raise ModelError(
            f"{path}: {len(channels)} channels named {channels} but the network reads {n_in}"
        )


@dataclass
class LoadedModel:
    """A saved model ready to score signals."""

    network: nn.Module
    meta: dict[str, Any]
    batch_size: int = 256
    _device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def input_length(self) -> int:
        return int(self.meta["input_length"])

    @property
    def channels(self) -> tuple[str, ...] | None:
        """The channel names in the network's order; None for a univariate model."""
        names = self.meta.get("channels")
        return None if names is None else tuple(names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One preprocessed signal's shape: (input_length,) or (channels, input_length)."""
        if self.channels is None:
            return (self.input_length,)
        return (len(self.channels), self.input_length)

    def preprocess(self, signals: Iterable[np.ndarray]) -> np.ndarray:
        """Raw signals (any lengths) -> float32 (n, input_length), the training transform; for
        a multichannel model each signal is (channels, samples), in the model's channel order,
        and the result (n, channels, input_length)."""
        rows = [np.asarray(s, dtype="float64") for s in signals]
        channels = self.channels
        if channels is not None:
            for i, row in enumerate(rows):
                if row.ndim != 2 or row.shape[0] != len(channels):
                    raise ValueError(
                        f"signal {i}: expected shape ({len(channels)}, samples) for channels "
                        f"{list(channels)}, got {row.shape}"
                    )
        n_channels = None if channels is None else len(channels)
        return to_matrix(rows, self.input_length, n_channels=n_channels)

    def predict_proba(
        self, signals: Iterable[np.ndarray] | np.ndarray, preprocessed: bool | None = None
    ) -> np.ndarray:
        """Fault probability per signal.

        `signals`: raw signals of any lengths (a list, or a 2-D array of equal-length rows;
        multichannel: (channels, samples) each), or an array already through `preprocess`. With
        `preprocessed=None`, a float32 array of shape (n, *input_shape) is taken as preprocessed
        and anything else as raw.
        """
        shape = self.input_shape
        if preprocessed is None:
            preprocessed = (
                isinstance(signals, np.ndarray)
                and signals.dtype == np.float32
                and signals.shape[1:] == shape
            )
        x = np.asarray(signals, dtype=np.float32) if preprocessed else self.preprocess(signals)
        if x.shape[1:] != shape:
            want = ", ".join(map(str, shape))
            raise ValueError(f"expected preprocessed input of shape (n, {want}), got {x.shape}")
        out = np.empty(len(x), dtype=np.float64)
        with torch.inference_mode():
            for i in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i : i + self.batch_size])).to(
                    self._device
                )
                out[i : i + len(xb)] = torch.sigmoid(self.network(xb)).cpu().numpy()
        return out


def load_model(model_dir: Path | str, verify: bool = True) -> LoadedModel:
    """Load a saved model, of either family (a classical one is a faultwatch.model.classical.
    LoadedClassical, with the same interface and no network); raises WeightsTampered if the
    weights are not the ones recorded."""
    from safetensors.torch import load

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if family(meta) == "classical":
        from faultwatch.model import classical

        try:
            return classical.load_classical(model_dir, meta, verify)  # type: ignore[return-value]
        except classical.ClassicalTampered as e:
            raise WeightsTampered(str(e)) from None
        except classical.ClassicalModelError as e:
            raise ModelError(str(e)) from None
    path = model_dir / meta.get("weights_file", WEIGHTS)
    if not path.is_file():
        raise ModelError(f"{path}: weights file missing")
    data = path.read_bytes()
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["weights_sha256"]:
            raise WeightsTampered(
                f"{path}: sha256 {digest[:16]}… does not match {META} ({meta['weights_sha256'][:16]}…); "
                "the weights were changed after saving: refusing to load them"
            )
    try:
        network = build_network(meta["architecture"], meta["architecture_args"])
    except (KeyError, TypeError) as e:
        raise ModelError(f"{model_dir / META}: cannot build the network: {e}") from None
    try:
        state = load(data)
        network.load_state_dict(state, strict=True)
    except Exception as e:  # safetensors and torch raise several types for a bad file
        raise ModelError(f"{path}: weights do not fit {meta['architecture']}: {e}") from None
    network.eval()
    return LoadedModel(network, meta)
