"""The service's units of work and its refusals: one queued signal (`Item`), what one model call
gives for it (`Scored`), a model failure that stays with its request, and the 5xx answers."""

from __future__ import annotations

import itertools
import logging
from typing import Any, NamedTuple

import numpy as np
from starlette.responses import Response

from faultwatch.errors import FaultwatchError
from faultwatch.serve.batching import Overloaded
from faultwatch.serve.guard import error_body
from faultwatch.serve.identity import RequestIdentity
from faultwatch.serve.predlog import PredictionLogError

logger = logging.getLogger("faultwatch.serve.service")  # the service's log lines, as before
REQUESTS = itertools.count()  # the number a request's signals share (Item.request)


class Item(NamedTuple):
    """One queued signal."""

    values: np.ndarray
    received: float  # when its request was validated
    endpoint: str
    request: int  # the signals of one request share this number
    index: int | None  # position in a predict_batch request; None for predict
    identity: RequestIdentity  # the request's X-Request-ID and role


class Scored(NamedTuple):
    """What one model call gives for a signal: what is answered, and what is only logged."""

    probability: float
    # None with monitoring off (bench/logging_cost.py), and for a classical model (none)
    embedding: np.ndarray | None
    features: list[float] | None


class ModelFailure(FaultwatchError):
    """The model could not give a probability for this request's signal."""

    def __init__(self, loc: list[str | int], msg: str):
        super().__init__(msg)
        self.loc = loc


def model_failures(
    items: list[Item], outcomes: list[Scored | Exception]
) -> dict[int, ModelFailure]:
    """The failure of each request with a signal the model failed on (its first), by request
    number: every signal of that request gets it, and none of them is logged."""
    failed: dict[int, ModelFailure] = {}
    for it, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, Exception) and it.request not in failed:
            loc: list[str | int] = ["signal"] if it.index is None else ["signals", it.index]
            where = ".".join(map(str, loc))
            logger.error("model call failed for %s of request %d: %r", where, it.request, outcome)
            failed[it.request] = ModelFailure(loc, f"the model failed on this signal: {outcome}")
    return failed


def error_response(status: int, reason: str, loc: list[Any], msg: str) -> Response:
    """An error answer in the guard's one shape (faultwatch.serve.guard.error_body)."""
    return Response(
        error_body(status, reason, loc, msg), status_code=status, media_type="application/json"
    )


def refusal(e: Exception) -> Response:
    """The 5xx answer to a prediction that could not be given, with its reason."""
    if isinstance(e, ModelFailure):
        return error_response(500, "model_failure", e.loc, str(e))
    if isinstance(e, PredictionLogError):
        logger.error("prediction log: %s", e)
        msg = f"the prediction could not be recorded, so it is not answered: {e}"
        return error_response(503, "prediction_log_unavailable", [], msg)
    if isinstance(e, Overloaded):
        return error_response(503, "overloaded", [], f"overloaded: {e}")
    return error_response(503, "shutting_down", [], str(e))


def feedback_refusal(
    items: list[tuple[str, str]],
    single: bool,
    classes: tuple[str, str],
    version: str,
    role: str,
) -> Response | None:
    """The answer refusing a /feedback request before anything is written, else None: a shadow
    copy (the live colour records the labels; 409), or a label that is not one of the model's
    classes (422, naming the item)."""
    if role == "shadow":  # a copy of a live request
        msg = "feedback is recorded from live requests only, not from a shadow copy"
        return error_response(409, "shadow_feedback", ["header", "X-Faultwatch-Role"], msg)
    for i, (_, lab) in enumerate(items):
        if lab not in classes:
            msg = f"{lab!r} is not a class of model {version}: expected one of " + ", ".join(
                map(repr, classes)
            )
            return error_response(
                422, "not_a_class", ["label"] if single else ["labels", i, "label"], msg
            )
    return None
