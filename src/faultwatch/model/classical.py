"""The classical model family: the evaluate stage's baseline pipeline (faultwatch.features.
signal_features of every channel, then a random forest), trained as a candidate of its own and
saved in the model folder's one format.

Saved without pickle. A pickled scikit-learn estimator runs whatever code its file names when
it is loaded; skops restricts that to an audited list of types but adds a dependency whose
list must follow scikit-learn's internals; ONNX needs skl2onnx and onnxruntime (about 60 MB)
and cannot express `signal_features`. A random forest is nothing but arrays, so the folder
holds exactly those, in `weights.safetensors` beside `model.json`, as the CNN's does:

- `left`, `right` (int32): each node's children, as indices into the concatenated nodes of
  every tree; a leaf points at itself, so a walk of `max_depth` steps ends on every leaf;
- `feature` (int32), `threshold` (float64): a node sends a signal left when its feature,
  as float32 (scikit-learn's trees compare float32 features), is <= the threshold;
- `fault_proba` (float64): a leaf's fault probability, its class weights normalised as
  scikit-learn's `DecisionTreeClassifier.predict_proba` does;
- `roots` (int32): each tree's first node.

model.json records `family: classical`, the features' parameters (`feature_length`,
`fft_bands`, the feature names per channel), the forest's hyper-parameters and the file's
sha256, checked before anything is read, as for the CNN. Loading needs neither scikit-learn
nor torch; the probabilities equal scikit-learn's `predict_proba` of the fitted forest bit for
bit (the same float32 comparisons, the trees summed in their order; a test checks it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faultwatch.errors import FaultwatchError
from faultwatch.features import feature_names, signal_features

FAMILY = "classical"
ARCHITECTURE = "RandomForest"
WEIGHTS = "weights.safetensors"
META = "model.json"
FORMAT = "faultwatch-model/1"
ARRAYS = ("left", "right", "feature", "threshold", "fault_proba", "roots")


class ClassicalModelError(FaultwatchError):
    """A classical model folder is missing or malformed (faultwatch.model.io.load_model raises
    it as ModelError)."""


class ClassicalTampered(ClassicalModelError):
    """The weights file's sha256 is not the one model.json records (load_model: WeightsTampered)."""


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    """A temporary file beside `path`, renamed over it (model.io's own; io imports this module)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@dataclass
class FittedClassical:
    """A fitted forest and the features it reads (what `save_classical` writes)."""

    forest: Any  # sklearn.ensemble.RandomForestClassifier
    feature_length: int
    fft_bands: int


def fit_classical(
    signals: Sequence[np.ndarray],
    y: np.ndarray,
    n_estimators: int = 300,
    feature_length: int = 256,
    fft_bands: int = 8,
    seed: int = 42,
) -> FittedClassical:
    """The evaluate stage's random-forest baseline (faultwatch.evaluate.baselines.
    classical_baseline("random_forest", ...)), fitted: the same features, the same class
    weights, one job (the same trees on any machine). The two layers cannot import each other;
    a test keeps their probabilities equal."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        n_estimators=n_estimators,
        class_weight="balanced_subsample",
        min_samples_leaf=1,
        random_state=seed,
        n_jobs=1,
    )
    forest.fit(signal_features(list(signals), feature_length, fft_bands), np.asarray(y))
    return FittedClassical(forest, feature_length, fft_bands)


def forest_arrays(forest: Any) -> dict[str, np.ndarray]:
    """A fitted RandomForestClassifier (classes 0 and 1) as the arrays this format saves."""
    classes = list(forest.classes_)
    if classes != [0, 1]:
        raise ClassicalModelError(f"the forest's classes are {classes}: expected [0, 1]")
    fault = classes.index(1)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ARRAYS}
    offset = 0
    for estimator in forest.estimators_:
        t = estimator.tree_
        n = t.node_count
        ids = np.arange(n, dtype=np.int64)
        leaf = t.children_left == -1
        value = t.value[:, 0, :].astype("float64")
        normaliser = value.sum(axis=1)
        normaliser[normaliser == 0.0] = 1.0
        parts["left"].append(np.where(leaf, ids, t.children_left) + offset)
        parts["right"].append(np.where(leaf, ids, t.children_right) + offset)
        parts["feature"].append(np.where(leaf, 0, t.feature))
        parts["threshold"].append(np.where(leaf, 0.0, t.threshold))
        parts["fault_proba"].append(value[:, fault] / normaliser)
        parts["roots"].append(np.array([offset]))
        offset += n
    dtypes = {"left": "int32", "right": "int32", "feature": "int32", "roots": "int32",
              "threshold": "float64", "fault_proba": "float64"}  # fmt: skip
    return {k: np.ascontiguousarray(np.concatenate(v).astype(dtypes[k])) for k, v in parts.items()}


def save_classical(
    model_dir: Path | str, fitted: FittedClassical, meta: dict[str, Any]
) -> dict[str, Any]:
    """Write a `fit_classical` model as weights.safetensors and model.json; returns the
    description. `meta` must hold `positive_label`; `channels` (a multichannel model's
    names, in the order its features are computed), `threshold` and anything else given are
    recorded as they are."""
    from safetensors.numpy import save

    forest = fitted.forest
    kw = {"feature_length": fitted.feature_length, "fft_bands": fitted.fft_bands}
    if "positive_label" not in meta:
        raise ClassicalModelError("save_classical: meta needs 'positive_label'")
    arrays = forest_arrays(forest)
    weights = save(arrays)
    channels = meta.get("channels")
    names = feature_names(int(kw["fft_bands"]), channels)
    if len(names) != forest.n_features_in_:
        raise ClassicalModelError(
            f"the forest reads {forest.n_features_in_} features but {len(names)} are named"
        )
    depth = max(e.tree_.max_depth for e in forest.estimators_)
    description = {
        "format": FORMAT,
        "family": FAMILY,
        "architecture": ARCHITECTURE,
        "architecture_args": {
            "n_estimators": len(forest.estimators_),
            "max_depth": int(depth),
            "n_nodes": int(len(arrays["left"])),
            "class_weight": forest.class_weight,
            "random_state": forest.random_state,
        },
        "input_length": int(kw["feature_length"]),
        "preprocessing": {
            "features": "signal_features",
            "feature_length": int(kw["feature_length"]),
            "fft_bands": int(kw["fft_bands"]),
        },
        "feature_names": names,
        "threshold": 0.5,
        "class_names": ["healthy", str(meta["positive_label"])],
        **meta,
        "weights_file": WEIGHTS,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    description["positive_label"] = str(description["positive_label"])
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    _write_bytes_atomic(model_dir / WEIGHTS, weights)  # weights first, as save_model
    text = json.dumps(description, indent=2, sort_keys=True) + "\n"
    _write_bytes_atomic(model_dir / META, text.encode())
    return description


@dataclass
class Forest:
    """The saved arrays, walked for a batch of feature rows at once: every tree advances one
    level per step (leaves point at themselves), `max_depth` steps."""

    arrays: dict[str, np.ndarray]
    max_depth: int

    def fault_proba(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays
        x32 = np.asarray(x, dtype=np.float32).astype(np.float64)  # as sklearn's trees compare
        rows = np.arange(len(x32))[:, None]
        node = np.broadcast_to(a["roots"], (len(x32), len(a["roots"]))).astype(np.int64)
        for _ in range(self.max_depth):
            go_left = x32[rows, a["feature"][node]] <= a["threshold"][node]
            node = np.where(go_left, a["left"][node], a["right"][node])
        leaves = a["fault_proba"][node]  # (n, trees)
        total = np.zeros(len(x32), dtype=np.float64)
        for t in range(leaves.shape[1]):  # summed tree by tree, in order, as sklearn does
            total += leaves[:, t]
        return total / leaves.shape[1]


@dataclass
class LoadedClassical:
    """A saved classical model ready to score raw signals; the interface of
    faultwatch.model.io.LoadedModel that serving, evaluation and the gate use."""

    forest: Forest
    meta: dict[str, Any]
    network: None = None  # no network, hence no embedding (the monitor uses the features)
    batch_size: int = 4096

    family = FAMILY

    @property
    def input_length(self) -> int:
        return int(self.meta["input_length"])

    @property
    def channels(self) -> tuple[str, ...] | None:
        names = self.meta.get("channels")
        return None if names is None else tuple(names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One preprocessed signal's shape: its feature vector."""
        return (len(self.meta["feature_names"]),)

    def preprocess(self, signals: Iterable[np.ndarray]) -> np.ndarray:
        """Raw signals (any lengths; (channels, samples) each for a multichannel model, in
        its channel order) -> their features (n, features), float64."""
        rows = [np.asarray(s, dtype="float64") for s in signals]
        channels = self.channels
        for i, row in enumerate(rows):
            if channels is not None and (row.ndim != 2 or row.shape[0] != len(channels)):
                raise ValueError(
                    f"signal {i}: expected shape ({len(channels)}, samples) for channels "
                    f"{list(channels)}, got {row.shape}"
                )
        p = self.meta["preprocessing"]
        if not rows:
            return np.zeros((0, self.input_shape[0]))
        return signal_features(rows, p["feature_length"], p["fft_bands"])

    def predict_proba(
        self, signals: Iterable[np.ndarray] | np.ndarray, preprocessed: bool | None = None
    ) -> np.ndarray:
        """Fault probability per signal (raw signals, or features with `preprocessed`)."""
        x = np.asarray(signals, dtype="float64") if preprocessed else self.preprocess(signals)
        if x.ndim != 2 or x.shape[1:] != self.input_shape:
            raise ValueError(
                f"expected features of shape (n, {self.input_shape[0]}), got {x.shape}"
            )
        out = np.empty(len(x), dtype=np.float64)
        for i in range(0, len(x), self.batch_size):
            out[i : i + self.batch_size] = self.forest.fault_proba(x[i : i + self.batch_size])
        return out


def check_meta(path: Path, meta: dict[str, Any]) -> None:
    """model.json of a classical model: the keys loading needs, the preprocessing this code
    computes, the feature names of its channels."""
    required = ("architecture_args", "preprocessing", "feature_names", "weights_sha256")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ClassicalModelError(f"{path}: missing keys {missing}")
    if meta.get("architecture") != ARCHITECTURE:
        raise ClassicalModelError(
            f"{path}: architecture {meta.get('architecture')!r}: the classical family is "
            f"{ARCHITECTURE}"
        )
    p = meta["preprocessing"]
    if not isinstance(p, dict) or p.get("features") != "signal_features":
        raise ClassicalModelError(f"{path}: preprocessing {p!r} is not signal_features")
    expected = feature_names(int(p["fft_bands"]), meta.get("channels"))
    if meta["feature_names"] != expected:
        raise ClassicalModelError(
            f"{path}: feature_names are not the ones signal_features computes for channels "
            f"{meta.get('channels')} ({len(expected)} features)"
        )


def load_classical(
    model_dir: Path | str, meta: dict[str, Any], verify: bool = True
) -> LoadedClassical:
    """Load a classical model whose model.json is `meta`: the weights' sha256 checked first
    (WeightsTampered), then the arrays' names, types and shapes."""
    from safetensors.numpy import load

    model_dir = Path(model_dir)
    check_meta(model_dir / META, meta)
    path = model_dir / meta.get("weights_file", WEIGHTS)
    if not path.is_file():
        raise ClassicalModelError(f"{path}: weights file missing")
    data = path.read_bytes()
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["weights_sha256"]:
            raise ClassicalTampered(
                f"{path}: sha256 {digest[:16]}… does not match {META} "
                f"({meta['weights_sha256'][:16]}…); the weights were changed after saving: "
                "refusing to load them"
            )
    try:
        arrays = load(data)
    except Exception as e:  # safetensors raises several types for a bad file
        raise ClassicalModelError(f"{path}: not a safetensors file: {e}") from None
    problems = _array_problems(arrays, len(meta["feature_names"]))
    if problems:
        raise ClassicalModelError(f"{path}: not a {ARCHITECTURE} of this format: {problems}")
    depth = int(meta["architecture_args"]["max_depth"])
    return LoadedClassical(Forest(arrays, depth), meta)


def _array_problems(arrays: dict[str, np.ndarray], n_features: int) -> str | None:
    if sorted(arrays) != sorted(ARRAYS):
        return f"arrays {sorted(arrays)}, expected {sorted(ARRAYS)}"
    n = len(arrays["left"])
    for k in ("left", "right", "feature", "threshold", "fault_proba"):
        if arrays[k].shape != (n,):
            return f"{k} has shape {arrays[k].shape}, expected ({n},)"
    for k in ("left", "right", "roots"):
        if n == 0 or arrays[k].min() < 0 or arrays[k].max() >= n:
            return f"{k} points outside the {n} nodes"
    if arrays["feature"].min() < 0 or arrays["feature"].max() >= n_features:
        return f"feature indices outside the {n_features} features"
    p = arrays["fault_proba"]
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        return "fault_proba outside [0, 1]"
    return None
