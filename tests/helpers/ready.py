"""Waiting for a server: until it answers, until it exits, or until the time runs out; every
wait is bounded, and says which of these happened."""

from __future__ import annotations

import http.client
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest


class NotReady(AssertionError):
    """A server that did not become ready: its process exited first, or the time ran out."""


def answers(url: str, timeout_s: float = 2) -> bool:
    """Whether GET `url` answers 200 now (a refused, cut or failing request: not yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status == 200
    except (OSError, http.client.HTTPException):
        return False


def wait_for(
    ready: Callable[[], bool],
    timeout_s: float,
    proc: subprocess.Popen | None = None,
    interval_s: float = 0.25,
    t0: float | None = None,
) -> float:
    """Seconds from `t0` (default: now, on time.monotonic) until `ready()` is true, asked every
    `interval_s`; NotReady when `proc` exits first or `timeout_s` pass."""
    t0 = time.monotonic() if t0 is None else t0
    while True:
        if proc is not None and proc.poll() is not None:
            raise NotReady(f"exited ({proc.returncode})")
        if ready():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise NotReady(f"not ready in {timeout_s} s")
        time.sleep(interval_s)


def until_ready(
    url: str,
    timeout_s: float = 120,
    proc: subprocess.Popen | None = None,
    interval_s: float = 0.25,
    t0: float | None = None,
) -> float:
    """Seconds until `url`/readyz answers 200 (see `wait_for`)."""
    return wait_for(lambda: answers(f"{url}/readyz"), timeout_s, proc, interval_s, t0)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    """`url`/readyz answers 200; fails the test with the log's tail if `proc` exits first or
    `timeout_s` pass."""
    try:
        until_ready(url, timeout_s, proc)
    except NotReady as e:
        pytest.fail(f"server {e}:\n{log.read_text()[-4000:]}")


def wait_exit(proc: subprocess.Popen, log: Path, url: str | None, timeout_s: float) -> int:
    """The exit status of a process that must stop by itself; fails if it becomes ready or
    is still running after `timeout_s` (a restart loop)."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            pytest.fail(f"still running after {timeout_s} s:\n{log.read_text()[-4000:]}")
        if url is not None:
            ready = answers(f"{url}/readyz", timeout_s=1)
            assert not ready, f"the server became ready:\n{log.read_text()[-4000:]}"
        time.sleep(0.25)
    return proc.returncode
