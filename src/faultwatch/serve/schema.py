"""What the service accepts and answers: pydantic models and the limits they enforce.

The limits are module-level values because BentoML builds an endpoint's input schema from
its type annotations when the service class is defined. They come, in this order, from the
environment (`FAULTWATCH_MIN_LENGTH`, `FAULTWATCH_MAX_LENGTH`, `FAULTWATCH_MAX_BATCH`,
`FAULTWATCH_MAX_BODY_BYTES`), the served model's `input_schema` metadata (written by the
register stage from params.yaml's `data` section), and the defaults below, which are
`faultwatch.data.params.DataParams`' own (a test keeps them equal; importing that module here
would pull pandas into the serving image).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    RootModel,
    model_serializer,
    model_validator,
)

from faultwatch import settings
from faultwatch.serve.identity import RequestIdentity, current

# no sensor reads more; far inside what z-scoring in float64 handles (squares up to 1e30)
MAX_ABS_VALUE = 1e15


@dataclass(frozen=True)
class ServingLimits:
    min_length: int = 16
    max_length: int = 100_000
    max_batch: int = 64  # signals per predict_batch request (= the batcher's max batch size)
    # a JSON float takes ~20 bytes: a maximum-length signal (100 000 samples) fits in 2 MiB
    max_body_bytes: int = 4 * 1024 * 1024

    @classmethod
    def resolve(
        cls, metadata: Mapping[str, Any] | None = None, channels: Sequence[str] | None = None
    ) -> ServingLimits:
        """Defaults, then the model's `input_schema` metadata, then the environment. A
        multichannel model's (`channels`, else those its input_schema names) default body limit
        is the default times its channels: the limit counts every sample of every channel."""
        values: dict[str, int] = {}
        schema = (metadata or {}).get("input_schema") or {}
        channels = channels or schema.get("channels")
        if channels:
            values["max_body_bytes"] = cls.max_body_bytes * len(channels)
        for name in ("min_length", "max_length", "max_batch", "max_body_bytes"):
            if name in schema:
                values[name] = int(schema[name])
            env = settings.get(f"FAULTWATCH_{name.upper()}")
            if env is not None:
                values[name] = env
        limits = cls(**values)
        if not 2 <= limits.min_length <= limits.max_length:
            raise ValueError(f"serving limits: need 2 <= min_length <= max_length, got {limits}")
        return limits


def input_schema(data_params: Mapping[str, Any], model_json: Mapping[str, Any]) -> dict[str, Any]:
    """The store entry's `input_schema` (what the service validates with): the length limits of
    params.yaml `data`, the length the model resamples to; for a multichannel model also its
    channels, in order, and their normalisation (a univariate entry's is as it always was)."""
    schema: dict[str, Any] = {
        "type": "array of finite numbers (one signal)",
        "min_length": data_params.get("min_length", ServingLimits.min_length),
        "max_length": data_params.get("max_length", ServingLimits.max_length),
        "resampled_to": model_json.get("input_length"),
    }
    channels = model_json.get("channels")
    if channels is not None:
        schema["type"] = "channels x samples of finite numbers (one signal, channels first)"
        schema["channels"] = list(channels)
        schema["normalisation"] = (model_json.get("preprocessing") or {}).get("normalise")
    return schema


def signal_type(limits: ServingLimits) -> Any:
    """A list of finite numbers (JSON numbers only: no strings, booleans, NaN or Infinity)."""
    sample = Annotated[
        float, Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)
    ]
    return Annotated[
        list[sample], Field(min_length=limits.min_length, max_length=limits.max_length)
    ]


def signal_model(limits: ServingLimits, root: Any = None) -> type[RootModel]:
    """One signal of a batch; stamps the time it was validated, so latency can be logged, and
    its request's identity (validation runs in the request's task; with BentoML's batching the
    model call does not). `root`: the item's type (default: `signal_type(limits)`)."""

    class Signal(RootModel[root or signal_type(limits)]):  # type: ignore[misc]
        _received: float = PrivateAttr(default_factory=time.perf_counter)
        _identity: RequestIdentity = PrivateAttr(default_factory=current)

    return Signal


class Prediction(BaseModel):
    """The answer for one signal."""

    model_config = ConfigDict(frozen=True)

    probability: float | None = Field(
        description="probability of the fault class, 0 to 1; null: not scored (see quality)"
    )
    label: str = Field(
        description='the fault class name when probability >= threshold; "unscored" when the '
        "signal's quality kept it from being scored"
    )
    is_fault: bool | None = Field(description="null: not scored (a sensor fault, see quality)")
    threshold: float
    model_version: str
    prediction_id: str = Field(
        description="this answer's id (uuid4 hex), also in the prediction log"
    )
    quality: str = Field(
        "ok",
        description="the signal's quality: ok, or the sensor rule it breaks (flat_line, "
        "clipping, stuck): a sensor or acquisition fault, not a machine fault",
    )
    model: str | None = Field(
        None, description="the model group that answered (a fleet bento; absent: one model)"
    )

    @model_serializer(mode="wrap")
    def _without_model_when_single(self, handler: Any) -> dict[str, Any]:
        """A single model's answer is as it was before fleets: no `model` key."""
        out = handler(self)
        if out.get("model") is None:
            out.pop("model", None)
        return out


class BatchPrediction(BaseModel):
    """The answer for a batch: one prediction per signal, in order.

    An object rather than a bare list: BentoML 1.4.39 computes the JSON schema of a root-list
    output on every response (~1 ms per request here); an object is serialised directly.
    """

    predictions: list[Prediction]


# ---------------------------------------------------------------- delayed labels (/feedback)
# a prediction_id is the uuid4 hex the service gave (faultwatch.serve.identity.new_id)
PredictionId = Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{32}$")]
ClassName = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
Source = Annotated[str, Field(strict=True, min_length=1, max_length=200)]


class FeedbackItem(BaseModel):
    """The true class of one answered prediction."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: PredictionId
    label: ClassName


def feedback_model(limits: ServingLimits) -> type[BaseModel]:
    """The /feedback body: `{"prediction_id", "label"}` or `{"labels": [...]}` (1 to
    max_batch items), with an optional `source` (who labelled: a technician, a lab)."""

    class Feedback(BaseModel):
        model_config = ConfigDict(extra="forbid")

        prediction_id: PredictionId | None = None
        label: ClassName | None = None
        labels: (
            Annotated[list[FeedbackItem], Field(min_length=1, max_length=limits.max_batch)] | None
        ) = None
        source: Source | None = None

        @model_validator(mode="after")
        def one_form(self) -> Feedback:
            """One of the two forms, whole: a single label, or a list of them."""
            single = self.prediction_id is not None or self.label is not None
            if single and self.labels is not None:
                raise ValueError("give prediction_id and label, or labels, not both")
            if self.labels is None and (self.prediction_id is None or self.label is None):
                missing = "label" if self.prediction_id is not None else "prediction_id"
                if not single:
                    missing = "labels (or prediction_id and label)"
                raise ValueError(f"{missing} is required")
            return self

    return Feedback


class FeedbackAccepted(BaseModel):
    """The answer to /feedback: how many labels were recorded (all of the request's)."""

    accepted: int
