"""An ASGI middleware in front of the prediction endpoints: method, content type, request size,
readable errors, and the rejected-requests table.

BentoML answers a body that fails pydantic validation with a 400 naming the errors, but parses
any content type as JSON and reads a body of any size. This middleware answers 405 to a method
other than POST, 415 to a content type other than JSON (or `.npy` on `binary_paths`:
faultwatch.serve.binary) and 413 to a body over the limit. Every 4xx of the guarded paths has
one shape, {"error": "<field>: <message> (<rule>)", "detail": [{"type", "loc", "msg"}, ...]}
(a `loc` of ["body"] is the body as a whole), and is recorded in the prediction log's
`rejected` table before it is sent. A 5xx the service gives (model_failure, overloaded,
shutting_down) is recorded there too, unchanged; prediction_log_unavailable cannot be. Every
refusal is also passed to `on_reject` (faultwatch_rejected_total{reason}). The guarded paths
include /feedback; those given `credentials` take a bearer token before the body is read.

One refusal, one log line: every 4xx is logged at WARNING as one line naming the status, the
rule, the field and the request id (the service logs its own 5xx), and BentoML's traceback of
the validation error behind a 400 is dropped (faultwatch.serve.logs.quiet_client_errors).

Request identity (faultwatch.serve.identity): the guard reads `X-Request-ID` and
`X-Faultwatch-Role` first, answers 400 naming the header and its rule to a bad value, makes
the identity visible to the service for the request, writes it into every `rejected` row, and
echoes the request id in every answer of the guarded paths, errors included.

Refusing before the body is read. Most HTTP clients (urllib, requests, httpx) send the whole
body before they read the answer; a server that answers and closes while they are still sending
gives them a broken pipe or a connection reset instead of the answer. So a refused request's
body is read and discarded first, up to `max_drain_bytes` (default 64 MiB,
FAULTWATCH_MAX_DRAIN_BYTES), then the answer is sent. A body declared (Content-Length) or found
to be larger than that bound is not read further: the answer is sent and the connection closed,
which cuts such a client off. A client that asks to go ahead first (`Expect: 100-continue`,
curl's default for large bodies) gets the refusal at once and sends nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

import anyio.to_thread

from faultwatch.serve.credentials import CHALLENGE, Credentials, authenticate
from faultwatch.serve.identity import (
    CHOSEN,
    CURRENT,
    DEFAULT_ROLE,
    REQUEST_ID_HEADER,
    ROLE_HEADER,
    BadHeader,
    RequestIdentity,
    identity_of,
    new_id,
)
from faultwatch.serve.logs import refusal_line
from faultwatch.serve.predlog import ROLES, PredictionLog

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = ("application/json",)
NPY_TYPE = "application/x-npy"  # faultwatch.serve.binary's (which imports this module)
DRAIN_BYTES = 64 * 1024 * 1024
MAX_DETAILS = 50  # a signal of 100 000 strings would otherwise give a 10 MB error body
# a 5xx with this reason is not recorded: the log is what failed (it would wait its timeout again)
UNRECORDABLE = "prediction_log_unavailable"
RULE_OF_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
}


def error_body(status: int, reason: str, loc: list[Any], msg: str) -> bytes:
    """The shape of every error answer: {"error", "detail": [{type, loc, msg}]}; `error` names
    the field and the rule where there is a field (`loc`)."""
    error = f"{'.'.join(map(str, loc))}: {msg} ({reason})" if loc else msg
    return json.dumps(
        {"error": error, "detail": [{"type": reason, "loc": loc, "msg": msg}]}
    ).encode()


def readable_error(status: int, body: bytes) -> bytes:
    """A 4xx body rewritten to the one shape: `error` names the first error's field and rule.

    BentoML gives {"error": "1 validation error for Input", "detail": [...]} for a validation
    error, [{"error": msg}] for its own exceptions and plain text for routing errors."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = body.decode("utf-8", "replace").strip()
    if isinstance(data, list) and len(data) == 1:  # BentoML wraps some errors in a 1-tuple
        data = data[0]
    rule = RULE_OF_STATUS.get(status, "client_error")
    details: list[dict[str, Any]] = []
    if isinstance(data, dict) and isinstance(data.get("detail"), list):
        details = [dict(d) for d in data["detail"] if isinstance(d, dict)]
    if not details:
        msg = data.get("error") if isinstance(data, dict) else data
        details = [{"type": rule, "loc": ["body"], "msg": str(msg or HTTPStatus(status).phrase)}]
    for d in details:
        d["loc"] = list(d.get("loc") or ["body"])  # [] is the body as a whole
        d.setdefault("type", rule)
        d.setdefault("msg", "")
    first = details[0]
    where = ".".join(str(p) for p in first["loc"])
    error = f"{where}: {first['msg']} ({first['type']})"
    if len(details) > 1:
        error += f"; and {len(details) - 1} more"
    shown = details[:MAX_DETAILS]
    return json.dumps({"error": error, "detail": shown}).encode()


def reason_of(body: bytes) -> tuple[str, str]:
    """(rules, message) of an error answer in the shape of `readable_error`, for the log."""
    try:
        detail = json.loads(body)["detail"]
        first = detail[0]
        loc = ".".join(str(p) for p in first.get("loc", []))
        types = sorted({str(d.get("type")) for d in detail if isinstance(d, dict)})
        return ",".join(types), f"{loc}: {first.get('msg', '')}".strip(": ")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "unknown", body[:200].decode("utf-8", "replace")


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        paths: tuple[str, ...],
        max_body_bytes: int,
        max_drain_bytes: int = DRAIN_BYTES,
        log_factory: Callable[[], PredictionLog] | None = None,
        on_reject: Callable[[str], None] | None = None,
        credentials: dict[str, Credentials | None] | None = None,
        binary_paths: tuple[str, ...] = (),
    ):
        self.app, self.binary_paths = app, frozenset(binary_paths)
        self.credentials = dict(credentials or {})  # path -> its tokens (None: none configured)
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes
        self.max_drain_bytes = max(max_drain_bytes, max_body_bytes)
        self._log_factory = log_factory
        self._log: PredictionLog | None = None
        self._on_reject = on_reject  # called with each refusal's reason (a metric counts them)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        bad: BadHeader | None = None
        try:
            ident = identity_of(headers)
        except BadHeader as e:
            bad = e
            role = headers.get(ROLE_HEADER.lower(), DEFAULT_ROLE)
            ident = RequestIdentity(new_id(), role if role in ROLES else DEFAULT_ROLE)
        echoed = (REQUEST_ID_HEADER.lower().encode(), ident.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != echoed[0]]
                message = {**message, "headers": [*kept, echoed]}
            await send(message)

        token, chosen = CURRENT.set(ident), CHOSEN.set({})
        try:
            await self._guard(scope, receive, send_with_id, headers, bad)
        finally:
            CURRENT.reset(token)
            CHOSEN.reset(chosen)

    async def _guard(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        bad: BadHeader | None,
    ) -> None:
        path = scope["path"]
        early = self._refusal_before_body(scope, headers, bad)
        if early is None and path in self.credentials:  # the token's name: the request's who
            early = authenticate(self.credentials[path], path, headers)
        if early is not None:
            return await self._refuse_unread(receive, send, path, headers, *early)
        body = await self._read_body(receive, send, path)
        if body is None:  # the client went away, or the body was too large (answered)
            return None
        await self.app(scope, _replay(body, receive), self._recording(send, path, len(body)))

    def _refusal_before_body(
        self, scope: Scope, headers: dict[str, str], bad: BadHeader | None
    ) -> tuple[int, str, list[Any], str] | None:
        """(status, rule, loc, message) of a request refused on its headers alone, else None."""
        path = scope["path"]
        if bad is not None:
            return 400, "invalid_header", ["header", bad.header], str(bad)
        if scope["method"] != "POST":
            msg = f"{scope['method']} is not allowed on {path}: use POST"
            return 405, "method_not_allowed", ["method"], msg
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in JSON_TYPES and not (ctype == NPY_TYPE and path in self.binary_paths):
            npy = f" (or {NPY_TYPE})" if path in self.binary_paths else ""
            msg = f"Content-Type must be application/json{npy}, got {ctype or 'none'}"
            return 415, "unsupported_media_type", ["body"], msg
        declared = _int(headers.get("content-length"))
        if declared is not None and declared > self.max_body_bytes:
            return 413, "body_too_large", ["body"], self._too_large(declared, exact=True)
        return None

    async def _read_body(self, receive: Receive, send: Send, path: str) -> bytes | None:
        """The whole body, held in memory no further than the limit. None when the client went
        away, or when the body passed the limit (then answered 413 here)."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:  # no Content-Length: the size shows only now
                seen, complete = len(body), not more
                if more:
                    drained = await self._drain(receive, seen)
                    if drained is None:
                        return None
                    seen, complete = drained
                msg = self._too_large(seen, exact=complete)
                await self._answer_refusal(
                    send, path, 413, "body_too_large", ["body"], msg, seen, complete
                )
                return None
            if not more:
                return bytes(body)

    def _recording(self, send: Send, path: str, size: int) -> Send:
        """`send` for the app: an error answer is held until its body is read, then recorded;
        a 4xx is rewritten to the one shape first, a 5xx is sent as it is."""
        start: Message | None = None  # an error answer's start, held until its body is read
        error = bytearray()

        async def watch(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                return await send(message)
            error.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = start["status"]
            if status >= 500:  # the service's own refusal: recorded, sent as it is
                rule, msg = reason_of(bytes(error))
                if rule != UNRECORDABLE:
                    await self._record(path, status, rule, msg, size)
                else:
                    self._count(rule)
                await send(start)
                await send({"type": "http.response.body", "body": bytes(error)})
                return
            new = readable_error(status, bytes(error))
            rule, msg = reason_of(new)
            await self._record(path, status, rule, msg, size)  # recorded before the answer ends
            kept = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-length", b"content-type")
            ]
            kept += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(new))]
            await send({**start, "headers": kept})
            await send({"type": "http.response.body", "body": new})

        return watch

    def _too_large(self, size: int, exact: bool) -> str:
        shown = f"{size} bytes" if exact else f"more than {size} bytes"
        return f"request body is {shown}; the limit is {self.max_body_bytes} bytes"

    async def _drain(self, receive: Receive, seen: int) -> tuple[int, bool] | None:
        """Read and discard the rest of a body: (bytes in all, whether the body ended) once it
        ends or passes `max_drain_bytes`; None if the client went away."""
        while seen <= self.max_drain_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return seen, True
        return seen, False

    async def _refuse_unread(
        self,
        receive: Receive,
        send: Send,
        path: str,
        headers: dict[str, str],
        status: int,
        reason: str,
        loc: list[Any],
        msg: str,
    ) -> None:
        """Refuse a request whose body has not been read (see the module docstring)."""
        declared = _int(headers.get("content-length"))
        waits = headers.get("expect", "").lower() == "100-continue"
        if waits or (declared is not None and declared > self.max_drain_bytes):
            size, complete = declared, False
        else:
            drained = await self._drain(receive, 0)
            if drained is None:
                return None
            size, complete = drained
        extra = {405: [(b"allow", b"POST")], 401: [CHALLENGE]}.get(status, [])
        await self._answer_refusal(send, path, status, reason, loc, msg, size, complete, extra)

    async def _answer_refusal(
        self,
        send: Send,
        path: str,
        status: int,
        reason: str,
        loc: list[Any],
        msg: str,
        size: int | None,
        complete: bool,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = error_body(status, reason, loc, msg)
        await self._record(path, status, *reason_of(body), size)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *(extra or []),
        ]
        if not complete:  # the rest of the body is not wanted: close after the answer
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _record(self, path: str, status: int, reason: str, msg: str, size: int | None):
        """A `rejected` row, with the identity of the request being answered, and its log line."""
        self._count(reason)
        ident = CURRENT.get() or RequestIdentity(new_id())
        if status < 500:  # the service logs its own 5xx (model failure, overload) as errors
            # WARNING: `bentoml serve` shows its root logger from WARNING up
            logger.warning(refusal_line(path, status, reason, msg, ident.request_id))
        if self._log_factory is None:
            return
        try:
            if self._log is None:
                self._log = self._log_factory()
            model = (CHOSEN.get() or {}).get("model") or ident.model
            await anyio.to_thread.run_sync(
                self._log.reject,
                path,
                status,
                reason,
                msg,
                size,
                ident.request_id,
                ident.role,
                model,
            )
        except Exception:  # a log failure must not turn a 4xx into a 5xx
            logger.exception("could not record a rejected request in the prediction log")

    def _count(self, reason: str) -> None:
        if self._on_reject is None:
            return
        try:
            self._on_reject(reason)
        except Exception:  # a metric must not fail the answer
            logger.exception("could not count a rejected request")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect

    return replay
