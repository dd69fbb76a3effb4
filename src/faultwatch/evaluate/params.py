"""The evaluate stage's parameters (params.yaml's `evaluate` section)."""

from __future__ import annotations

from pydantic import Field

from faultwatch.evaluate.baselines import ClassicalKind
from faultwatch.params import Section


class EvaluateParams(Section):
    model_dir: str = "models/fault_cnn"
    data_dir: str = "data/prepared"
    out_dir: str = "reports/evaluate"
    baseline_model: ClassicalKind = "random_forest"
    baseline_n_estimators: int = Field(300, ge=1)
    baseline_feature_length: int = Field(256, ge=16, description="resampled length for the FFT")
    baseline_fft_bands: int = Field(8, ge=1)
    seed: int = 42
    worst_n: int = Field(6, ge=1, description="worst test signals plotted")
