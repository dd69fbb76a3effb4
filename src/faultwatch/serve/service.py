"""The BentoML service: fault probability for one signal or a batch, every answer logged.

Serve it with `faultwatch serve` (the packaged bento, the project's store, from anywhere in the
project), or `bentoml serve faultwatch.serve.service:FaultDetector` with an absolute
BENTOML_HOME. Settings: the FAULTWATCH_* variables of faultwatch.serve.settings
(`faultwatch serve --show-config` prints them) and the input limits of faultwatch.serve.schema.
FAULTWATCH_MODEL_TAG picks the store entry (default: the bento's `model_tag` build argument,
else fault_cnn:latest), so a blue and a green process can serve different versions;
FAULTWATCH_COLOUR names the process (blue, green) in every row it writes to the prediction log.

Identity. Every answered signal gets a `prediction_id` (uuid4 hex), logged with it beside the
request's `X-Request-ID` and `X-Faultwatch-Role` (faultwatch.serve.identity; the guard reads,
checks and echoes them).

Start fails fast. Importing this module (which `bentoml serve` and `bentoml build` do before
any worker starts) checks that BENTOML_HOME resolves, that the model is in the store, and that
its weights are the ones recorded at registration (faultwatch.serve.served); a failure stops
the command with a message naming the entry, instead of workers that fail and restart in a loop.

Failures stay with their request. A model call that fails for a micro-batch is retried signal
by signal; only the request whose signal fails gets the error (500, naming the signal). A
prediction is committed to the log before its answer is sent; a log that cannot be written
answers 503 and no prediction.

Monitoring (issue 12). Beside each answer's input summary the log gets, from the same model
call: the monitor's features (faultwatch.features.monitor_features, once per model
call for the batch), the model's penultimate-layer embedding (faultwatch.serve.embedding: the
same forward pass as the probability), and, for a share FAULTWATCH_LOG_SIGNALS of the signals,
the raw signal. `POST /feedback` records the true class of answered predictions (delayed
labels) in the log's `labels` table; 404 for an unknown prediction_id, 409 for one labelled
already, 422 for a label that is not one of the model's classes. /metrics adds the counters
and gauges of faultwatch.serve.metrics. bench/logging_cost.py measures what the extra logging
costs per request.

Signal quality (issue 19). Every answered signal is checked for a dead sensor or a failed
acquisition (faultwatch.signal_quality: flat_line, clipping, stuck) with the thresholds recorded
in the store entry at registration; the answer's `quality` is `ok` or the rule. A bad-quality
signal is answered with probability and is_fault null and label "unscored", unless the entry
was registered with `quality.score_bad_signals: true`. The log keeps the model's probability
for every signal (is_fault 0, label "unscored" when it was not answered) and the quality.

Batching. By default both endpoints put their signals in one continuous micro-batcher
(faultwatch.serve.batching): a signal that arrives while the model is idle is computed at
once, signals that arrive while it is busy share the next model call. BentoML's own adaptive
batching (`@bentoml.api(batchable=True)`, FAULTWATCH_BATCHING=bentoml, for predict_batch only)
was measured against it (bench/serve.py): it batches as well under load, but after a burst its
learned wait keeps single requests waiting (p50 at concurrency 1: ~7 ms before the first
burst of 32 concurrent clients, 38-53 ms in every round after it), its bare-list answer costs
a JSON-schema build per response in BentoML 1.4.39, and with a tight `max_latency_ms` it
answers bursts with 503 (shared/MEASURED.md).

Channels (issue 21). A multichannel model (model.json names its channels) takes a signal
channels first or by name (faultwatch.serve.channels, which names the channel in every refusal:
a wrong count, an unknown or missing name, unequal lengths are a 422); its quality is checked
per channel (`flat_line[z]`), its log rows carry the channels and the per-channel features. It
is always served by the queue batcher.
"""

from __future__ import annotations

import functools
import itertools
import logging
import random
import time
from typing import Annotated

import anyio.to_thread
import bentoml
import numpy as np
from pydantic import Field
from starlette.responses import Response

from faultwatch.features import monitor_features
from faultwatch.serve.answers import (
    Item,
    ModelFailure,
    Scored,
    error_response,
    feedback_refusal,
    model_failures,
    refusal,
)
from faultwatch.serve.batching import BatchCancelled, MicroBatcher, Overloaded, run_isolated
from faultwatch.serve.channels import ChannelError, ChannelSpec, multichannel_types
from faultwatch.serve.embedding import check_embeddable, proba_and_embedding
from faultwatch.serve.guard import RequestGuard
from faultwatch.serve.identity import current, new_id
from faultwatch.serve.logs import quiet_client_errors
from faultwatch.serve.metrics import RealisedF1, RefreshOnScrape, service_metrics
from faultwatch.serve.predlog import (
    FeedbackError,
    InputSummary,
    LoggedPrediction,
    PredictionLog,
    PredictionLogError,
    open_log,
)
from faultwatch.serve.probes import ReadyBody
from faultwatch.serve.schema import (
    BatchPrediction,
    FeedbackAccepted,
    FeedbackItem,
    Prediction,
    feedback_model,
    signal_model,
    signal_type,
)
from faultwatch.serve.served import served_model
from faultwatch.serve.settings import ServeSettings
from faultwatch.serve.store import load_entry, read_threshold
from faultwatch.signal_quality import OK, UNSCORED, quality_of

logger = logging.getLogger(__name__)

# the state of the process, resolved once at import: the settings, and the served model checked
SETTINGS = ServeSettings.from_env()
SERVED = served_model(SETTINGS)
# BentoML builds the endpoints' input schemas from these annotations, with the served limits
SignalValues = signal_type(SERVED.limits)
Signal = signal_model(SERVED.limits)
SignalBatch = Annotated[list[Signal], Field(min_length=1, max_length=SERVED.limits.max_batch)]
Feedback = feedback_model(SERVED.limits)
CHANNELS = None if SERVED.channels is None else ChannelSpec(SERVED.channels, SERVED.limits)
if CHANNELS is not None:  # a multichannel model's input forms (faultwatch.serve.channels)
    ChannelsFirst, ChannelsByName, ChannelsItem = multichannel_types(SERVED.limits, CHANNELS.names)
    ChannelsBatch = Annotated[
        list[ChannelsItem], Field(min_length=1, max_length=SERVED.limits.max_batch)
    ]

PREDICTION_ROUTES = ("/predict", "/predict_batch")
ROUTES = (*PREDICTION_ROUTES, "/feedback")
REALISED = RealisedF1(SERVED.log_target, SERVED.class_names[1], SETTINGS.realised_f1_refresh_s)
_requests = itertools.count()


def open_process_log() -> PredictionLog:
    """The prediction log of this process (its target, durability and colour from SETTINGS)."""
    return open_log(
        SERVED.log_target,
        synchronous=SETTINGS.prediction_log_sync,
        timeout_s=SETTINGS.prediction_log_timeout_s,
        colour=SETTINGS.colour,
    )


@bentoml.service(
    name="faultwatch",
    workers=1,
    traffic={"timeout": 30},
    logging={"access": {"enabled": SETTINGS.access_log}},
    tracing={} if SETTINGS.trace_predictions else {"excluded_urls": list(PREDICTION_ROUTES)},
)
class FaultDetector:
    model_ref = SERVED.ref

    def __init__(self) -> None:
        import torch  # in the worker only: `bentoml build` and the CLI import this module

        torch.set_num_threads(SETTINGS.torch_threads)
        entry = self.model_ref  # the resolved store entry
        self.model = load_entry(entry)  # the weights' sha256 against model.json and the store
        check_embeddable(self.model)
        self.threshold = read_threshold(entry.path)
        self.version = str(entry.tag.version)
        self.healthy_label, self.fault_label = (str(c) for c in self.model.meta["class_names"])
        self.log = open_process_log()
        # what is logged beyond the summary; bench/logging_cost.py turns both off to measure them
        self.monitoring = True  # features and embedding
        self.log_signals = SETTINGS.log_signals  # the share of raw signals logged
        self._sampler = random.Random()
        self.metrics = service_metrics()
        quiet_client_errors()  # a 4xx is one line (the guard's), not BentoML's traceback
        # the first model call pays for lazy initialisation: not a client's request
        shape = (SERVED.limits.min_length,)
        self._score([np.zeros(shape if CHANNELS is None else (len(CHANNELS.names), *shape))])

    def _score(self, signals: list[np.ndarray]) -> list[Scored]:
        """One model call (probability and embedding) and the monitor's features of the
        batch; raises if any probability is not finite."""
        if not self.monitoring:
            proba = np.asarray(self.model.predict_proba(signals), dtype="float64")
            emb, feats = [None] * len(signals), [None] * len(signals)
        else:
            proba, emb = proba_and_embedding(self.model, signals)
            feats = monitor_features(signals).tolist()
        if not np.all(np.isfinite(proba)):
            raise ValueError("the model returned a non-finite probability")
        return [Scored(*x) for x in zip(proba.tolist(), emb, feats, strict=True)]

    def _sampled(self) -> bool:
        """Whether to log this signal raw (a share FAULTWATCH_LOG_SIGNALS of them)."""
        return self.log_signals > 0 and self._sampler.random() < self.log_signals

    def _answer(self, items: list[Item]) -> list[Prediction | ModelFailure]:
        """One model call for `items` (signal by signal if it fails); the answered rows are
        committed to the log before returning. A request with a failing signal gets that
        failure for all its signals, and none of them is logged."""
        outcomes = run_isolated(self._score, [it.values for it in items])
        failed = model_failures(items, outcomes)
        answers: list[Prediction | ModelFailure] = []
        entries, now = [], time.perf_counter()
        for it, scored in zip(items, outcomes, strict=True):
            if it.request in failed:
                answers.append(failed[it.request])
                continue
            answer, entry = self._answered(it, scored, now - it.received, len(items))
            answers.append(answer)
            entries.append(entry)
        self.log.append(entries)  # raises PredictionLogError: then no answer of the batch leaves
        for e in entries:
            self.metrics.answered(e.model_version, e.label, e.is_fault, e.quality)
        return answers

    def _answered(
        self, it: Item, scored: Scored, waited_s: float, batch_size: int
    ) -> tuple[Prediction, LoggedPrediction]:
        """The answer for one signal the model scored, and its log entry (the probability is
        logged also when the signal's quality leaves it unscored)."""
        p = scored.probability
        quality = quality_of(it.values, SERVED.quality, SERVED.channels)
        scored_answer = quality == OK or SERVED.quality.score_bad_signals
        fault = scored_answer and p >= self.threshold
        label = (self.fault_label if fault else self.healthy_label) if scored_answer else UNSCORED
        prediction_id = new_id()
        answer = Prediction(
            probability=p if scored_answer else None,
            label=label,
            is_fault=fault if scored_answer else None,
            threshold=self.threshold,
            model_version=self.version,
            prediction_id=prediction_id,
            quality=quality,
        )
        entry = LoggedPrediction(
            endpoint=it.endpoint,
            model_version=self.version,
            summary=InputSummary.of(it.values),
            probability=p,
            label=label,
            is_fault=fault,
            threshold=self.threshold,
            latency_ms=waited_s * 1e3,
            batch_size=batch_size,
            prediction_id=prediction_id,
            quality=quality,
            request_id=it.identity.request_id,
            role=it.identity.role,
            features=scored.features,
            embedding=scored.embedding,
            signal=it.values if self._sampled() else None,
            channels=SERVED.channels,
        )
        return answer, entry

    @functools.cached_property
    def _batcher(self) -> MicroBatcher[Item, Prediction]:
        """Created on first use, inside the server's event loop."""
        return MicroBatcher(
            self._answer, max_batch=SETTINGS.batch_size, max_queue=SETTINGS.max_queue
        )

    async def _submit(self, items: list[Item]) -> list[Prediction] | Response:
        try:
            return await self._batcher.submit(items)
        except (ModelFailure, Overloaded, PredictionLogError, BatchCancelled) as e:
            return refusal(e)

    def _answer_now(self, items: list[Item]) -> list[Prediction]:
        """`_answer` for BentoML's own batching, which cannot answer one request apart."""
        answers = self._answer(items)
        for a in answers:
            if isinstance(a, Exception):
                raise a
        return answers  # type: ignore[return-value]

    @bentoml.api(input_spec=Feedback)
    async def feedback(
        self,
        prediction_id: str | None = None,
        label: str | None = None,
        labels: list[FeedbackItem] | None = None,
        source: str | None = None,
    ) -> FeedbackAccepted:
        """Delayed ground truth: the true class of answered predictions, into the log's
        `labels` table, all of a request or none. Body: {"prediction_id", "label"} or
        {"labels": [{"prediction_id", "label"}, ...]}, optionally "source" (who labelled)."""
        single = labels is None
        items = (
            [(str(prediction_id), str(label))]
            if single
            else [(i.prediction_id, i.label) for i in labels]
        )
        classes = (self.healthy_label, self.fault_label)
        refused = feedback_refusal(items, single, classes, self.version, current().role)
        if refused is not None:
            return refused
        try:
            accepted = await anyio.to_thread.run_sync(self.log.add_labels, items, source)
        except FeedbackError as e:
            loc = [e.loc[-1]] if single and e.loc else list(e.loc)
            return error_response(e.status, e.reason, loc, e.msg)
        except PredictionLogError as e:
            logger.error("prediction log: %s", e)
            msg = f"the labels could not be recorded: {e}"
            return error_response(503, "prediction_log_unavailable", [], msg)
        await anyio.to_thread.run_sync(REALISED.refresh_quietly, True)
        return FeedbackAccepted(accepted=accepted)

    if CHANNELS is not None:

        @bentoml.api
        async def predict(
            self,
            signal: ChannelsFirst | None = None,  # type: ignore[valid-type]
            channels: ChannelsByName | None = None,  # type: ignore[valid-type]
        ) -> Prediction:
            """Fault probability of one multichannel signal: `signal` (channels first, in the
            model's order) or `channels` (by name)."""
            try:
                values = CHANNELS.values_of(signal, channels)
            except ChannelError as e:
                return error_response(e.status, e.reason, e.loc, e.msg)
            out = await self._submit([_item(values)])
            return out if isinstance(out, Response) else out[0]

        @bentoml.api
        async def predict_batch(self, signals: ChannelsBatch) -> BatchPrediction:  # type: ignore[valid-type]
            """Fault probabilities of many multichannel signals, each channels first or by name."""
            try:
                values = CHANNELS.batch_values([s.root for s in signals])
            except ChannelError as e:
                return error_response(e.status, e.reason, e.loc, e.msg)
            out = await self._submit(_items(values, signals))
            return out if isinstance(out, Response) else BatchPrediction(predictions=out)

    elif SETTINGS.batching == "queue":

        @bentoml.api
        async def predict(self, signal: SignalValues) -> Prediction:  # type: ignore[valid-type]
            """Fault probability of one signal (any length within the limits)."""
            out = await self._submit([_item(np.asarray(signal))])
            return out if isinstance(out, Response) else out[0]

        @bentoml.api
        async def predict_batch(self, signals: SignalBatch) -> BatchPrediction:  # type: ignore[valid-type]
            """Fault probabilities of many signals; concurrent requests share model calls."""
            out = await self._submit(_items([np.asarray(s.root) for s in signals], signals))
            return out if isinstance(out, Response) else BatchPrediction(predictions=out)

    else:

        @bentoml.api
        def predict(self, signal: SignalValues) -> Prediction:  # type: ignore[valid-type]
            """Fault probability of one signal (any length within the limits)."""
            try:
                return self._answer_now([_item(np.asarray(signal))])[0]
            except (ModelFailure, PredictionLogError) as e:
                return refusal(e)

        @bentoml.api(
            batchable=True,
            max_batch_size=SETTINGS.batch_size,
            max_latency_ms=SETTINGS.max_latency_ms,
        )
        def predict_batch(self, signals: SignalBatch) -> list[Prediction]:  # type: ignore[valid-type]
            """Fault probabilities of many signals; BentoML batches concurrent requests.

            The answer is a bare list (batchable=True splits the output list by request)."""
            return self._answer_now(_items([np.asarray(s.root) for s in signals], signals))


def _item(values: np.ndarray) -> Item:
    """The one signal of a /predict request, validated now."""
    return Item(values, time.perf_counter(), "predict", next(_requests), None, current())


def _items(values: list[np.ndarray], stamped: list) -> list[Item]:
    """The signals of one /predict_batch request (`stamped`: its validated items)."""
    request = next(_requests)
    return [
        Item(v, s._received, "predict_batch", request, i, s._identity)
        for i, (v, s) in enumerate(zip(values, stamped, strict=True))
    ]


def _count_rejection(reason: str) -> None:
    service_metrics().rejected.labels(reason=reason).inc()


FaultDetector.add_asgi_middleware(
    RequestGuard,
    paths=ROUTES,
    max_body_bytes=SERVED.limits.max_body_bytes,
    max_drain_bytes=SETTINGS.max_drain_bytes,
    log_factory=open_process_log,
    on_reject=_count_rejection,
)
FaultDetector.add_asgi_middleware(RefreshOnScrape, refresh=REALISED.refresh_quietly)
FaultDetector.add_asgi_middleware(ReadyBody, model_tag=str(SERVED.entry.tag))
