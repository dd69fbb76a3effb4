"""The model-call half of the service (faultwatch.serve.service.FaultDetector's base): which
group a request asks for, one model call per micro-batch of a group, the answer and the log
entry of each signal, every answered row committed before its answer leaves.

Failures stay with their request. A model call that fails for a micro-batch is retried signal
by signal; only the request whose signal fails gets the error (500, naming the signal). A
group whose model cannot be loaded answers 503 naming it (model_unavailable); a log that cannot
be written answers 503 and no prediction.
"""

from __future__ import annotations

import functools
import random
import time

import anyio.to_thread
import numpy as np
from starlette.responses import Response

from faultwatch.features import monitor_features
from faultwatch.serve.answers import (
    REQUESTS,
    Item,
    ModelFailure,
    Scored,
    error_response,
    logger,
    model_failures,
    refusal,
)
from faultwatch.serve.batching import BatchCancelled, MicroBatcher, Overloaded, run_isolated
from faultwatch.serve.binary import read_npy, signals_of
from faultwatch.serve.channels import ChannelError, ChannelSpec, UnivariateSpec
from faultwatch.serve.embedding import proba_and_embedding
from faultwatch.serve.fleet import (
    Described,
    ModelCache,
    ModelUnavailable,
    UnknownModel,
    chosen_group,
)
from faultwatch.serve.identity import chose, current, new_id
from faultwatch.serve.metrics import ServiceMetrics
from faultwatch.serve.predlog import (
    InputSummary,
    LoggedPrediction,
    PredictionLog,
    PredictionLogError,
)
from faultwatch.serve.process import FLEET, GROUPS, SETTINGS, SPECS
from faultwatch.serve.schema import BatchPrediction, Prediction
from faultwatch.signal_quality import OK, UNSCORED, quality_of


class Answering:
    """Set by the service's __init__: cache, groups, log, monitoring, log_signals, _sampler,
    metrics, _batchers."""

    cache: ModelCache
    groups: list[str]
    log: PredictionLog
    monitoring: bool
    log_signals: float
    _sampler: random.Random
    metrics: ServiceMetrics
    _batchers: dict[str, MicroBatcher[Item, Prediction]]

    @property
    def model(self):  # noqa: ANN201 - LoadedModel (torch)
        return self.cache.get(self.groups[0])

    @property
    def threshold(self) -> float:
        return self._described(self.groups[0]).threshold

    @property
    def version(self) -> str:
        return self._described(self.groups[0]).version

    def _described(self, group: str) -> Described:
        d = GROUPS[group].described
        if d is None:
            raise ModelUnavailable(group, GROUPS[group].error or "not described")
        return d

    def _score(self, signals: list[np.ndarray], group: str | None = None) -> list[Scored]:
        """One model call (probability and embedding, none for a classical model) and the
        monitor's features of the batch; raises if any probability is not finite."""
        model = self.cache.get(group or self.groups[0])
        if not self.monitoring:
            proba = np.asarray(model.predict_proba(signals), dtype="float64")
            emb, feats = [None] * len(signals), [None] * len(signals)
        else:
            proba, emb = proba_and_embedding(model, signals)
            emb = [None] * len(signals) if emb is None else emb  # a classical model has none
            feats = monitor_features(signals).tolist()
        if not np.all(np.isfinite(proba)):
            raise ValueError("the model returned a non-finite probability")
        return [Scored(*x) for x in zip(proba.tolist(), emb, feats, strict=True)]

    def _sampled(self) -> bool:
        """Whether to log this signal raw (a share FAULTWATCH_LOG_SIGNALS of them)."""
        return self.log_signals > 0 and self._sampler.random() < self.log_signals

    def _answer(
        self, items: list[Item], group: str | None = None
    ) -> list[Prediction | ModelFailure]:
        """One model call for `items` (signal by signal if it fails); the answered rows are
        committed to the log before returning. A request with a failing signal gets that
        failure for all its signals, and none of them is logged."""
        group = group or self.groups[0]
        self.cache.get(group)  # loaded before the call: a load failure is no signal's failure
        outcomes = run_isolated(
            functools.partial(self._score, group=group), [it.values for it in items]
        )
        failed = model_failures(items, outcomes)
        answers: list[Prediction | ModelFailure] = []
        entries, now = [], time.perf_counter()
        for it, scored in zip(items, outcomes, strict=True):
            if it.request in failed:
                answers.append(failed[it.request])
                continue
            answer, entry = self._answered(group, it, scored, now - it.received, len(items))
            answers.append(answer)
            entries.append(entry)
        self.log.append(entries)  # raises PredictionLogError: then no answer of the batch leaves
        for e in entries:
            self.metrics.answered(e.model_version, e.label, e.is_fault, e.quality, group)
        return answers

    def _answered(
        self, group: str, it: Item, scored: Scored, waited_s: float, batch_size: int
    ) -> tuple[Prediction, LoggedPrediction]:
        """The answer for one signal the model scored, and its log entry (the probability is
        logged also when the signal's quality leaves it unscored)."""
        d = self._described(group)
        p = scored.probability
        quality = quality_of(it.values, d.quality, d.channels)
        scored_answer = quality == OK or d.quality.score_bad_signals
        fault = scored_answer and p >= d.threshold
        healthy_label, fault_label = d.class_names
        label = (fault_label if fault else healthy_label) if scored_answer else UNSCORED
        prediction_id = new_id()
        answer = Prediction(
            probability=p if scored_answer else None,
            label=label,
            is_fault=fault if scored_answer else None,
            threshold=d.threshold,
            model_version=d.version,
            prediction_id=prediction_id,
            quality=quality,
            model=group if FLEET is not None else None,
        )
        entry = LoggedPrediction(
            endpoint=it.endpoint,
            model_version=d.version,
            summary=InputSummary.of(it.values),
            probability=p,
            label=label,
            is_fault=fault,
            threshold=d.threshold,
            latency_ms=waited_s * 1e3,
            batch_size=batch_size,
            prediction_id=prediction_id,
            quality=quality,
            request_id=it.identity.request_id,
            role=it.identity.role,
            features=scored.features,
            embedding=scored.embedding,
            signal=it.values if self._sampled() else None,
            channels=d.channels,
            model=group,
        )
        return answer, entry

    @property
    def _batcher(self) -> MicroBatcher[Item, Prediction]:
        """The single model's batcher (tests read its batch sizes)."""
        return self._batcher_of(self.groups[0])

    def _batcher_of(self, group: str) -> MicroBatcher[Item, Prediction]:
        """One per group (a batch is one model call), created on first use, inside the
        server's event loop."""
        b = self._batchers.get(group)
        if b is None:
            b = self._batchers[group] = MicroBatcher(
                functools.partial(self._answer, group=group),
                max_batch=SETTINGS.batch_size,
                max_queue=SETTINGS.max_queue,
            )
        return b

    def _group(self, model: str | None) -> str:
        """The group this request asks for (UnknownModel: 404 or 422 listing them)."""
        group = chosen_group(self.groups, model, current().model)
        chose(group)  # the guard's `rejected` row names it, should the answer be a refusal
        return group

    async def _submit(
        self, items: list[Item], group: str | None = None
    ) -> list[Prediction] | Response:
        group = group or self.groups[0]
        try:
            if GROUPS[group].model is None:  # cold: load in a thread, once for all who wait
                await anyio.to_thread.run_sync(self.cache.get, group)
            return await self._batcher_of(group).submit(items)
        except ModelUnavailable as e:
            logger.error("%s", e)
            return error_response(503, "model_unavailable", ["model"], str(e))
        except (ModelFailure, Overloaded, PredictionLogError, BatchCancelled) as e:
            return refusal(e)

    async def answer_binary(self, body: bytes, batch: bool) -> Response:
        """A /predict (`batch` False) or /predict_batch request whose body is `.npy`
        (faultwatch.serve.binary): read, checked by the JSON body's rules, and answered as its
        JSON form is, through the same batcher and log. The group: X-Faultwatch-Model."""
        try:
            group = self._group(None)
            spec = self._spec(group)
            channels = spec.names if isinstance(spec, ChannelSpec) else None
            signals = signals_of(read_npy(body), batch, channels, spec.limits)
        except UnknownModel as e:
            return error_response(e.status, e.reason, ["model"], e.msg)
        except ModelUnavailable as e:
            return error_response(503, "model_unavailable", ["model"], str(e))
        except ChannelError as e:
            return error_response(e.status, e.reason, e.loc, e.msg)
        received, who, request = time.perf_counter(), current(), next(REQUESTS)
        endpoint = "predict_batch" if batch else "predict"
        items = [
            Item(v, received, endpoint, request, i if batch else None, who)
            for i, v in enumerate(signals)
        ]
        out = await self._submit(items, group)
        if isinstance(out, Response):
            return out
        answer = BatchPrediction(predictions=out) if batch else out[0]
        return Response(answer.model_dump_json(), media_type="application/json")

    def _answer_now(self, items: list[Item]) -> list[Prediction]:
        """`_answer` for BentoML's own batching, which cannot answer one request apart."""
        answers = self._answer(items)
        for a in answers:
            if isinstance(a, Exception):
                raise a
        return answers  # type: ignore[return-value]

    def _spec(self, group: str) -> UnivariateSpec | ChannelSpec:
        spec = SPECS.get(group)
        if spec is None:
            raise ModelUnavailable(group, GROUPS[group].error or "not described")
        return spec


def item_of(values: np.ndarray) -> Item:
    """The one signal of a /predict request, validated now."""
    return Item(values, time.perf_counter(), "predict", next(REQUESTS), None, current())


def items_of(values: list[np.ndarray], stamped: list) -> list[Item]:
    """The signals of one /predict_batch request (`stamped`: its validated items)."""
    request = next(REQUESTS)
    return [
        Item(v, s._received, "predict_batch", request, i, s._identity)
        for i, (v, s) in enumerate(zip(values, stamped, strict=True))
    ]
