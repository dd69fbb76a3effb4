"""`/readyz` with a body: BentoML answers its readiness probe with an empty line, so `curl
localhost:3000/readyz` printed nothing. A ready server now answers 200 with
{"status": "ready", "model_tag": ...}; the status codes stay BentoML's (503 while not ready,
with BentoML's own body)."""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]


def ready_body(model_tag: str | None, models: dict[str, str] | None = None) -> bytes:
    """A single model's tag, or a fleet's groups and tags (loaded or not: /readyz does not wait
    for a cold group)."""
    body: dict[str, Any] = {"status": "ready", "model_tag": model_tag}
    if models is not None:
        body["models"] = models
    return (json.dumps(body) + "\n").encode()


class ReadyBody:
    """ASGI middleware: a 200 from `path` gets `ready_body` instead of BentoML's empty line."""

    def __init__(
        self,
        app: Callable,
        model_tag: str | None,
        path: str = "/readyz",
        models: dict[str, str] | None = None,
    ):
        self.app, self.path, self.body = app, path, ready_body(model_tag, models)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable):
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        ready = False

        async def replace(message: Message) -> None:
            nonlocal ready
            if message["type"] == "http.response.start" and message["status"] == 200:
                ready = True
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"content-length", b"content-type")
                ]
                kept += [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(self.body)),
                ]
                message = {**message, "headers": kept}
            elif message["type"] == "http.response.body" and ready:
                if message.get("more_body", False):
                    return  # the new body goes out whole with the last part
                message = {**message, "body": self.body}
            await send(message)

        await self.app(scope, receive, replace)


class ModelsPage:
    """ASGI middleware: `GET /models`, the bento's model groups (faultwatch.serve.fleet): each
    group's tag and version, whether it is loaded, its last load's seconds, its error if it
    cannot be served; and the bound on loaded models. A single model's bento lists its one."""

    def __init__(self, app: Callable, info: Callable[[], dict[str, Any]], path: str = "/models"):
        self.app, self.info, self.path = app, info, path

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable):
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            body, status = b'{"error": "GET /models"}\n', 405
        else:
            body, status = (json.dumps(self.info()) + "\n").encode(), 200
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
