"""`/readyz` with a body: BentoML answers its readiness probe with an empty line, so `curl
localhost:3000/readyz` printed nothing. A ready server now answers 200 with
{"status": "ready", "model_tag": ...}; the status codes stay BentoML's (503 while not ready,
with BentoML's own body)."""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]


def ready_body(model_tag: str) -> bytes:
    return (json.dumps({"status": "ready", "model_tag": model_tag}) + "\n").encode()


class ReadyBody:
    """ASGI middleware: a 200 from `path` gets `ready_body` instead of BentoML's empty line."""

    def __init__(self, app: Callable, model_tag: str, path: str = "/readyz"):
        self.app, self.path, self.body = app, path, ready_body(model_tag)

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
