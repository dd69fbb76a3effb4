"""An ASGI middleware in front of the prediction endpoints: request size, content type, and
the rejected-requests table.

BentoML answers a body that fails pydantic validation with a 400 and the errors' locations and
rules, but it parses any content type as JSON and reads a body of any size into memory. This
middleware answers 415 to a non-JSON content type and 413 to a body over the limit (read no
further than the limit), and records every 4xx answer of the guarded paths in the prediction
log's `rejected` table, so monitoring can count malformed requests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from faultwatch.serve.predlog import PredictionLog

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = ("application/json",)


def error_body(status: int, reason: str, loc: list[str], msg: str) -> bytes:
    """The shape BentoML gives a validation error: {"error", "detail": [{type, loc, msg}]}."""
    return json.dumps({"error": msg, "detail": [{"type": reason, "loc": loc, "msg": msg}]}).encode()


def reason_of(body: bytes) -> tuple[str, str]:
    """(rule, message) of an error answer, for the rejected table."""
    try:
        data = json.loads(body)
        if isinstance(data, list) and data:  # BentoML wraps some errors in a 1-tuple
            data = data[0]
        detail = data.get("detail") if isinstance(data, dict) else None
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            loc = ".".join(str(p) for p in first.get("loc", []))
            types = sorted({str(d.get("type")) for d in detail if isinstance(d, dict)})
            return ",".join(types), f"{loc}: {first.get('msg', '')}".strip(": ")
        if isinstance(data, dict) and "error" in data:
            return "error", str(data["error"])
    except (ValueError, AttributeError):
        pass
    return "unknown", body[:200].decode("utf-8", "replace")


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        paths: tuple[str, ...],
        max_body_bytes: int,
        log_factory: Callable[[], PredictionLog] | None = None,
    ):
        self.app = app
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes
        self._log_factory = log_factory
        self._log: PredictionLog | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        if scope["method"] == "POST":
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in JSON_TYPES:
                shown = ctype or "none"
                msg = f"Content-Type must be application/json, got {shown}"
                return await self._refuse(send, path, 415, "unsupported_media_type", msg, None)
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit():
                if int(declared) > self.max_body_bytes:
                    return await self._refuse_size(send, path, int(declared))
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                if len(body) > self.max_body_bytes:
                    return await self._refuse_size(send, path, len(body))
                more = message.get("more_body", False)
            receive = _replay(bytes(body), receive)
            size = len(body)
        else:
            size = None

        status = 0
        error = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and 400 <= status < 500:
                error.extend(message.get("body", b"")[:4096])
                if not message.get("more_body", False):  # recorded before the answer ends
                    rule, msg = reason_of(bytes(error))
                    await self._record(path, status, rule, msg, size)
            await send(message)

        await self.app(scope, receive, watch)

    async def _refuse_size(self, send: Send, path: str, size: int) -> None:
        msg = f"request body is {size} bytes or more; the limit is {self.max_body_bytes} bytes"
        await self._refuse(send, path, 413, "body_too_large", msg, size)

    async def _refuse(
        self, send: Send, path: str, status: int, reason: str, msg: str, size: int | None
    ) -> None:
        body = error_body(status, reason, ["body"], msg)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),  # the rest of an unread body is not wanted
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        await self._record(path, status, reason, msg, size)

    async def _record(self, path: str, status: int, reason: str, msg: str, size: int | None):
        if self._log_factory is None:
            return
        try:
            if self._log is None:
                self._log = self._log_factory()
            await anyio.to_thread.run_sync(self._log.reject, path, status, reason, msg, size)
        except Exception:  # a log failure must not turn a 4xx into a 5xx
            logger.exception("could not record a rejected request in the prediction log")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect

    return replay
