"""The BentoML service: fault probability for one signal or a batch, every answer logged.

Serve it with `bentoml serve faultwatch.serve.service:FaultDetector` (or from a built bento).
Environment:
  FAULTWATCH_MODEL_TAG        store entry to serve (default: the bento's `model_tag` build
                              argument, else fault_cnn:latest): a blue and a green process can
                              serve different versions
  FAULTWATCH_PREDICTION_LOG   the SQLite prediction log (see faultwatch.serve.predlog)
  FAULTWATCH_BATCHING         "queue" (default) or "bentoml", see below
  FAULTWATCH_TORCH_THREADS    torch intra-op threads (default 1)
  FAULTWATCH_TRACE_PREDICTIONS=1  keep OpenTelemetry spans on the prediction routes
and the input limits of faultwatch.serve.schema.

Batching. By default both endpoints put their signals in one continuous micro-batcher
(faultwatch.serve.batching): a signal that arrives while the model is idle is computed at
once, signals that arrive while it is busy share the next model call. BentoML's own adaptive
batching (`@bentoml.api(batchable=True)`, FAULTWATCH_BATCHING=bentoml, for predict_batch only)
was measured against it (bench/serve.py): it batches as well under load, but after a burst its
learned wait keeps single requests waiting (p50 at concurrency 1: ~7 ms before the first
burst of 32 concurrent clients, 38-53 ms in every round after it), its bare-list answer costs
a JSON-schema build per response in BentoML 1.4.39, and with a tight `max_latency_ms` it
answers bursts with 503 (shared/MEASURED.md).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import ServiceUnavailable
from pydantic import Field

from faultwatch.serve.batching import MicroBatcher, Overloaded
from faultwatch.serve.guard import RequestGuard
from faultwatch.serve.predlog import InputSummary, LoggedPrediction, PredictionLog
from faultwatch.serve.schema import (
    BatchPrediction,
    Prediction,
    ServingLimits,
    signal_model,
    signal_type,
)
from faultwatch.serve.store import MODEL_NAME, read_threshold


def _model_tag() -> str:
    """FAULTWATCH_MODEL_TAG, else the bento's build argument `model_tag` (`bentoml build --arg
    model_tag=...` pins the packaged version), else the newest `fault_cnn` in the store."""
    arg = getattr(bentoml.use_arguments(), "model_tag", None)
    return os.environ.get("FAULTWATCH_MODEL_TAG") or arg or f"{MODEL_NAME}:latest"


MODEL_TAG = _model_tag()
MODEL_REF = bentoml.models.BentoModel(MODEL_TAG)


def _model_metadata() -> dict[str, Any]:
    stored = MODEL_REF.stored  # None when the tag is not in the store (yet)
    return dict(stored.info.metadata) if stored is not None else {}


LIMITS = ServingLimits.resolve(_model_metadata())
SignalValues = signal_type(LIMITS)
Signal = signal_model(LIMITS)
SignalBatch = Annotated[list[Signal], Field(min_length=1, max_length=LIMITS.max_batch)]

BATCHING = os.environ.get("FAULTWATCH_BATCHING", "queue")
if BATCHING not in ("queue", "bentoml"):
    raise ValueError(f"FAULTWATCH_BATCHING={BATCHING!r}: expected queue or bentoml")
# Signals per model call. Under load a batch is everything that queued during the previous
# call; 64 is above the concurrency the service is tested at (32), and this CNN costs no more
# per signal at batch 64 than at 32 on CPU (0.3-0.4 ms).
BATCH_SIZE = int(os.environ.get("FAULTWATCH_BATCH_SIZE", "64"))
# Signals waiting beyond this are refused with 503: about 1 s of model time on 1 CPU thread.
MAX_QUEUE = int(os.environ.get("FAULTWATCH_MAX_QUEUE", "2048"))
# Only for FAULTWATCH_BATCHING=bentoml: BentoML answers 503 to a request it expects to wait
# longer than this. At c=32 p99 reached 0.4-0.7 s on a busy 2-core machine, so 2 s leaves
# room; 20 ms turned 39 of 40 burst requests into 503s (shared/MEASURED.md).
MAX_LATENCY_MS = int(os.environ.get("FAULTWATCH_MAX_LATENCY_MS", "2000"))
TORCH_THREADS = int(os.environ.get("FAULTWATCH_TORCH_THREADS", "1"))

ROUTES = ("/predict", "/predict_batch")
# OpenTelemetry spans cost CPU on every request and go nowhere unless an exporter is set up
TRACED = os.environ.get("FAULTWATCH_TRACE_PREDICTIONS", "0") == "1"

# one queued signal: (values, when its request was validated, endpoint)
Item = tuple[np.ndarray, float, str]


@bentoml.service(
    name="faultwatch",
    workers=1,
    traffic={"timeout": 30},
    # every prediction and every rejection is in the prediction log; the access log doubles
    # that and costs ~15 % of the request rate (shared/MEASURED.md). FAULTWATCH_ACCESS_LOG=1
    logging={"access": {"enabled": os.environ.get("FAULTWATCH_ACCESS_LOG", "0") == "1"}},
    tracing={} if TRACED else {"excluded_urls": list(ROUTES)},
)
class FaultDetector:
    model_ref = MODEL_REF

    def __init__(self) -> None:
        import torch

        from faultwatch.serve.store import load_entry

        torch.set_num_threads(TORCH_THREADS)
        entry = self.model_ref  # the resolved store entry
        self.model = load_entry(entry)  # the weights' sha256 against model.json and the store
        self.threshold = read_threshold(entry.path)
        self.version = str(entry.tag.version)
        self.healthy_label, self.fault_label = (str(c) for c in self.model.meta["class_names"])
        self.log = PredictionLog()
        # the first model call pays for lazy initialisation: not a client's request
        self.model.predict_proba([np.zeros(LIMITS.min_length)])

    def _answer(self, items: list[Item]) -> list[Prediction]:
        """One model call for `items`; the rows are committed to the log before returning."""
        proba = np.asarray(self.model.predict_proba([x for x, _, _ in items]), dtype="float64")
        if not np.all(np.isfinite(proba)):
            raise RuntimeError("the model returned a non-finite probability")
        answers, entries, now = [], [], time.perf_counter()
        for (x, received, endpoint), p in zip(items, proba.tolist(), strict=True):
            fault = p >= self.threshold
            label = self.fault_label if fault else self.healthy_label
            answers.append(
                Prediction(
                    probability=p,
                    label=label,
                    is_fault=fault,
                    threshold=self.threshold,
                    model_version=self.version,
                )
            )
            entries.append(
                LoggedPrediction(
                    endpoint=endpoint,
                    model_version=self.version,
                    summary=InputSummary.of(x),
                    probability=p,
                    label=label,
                    is_fault=fault,
                    threshold=self.threshold,
                    latency_ms=(now - received) * 1e3,
                    batch_size=len(items),
                )
            )
        self.log.append(entries)
        return answers

    @functools.cached_property
    def _batcher(self) -> MicroBatcher[Item, Prediction]:
        """Created on first use, inside the server's event loop."""
        return MicroBatcher(self._answer, max_batch=BATCH_SIZE, max_queue=MAX_QUEUE)

    async def _submit(self, items: list[Item]) -> list[Prediction]:
        try:
            return await self._batcher.submit(items)
        except Overloaded as e:
            raise ServiceUnavailable(f"overloaded: {e}") from None

    if BATCHING == "queue":

        @bentoml.api
        async def predict(self, signal: SignalValues) -> Prediction:  # type: ignore[valid-type]
            """Fault probability of one signal (any length within the limits)."""
            return (await self._submit([(np.asarray(signal), time.perf_counter(), "predict")]))[0]

        @bentoml.api
        async def predict_batch(self, signals: SignalBatch) -> BatchPrediction:  # type: ignore[valid-type]
            """Fault probabilities of many signals; concurrent requests share model calls."""
            items = [(np.asarray(s.root), s._received, "predict_batch") for s in signals]
            return BatchPrediction(predictions=await self._submit(items))

    else:

        @bentoml.api
        def predict(self, signal: SignalValues) -> Prediction:  # type: ignore[valid-type]
            """Fault probability of one signal (any length within the limits)."""
            return self._answer([(np.asarray(signal), time.perf_counter(), "predict")])[0]

        @bentoml.api(batchable=True, max_batch_size=BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
        def predict_batch(self, signals: SignalBatch) -> list[Prediction]:  # type: ignore[valid-type]
            """Fault probabilities of many signals; BentoML batches concurrent requests.

            The answer is a bare list (batchable=True splits the output list by request)."""
            return self._answer(
                [(np.asarray(s.root), s._received, "predict_batch") for s in signals]
            )


FaultDetector.add_asgi_middleware(
    RequestGuard,
    paths=ROUTES,
    max_body_bytes=LIMITS.max_body_bytes,
    log_factory=PredictionLog,
)
