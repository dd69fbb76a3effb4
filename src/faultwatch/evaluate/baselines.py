"""The baselines every model is compared with: "always healthy" and a classical model (a
scikit-learn classifier over faultwatch.features.signal_features)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from faultwatch.features import signal_features

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

ClassicalKind = Literal["random_forest", "gradient_boosting", "logistic_regression"]


def always_healthy_scores(n: int) -> np.ndarray:
    """The 'always healthy' baseline: fault probability 0 for every signal."""
    return np.zeros(n)


def classical_baseline(
    kind: ClassicalKind = "random_forest",
    n_estimators: int = 300,
    feature_length: int = 256,
    fft_bands: int = 8,
    seed: int = 42,
) -> Pipeline:
    """An unfitted scikit-learn pipeline: signals -> `signal_features` -> a class-weighted model.

    `fit(signals, y)` takes a list of 1-D arrays of any lengths, or of (channels, samples)
    arrays (every channel's features, channel-major: `feature_names(fft_bands, channels)`);
    `predict_proba(signals)[:, 1]` is the fault probability.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    features = FunctionTransformer(
        signal_features, kw_args={"feature_length": feature_length, "fft_bands": fft_bands}
    )
    if kind == "random_forest":
        model = RandomForestClassifier(
            n_estimators=n_estimators,
            class_weight="balanced_subsample",
            min_samples_leaf=1,
            random_state=seed,
            n_jobs=1,  # the same trees whatever the machine
        )
        return make_pipeline(features, model)
    if kind == "gradient_boosting":
        model = HistGradientBoostingClassifier(
            max_iter=n_estimators, class_weight="balanced", random_state=seed
        )
        return make_pipeline(features, model)
    if kind == "logistic_regression":
        model = LogisticRegression(class_weight="balanced", max_iter=5000, random_state=seed)
        return make_pipeline(features, StandardScaler(), model)
    raise ValueError(
        f"unknown classical baseline {kind!r}: expected one of {get_args(ClassicalKind)}"
    )


def fault_probability(model: Any, signals: Sequence[np.ndarray]) -> np.ndarray:
    """P(fault) from a fitted scikit-learn classifier whose classes are 0 and 1."""
    proba = model.predict_proba(list(signals))
    return proba[:, list(model.classes_).index(1)].astype("float64")
