"""Who asked: the request's id and role, read from its headers by the guard, seen by the service.

`X-Request-ID` is the router's id for a request (the client's, or one the router made); the
service echoes it in the answer and writes it beside every prediction, so a live answer and its
shadow twin (the router sends the same id to both colours) can be joined in the prediction log.
A request without one gets a uuid4 hex. An id is at most 128 characters of [A-Za-z0-9._:-]: it
goes into logs and headers, where anything else could forge lines or headers.

`X-Faultwatch-Role` says why the request came: `live` (a client's, the default), `shadow` (a
copy of live traffic sent to the staged colour, whose answer nobody reads) or `smoke` (the
deploy smoke test). Analyses read the role to keep copies and tests out of live figures.

The guard (an ASGI middleware) sets `CURRENT` for the request's task; the endpoint, the
validation of its body (which stamps each signal) and the threads BentoML runs sync endpoints
in (anyio copies the context) all read it.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from faultwatch.serve.predlog import ROLES

REQUEST_ID_HEADER = "X-Request-ID"
ROLE_HEADER = "X-Faultwatch-Role"
# the group a fleet bento answers with (faultwatch.serve.fleet; "model" in the body wins ties)
MODEL_HEADER = "X-Faultwatch-Model"
MODEL_RULE = re.compile(r"[A-Za-z0-9._-]{1,100}")
MAX_REQUEST_ID = 128
REQUEST_ID_RULE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID}}}")
DEFAULT_ROLE = "live"


class BadHeader(ValueError):
    """A request header holds a value the service does not accept."""

    def __init__(self, header: str, msg: str):
        super().__init__(msg)
        self.header = header


@dataclass(frozen=True)
class RequestIdentity:
    request_id: str
    role: str = DEFAULT_ROLE
    model: str | None = None  # X-Faultwatch-Model: the group a fleet bento should answer with
    who: str | None = None  # the name of the caller's bearer token (faultwatch.serve.credentials)


def new_id() -> str:
    """A fresh id: uuid4 hex, 32 characters (prediction ids and generated request ids)."""
    return uuid.uuid4().hex


def identity_of(headers: dict[str, str]) -> RequestIdentity:
    """The identity in `headers` (lower-case names); raises BadHeader naming the header and
    the rule. A missing or empty X-Request-ID gets a new id; a missing role is `live`."""
    request_id = headers.get(REQUEST_ID_HEADER.lower(), "")
    if request_id == "":
        request_id = new_id()
    elif not REQUEST_ID_RULE.fullmatch(request_id):
        shown = request_id if len(request_id) <= 40 else request_id[:40] + "..."
        raise BadHeader(
            REQUEST_ID_HEADER,
            f"must be 1 to {MAX_REQUEST_ID} characters of A-Z a-z 0-9 . _ : - "
            f"(got {len(request_id)} characters: {shown!r})",
        )
    role = headers.get(ROLE_HEADER.lower(), DEFAULT_ROLE)
    if role not in ROLES:
        raise BadHeader(ROLE_HEADER, f"must be one of {', '.join(ROLES)} (got {role[:40]!r})")
    model = headers.get(MODEL_HEADER.lower()) or None
    if model is not None and not MODEL_RULE.fullmatch(model):
        raise BadHeader(
            MODEL_HEADER,
            f"must be 1 to 100 characters of A-Z a-z 0-9 . _ - (got {model[:40]!r})",
        )
    return RequestIdentity(request_id, role, model)


# an endpoint called outside the guard (a test calling the class) is a live request without id
CURRENT: ContextVar[RequestIdentity | None] = ContextVar("faultwatch_request", default=None)


# the model group the service chose for the request being served (a fleet bento): the guard
# sets a fresh holder per request, the service fills it, the guard's `rejected` row reads it
CHOSEN: ContextVar[dict[str, str] | None] = ContextVar("faultwatch_chosen", default=None)


def chose(group: str) -> None:
    """Record the group this request is answered by (for the guard's `rejected` row)."""
    holder = CHOSEN.get()
    if holder is not None:
        holder["model"] = group


def current() -> RequestIdentity:
    """The identity of the request being served (a new id when no guard set one)."""
    return CURRENT.get() or RequestIdentity(new_id())
