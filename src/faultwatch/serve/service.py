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
once, signals that arrive while it is busy share the next model call. BentoML's adaptive
batching (FAULTWATCH_BATCHING=bentoml, predict_batch only) was measured against it
(bench/serve.py): after a burst its learned wait keeps single requests waiting (p50 at
concurrency 1: ~7 ms before a burst of 32 clients, 38-53 ms after), and with a tight
`max_latency_ms` it answers bursts with 503 (shared/MEASURED.md).

Binary bodies (issue 26): an `.npy` body (Content-Type application/x-npy) is read and checked
by faultwatch.serve.binary, inside the guard, and answered as its JSON form (`answer_binary`).

Channels (issue 21). A multichannel model (model.json names its channels) takes a signal
channels first or by name (faultwatch.serve.channels, which names the channel in every refusal:
a wrong count, an unknown or missing name, unequal lengths are a 422); its quality is checked
per channel (`flat_line[z]`), its log rows carry the channels and the per-channel features. It
is always served by the queue batcher.

Fleets (issue 23): a bento of several model groups takes `"model"` (or X-Faultwatch-Model) and
loads each group on demand (faultwatch.serve.process, faultwatch.serve.fleet; GET /models).
"""

from __future__ import annotations

import logging
import random
from typing import Annotated

import anyio.to_thread
import bentoml
import numpy as np
from pydantic import Field
from starlette.responses import Response

from faultwatch.serve.answers import (
    Item,
    ModelFailure,
    error_response,
    feedback_refusal,
    refusal,
)
from faultwatch.serve.batching import MicroBatcher
from faultwatch.serve.binary import BinarySignals
from faultwatch.serve.calls import Answering, item_of, items_of
from faultwatch.serve.channels import ChannelError, multichannel_types
from faultwatch.serve.fleet import ModelUnavailable, UnknownModel
from faultwatch.serve.guard import RequestGuard
from faultwatch.serve.identity import current
from faultwatch.serve.logs import quiet_client_errors
from faultwatch.serve.metrics import RefreshOnScrape, service_metrics
from faultwatch.serve.predlog import (
    FeedbackError,
    PredictionLog,
    PredictionLogError,
    open_log,
)
from faultwatch.serve.probes import ModelsPage, ReadyBody
from faultwatch.serve.process import (
    CACHE,
    CLIENTS,
    FLEET,
    GROUPS,
    LABELLERS,
    LIMITS,
    LOG_TARGET,
    REALISED,
    SERVED,
    SETTINGS,
    SPECS,
    WARM,
    described_all,
    group_classes,
)
from faultwatch.serve.schema import (
    BatchPrediction,
    FeedbackAccepted,
    FeedbackItem,
    Prediction,
    feedback_model,
    signal_model,
    signal_type,
)

logger = logging.getLogger(__name__)

# BentoML builds the endpoints' input schemas from these annotations, with the served limits
SignalValues = signal_type(LIMITS)
Signal = signal_model(LIMITS)
SignalBatch = Annotated[list[Signal], Field(min_length=1, max_length=LIMITS.max_batch)]
Feedback = feedback_model(LIMITS)
CHANNELS = None if SERVED is None or SERVED.channels is None else SPECS[next(iter(GROUPS))]
if CHANNELS is not None:  # a multichannel model's input forms (faultwatch.serve.channels)
    ChannelsFirst, ChannelsByName, ChannelsItem = multichannel_types(LIMITS, CHANNELS.names)
    ChannelsBatch = Annotated[list[ChannelsItem], Field(min_length=1, max_length=LIMITS.max_batch)]
if FLEET is not None:  # any group's form: JSON types here, each group's rules after
    FleetSample = Annotated[float, Field(strict=True)]
    FleetRows = Annotated[
        list[Annotated[list[FleetSample], Field(max_length=LIMITS.max_length)]],
        Field(max_length=64),
    ]
    FleetSignal = Annotated[list[FleetSample], Field(max_length=LIMITS.max_length)] | FleetRows
    FleetByName = dict[str, Annotated[list[FleetSample], Field(max_length=LIMITS.max_length)]]
    FleetItem = signal_model(LIMITS, FleetSignal | FleetByName)
    FleetBatch = Annotated[list[FleetItem], Field(min_length=1, max_length=LIMITS.max_batch)]
ModelName = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9._-]{1,100}$")]

PREDICTION_ROUTES = ("/predict", "/predict_batch")
ROUTES = (*PREDICTION_ROUTES, "/feedback")


def open_process_log() -> PredictionLog:
    """The prediction log of this process (its target, durability and colour from SETTINGS)."""
    return open_log(
        LOG_TARGET,
        synchronous=SETTINGS.prediction_log_sync,
        timeout_s=SETTINGS.prediction_log_timeout_s,
        colour=SETTINGS.colour,
    )


class FaultDetector(Answering):
    def __init__(self) -> None:
        import torch  # in the worker only: `bentoml build` and the CLI import this module

        torch.set_num_threads(SETTINGS.torch_threads)
        self.cache = CACHE
        self.groups = self.cache.names()
        if SERVED is not None:  # one model: loaded now, as before (a failure stops the start)
            self.cache.get(self.groups[0])
        else:
            self.cache.warm(WARM)
        self.log = open_process_log()
        # what is logged beyond the summary; bench/logging_cost.py turns both off to measure them
        self.monitoring = True  # features and embedding
        self.log_signals = SETTINGS.log_signals  # the share of raw signals logged
        self._sampler = random.Random()
        self.metrics = service_metrics()
        self._batchers: dict[str, MicroBatcher[Item, Prediction]] = {}
        BinarySignals.service = self  # .npy bodies (faultwatch.serve.binary) come in here
        quiet_client_errors()  # a 4xx is one line (the guard's), not BentoML's traceback

    # the single model's attributes, as tests and benchmarks have read them
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
        {"labels": [{"prediction_id", "label"}, ...]}, optionally "source" (who labelled).
        In a fleet, a label must be a class of the group that answered the prediction."""
        single = labels is None
        items = (
            [(str(prediction_id), str(label))]
            if single
            else [(i.prediction_id, i.label) for i in labels]
        )
        classes = tuple(dict.fromkeys(c for d in described_all() for c in d.class_names))
        version = self.version if SERVED is not None else "this fleet's"
        refused = feedback_refusal(items, single, classes, version, current().role)
        if refused is not None:
            return refused
        try:
            fleet = None if SERVED is not None else group_classes  # who: the token's name
            add = self.log.add_labels
            accepted = await anyio.to_thread.run_sync(add, items, source, fleet, current().who)
        except FeedbackError as e:
            loc = [e.loc[-1]] if single and e.loc else list(e.loc)
            return error_response(e.status, e.reason, loc, e.msg)
        except PredictionLogError as e:
            logger.error("prediction log: %s", e)
            msg = f"the labels could not be recorded: {e}"
            return error_response(503, "prediction_log_unavailable", [], msg)
        await anyio.to_thread.run_sync(REALISED.refresh_quietly, True)
        return FeedbackAccepted(accepted=accepted)

    if FLEET is not None:

        @bentoml.api
        async def predict(
            self,
            signal: FleetSignal | None = None,  # type: ignore[valid-type]
            channels: FleetByName | None = None,  # type: ignore[valid-type]
            model: ModelName | None = None,  # type: ignore[valid-type]
        ) -> Prediction:
            """Fault probability of one signal from the model group `model` (or the
            X-Faultwatch-Model header): its form is the group's (a list of numbers, or
            channels first, or `channels` by name)."""
            try:
                group = self._group(model)
                values = self._spec(group).values_of(signal, channels)
            except UnknownModel as e:
                return error_response(e.status, e.reason, ["model"], e.msg)
            except ModelUnavailable as e:
                return error_response(503, "model_unavailable", ["model"], str(e))
            except ChannelError as e:
                return error_response(e.status, e.reason, e.loc, e.msg)
            out = await self._submit([item_of(values)], group)
            return out if isinstance(out, Response) else out[0]

        @bentoml.api
        async def predict_batch(
            self,
            signals: FleetBatch,  # type: ignore[valid-type]
            model: ModelName | None = None,  # type: ignore[valid-type]
        ) -> BatchPrediction:
            """Fault probabilities of many signals of one model group."""
            try:
                group = self._group(model)
                values = self._spec(group).batch_values([s.root for s in signals])
            except UnknownModel as e:
                return error_response(e.status, e.reason, ["model"], e.msg)
            except ModelUnavailable as e:
                return error_response(503, "model_unavailable", ["model"], str(e))
            except ChannelError as e:
                return error_response(e.status, e.reason, e.loc, e.msg)
            out = await self._submit(items_of(values, signals), group)
            return out if isinstance(out, Response) else BatchPrediction(predictions=out)

    elif CHANNELS is not None:

        @bentoml.api
        async def predict(
            self,
            signal: ChannelsFirst | None = None,  # type: ignore[valid-type]
            channels: ChannelsByName | None = None,  # type: ignore[valid-type]
            model: ModelName | None = None,  # type: ignore[valid-type]
        ) -> Prediction:
            """Fault probability of one multichannel signal: `signal` (channels first, in the
            model's order) or `channels` (by name)."""
            try:
                self._group(model)
                values = CHANNELS.values_of(signal, channels)
            except UnknownModel as e:
                return error_response(e.status, e.reason, ["model"], e.msg)
            except ChannelError as e:
                return error_response(e.status, e.reason, e.loc, e.msg)
            out = await self._submit([item_of(values)])
            return out if isinstance(out, Response) else out[0]

        @bentoml.api
        async def predict_batch(
            self,
            signals: ChannelsBatch,  # type: ignore[valid-type]
            model: ModelName | None = None,  # type: ignore[valid-type]
        ) -> BatchPrediction:
            """Fault probabilities of many multichannel signals, each channels first or by name."""
            try:
                self._group(model)
                values = CHANNELS.batch_values([s.root for s in signals])
            except UnknownModel as e:
                return error_response(e.status, e.reason, ["model"], e.msg)
            except ChannelError as e:
                return error_response(e.status, e.reason, e.loc, e.msg)
            out = await self._submit(items_of(values, signals))
            return out if isinstance(out, Response) else BatchPrediction(predictions=out)

    elif SETTINGS.batching == "queue":

        @bentoml.api
        async def predict(
            self,
            signal: SignalValues,  # type: ignore[valid-type]
            model: ModelName | None = None,  # type: ignore[valid-type]
        ) -> Prediction:
            """Fault probability of one signal (any length within the limits)."""
            try:
                self._group(model)
            except UnknownModel as e:
                return error_response(e.status, e.reason, ["model"], e.msg)
            out = await self._submit([item_of(np.asarray(signal))])
            return out if isinstance(out, Response) else out[0]

        @bentoml.api
        async def predict_batch(
            self,
            signals: SignalBatch,  # type: ignore[valid-type]
            model: ModelName | None = None,  # type: ignore[valid-type]
        ) -> BatchPrediction:
            """Fault probabilities of many signals; concurrent requests share model calls."""
            try:
                self._group(model)
            except UnknownModel as e:
                return error_response(e.status, e.reason, ["model"], e.msg)
            out = await self._submit(items_of([np.asarray(s.root) for s in signals], signals))
            return out if isinstance(out, Response) else BatchPrediction(predictions=out)

    else:

        @bentoml.api
        def predict(self, signal: SignalValues) -> Prediction:  # type: ignore[valid-type]
            """Fault probability of one signal (any length within the limits)."""
            try:
                return self._answer_now([item_of(np.asarray(signal))])[0]
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
            return self._answer_now(items_of([np.asarray(s.root) for s in signals], signals))


# the models the bento carries: BentoML collects the class's BentoModel attributes
if SERVED is not None:
    FaultDetector.model_ref = SERVED.ref
else:
    for _i, _tag in enumerate(dict.fromkeys(s.tag for s in GROUPS.values())):  # two groups
        setattr(FaultDetector, f"model_ref_{_i}", bentoml.models.BentoModel(_tag))  # one model
FaultDetector = bentoml.service(
    name="faultwatch",
    workers=1,
    traffic={"timeout": 30},
    logging={"access": {"enabled": SETTINGS.access_log}},
    tracing={} if SETTINGS.trace_predictions else {"excluded_urls": list(PREDICTION_ROUTES)},
)(FaultDetector)


def _count_rejection(reason: str) -> None:
    service_metrics().rejected.labels(reason=reason).inc()


FaultDetector.add_asgi_middleware(
    RequestGuard,
    paths=ROUTES,
    max_body_bytes=LIMITS.max_body_bytes,
    max_drain_bytes=SETTINGS.max_drain_bytes,
    log_factory=open_process_log,
    on_reject=_count_rejection,
    binary_paths=PREDICTION_ROUTES,
    credentials={"/feedback": LABELLERS}
    | dict.fromkeys(PREDICTION_ROUTES if CLIENTS is not None else (), CLIENTS),
)
FaultDetector.add_asgi_middleware(BinarySignals, paths=PREDICTION_ROUTES)  # inside the guard
FaultDetector.add_asgi_middleware(RefreshOnScrape, refresh=REALISED.refresh_quietly)
FaultDetector.add_asgi_middleware(
    ReadyBody,
    model_tag=str(SERVED.entry.tag) if SERVED is not None else None,
    models={g: s.tag for g, s in GROUPS.items()} if SERVED is None else None,
)
FaultDetector.add_asgi_middleware(ModelsPage, info=CACHE.info)
