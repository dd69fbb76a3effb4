"""A free TCP port on the loopback interface."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (another process may still take it before we bind it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
