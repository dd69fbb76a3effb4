"""Slow clients (slowloris) against a deployment's router.

`SlowClients(url, n)` holds `n` connections open to the router, each sending a request that
never ends, one byte every `byte_interval_s`: half send the request line and headers a byte at
a time (they never finish the headers), half send complete headers announcing a large body and
then the body a byte at a time (the router buffers a request's body before choosing a server,
`option http-buffer-request`). What the router does with them is counted: a connection it
answers or closes (HAProxy: `408 Request Time-out` after `timeout http-request`) is opened
again at once, so `n` stay open. Used by faultwatch.deploy.soak, the soak's slowloris phase.
"""

from __future__ import annotations

import selectors
import socket
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

BODY_BYTES = 1_000_000  # announced by a slow body; never sent


@dataclass
class _Conn:
    sock: socket.socket
    kind: str  # "headers" or "body"
    pending: bytes  # what it sends next, a byte at a time
    opened: float = field(default_factory=time.monotonic)


class SlowClients:
    """`n` slowloris connections to `url`'s host and port, from a thread of their own; a
    context manager (started on entering, stopped on leaving) or start()/stop()."""

    def __init__(self, url: str, n: int = 200, byte_interval_s: float = 1.0):
        parts = urlsplit(url)
        self.addr = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.n, self.byte_interval_s = n, byte_interval_s
        self.opened = 0
        self.failed_to_open = 0
        self.closed_by_router = 0
        self.answers: Counter[str] = Counter()  # the router's status lines to slow clients
        self.held_s: list[float] = []  # how long the router kept each one it closed
        self.bytes_sent = 0
        self.open_at_end = 0
        self._conns: dict[int, _Conn] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sel = selectors.DefaultSelector()

    # ---------------------------------------------------------------- connections
    def _payload(self, kind: str) -> tuple[bytes, bytes]:
        """(sent at once on connecting, sent a byte at a time)."""
        host = f"{self.addr[0]}:{self.addr[1]}"
        start = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        if kind == "headers":
            return b"", start.encode() + b"X-Slow: " + b"a" * 4096
        return (
            f"{start}Content-Length: {BODY_BYTES}\r\n\r\n".encode(),
            b'{"signal": [' + b" " * 4096,
        )

    def _open(self, kind: str) -> None:
        first, pending = self._payload(kind)
        sock = socket.socket()
        sock.settimeout(2.0)
        try:
            sock.connect(self.addr)
            if first:
                sock.sendall(first)
        except OSError:
            sock.close()
            self.failed_to_open += 1
            return
        sock.setblocking(False)
        conn = _Conn(sock, kind, pending)
        self._conns[sock.fileno()] = conn
        self._sel.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def _close(self, conn: _Conn, by_router: bool) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if by_router:
            self.closed_by_router += 1
            self.held_s.append(time.monotonic() - conn.opened)

    def _answered(self, conn: _Conn) -> bool:
        """Whether the router answered or closed `conn` (read what it sent)."""
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data.startswith(b"HTTP/"):
            self.answers[data.split(b"\r\n", 1)[0].decode(errors="replace")] += 1
        return True  # any answer to an unfinished request ends it: it is opened again

    def _tick(self) -> None:
        """One byte more on every connection."""
        for conn in list(self._conns.values()):
            if not conn.pending:
                conn.pending = b" " * 4096 if conn.kind == "body" else b"a" * 4096
            try:
                sent = conn.sock.send(conn.pending[:1])
            except BlockingIOError:
                continue
            except OSError:
                self._reopen(conn)
                continue
            conn.pending = conn.pending[sent:]
            self.bytes_sent += sent

    def _reopen(self, conn: _Conn) -> None:
        self._close(conn, by_router=True)
        if not self._stop.is_set():
            self._open(conn.kind)

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, min(next_tick - time.monotonic(), 0.2))
            for key, _ in self._sel.select(timeout):
                conn = self._conns.get(key.fd)
                if conn is not None and self._answered(conn):
                    self._reopen(conn)
            if time.monotonic() >= next_tick:
                self._tick()
                next_tick += self.byte_interval_s

    # ---------------------------------------------------------------- control
    def start(self) -> SlowClients:
        for k in range(self.n):
            self._open("headers" if k % 2 == 0 else "body")
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> SlowClients:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.open_at_end = len(self._conns)
        for conn in list(self._conns.values()):
            self._close(conn, by_router=False)
        self._sel.close()
        return self

    def __enter__(self) -> SlowClients:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def figures(self) -> dict:
        held = sorted(self.held_s)
        return {
            "clients": self.n,
            "byte_interval_s": self.byte_interval_s,
            "opened": self.opened,
            "failed_to_open": self.failed_to_open,
            "closed_by_router": self.closed_by_router,
            "router_answers": dict(self.answers),
            "held_median_s": statistics.median(held) if held else None,
            "held_max_s": held[-1] if held else None,
            "bytes_sent": self.bytes_sent,
            "open_at_end": self.open_at_end,
        }
