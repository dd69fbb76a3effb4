"""What the server logs about refused requests: one line each (the guard's), and none of
BentoML's tracebacks of a client's error, which give one traceback entry per bad sample (about
600 lines for a signal of 200 NaN)."""

from __future__ import annotations

import logging

# BentoML logs the exception behind every error answer, with its traceback, here
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class _ClientErrorTracebacks(logging.Filter):
    """Drops BentoML's "Exception on <path>" records whose exception is a client's error (a
    pydantic ValidationError, a BentoMLException below 500): the guard logs the 4xx itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return False
        code = getattr(getattr(exc, "error_code", None), "value", 500)
        return not (isinstance(exc, BentoMLException) and code < 500)


def quiet_client_errors() -> None:
    """Install the filter above (once) in this process: a 4xx is the guard's one line."""
    logger_ = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, _ClientErrorTracebacks) for f in logger_.filters):
        logger_.addFilter(_ClientErrorTracebacks())


def refusal_line(path: str, status: int, reason: str, msg: str, request_id: str) -> str:
    """The one log line of a refused request: status, path, rule, field and message, id."""
    return f"refused {status} {path} ({reason}) {msg[:300]} request_id={request_id}"
