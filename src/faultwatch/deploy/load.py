"""Keep-alive clients for the deployment's tests and benchmark: N threads, each with one
persistent HTTP/1.1 connection, sending POST /predict with signals in turn and recording every
answer (when it was sent and received, status, which model answered, or the error)."""

from __future__ import annotations

import http.client
import itertools
import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Answer:
    sent: float  # time.time()
    done: float
    status: int  # 0: no HTTP answer (connection error)
    model_version: str | None
    request_id: str | None
    error: str | None = None
    # the router's X-Faultwatch-Server: blue, green, blue_b, green_b (replicas: blue_2, blue_2_b)
    server: str | None = None

    @property
    def colour(self) -> str | None:
        return self.server.split("_", 1)[0] if self.server else None

    @property
    def ms(self) -> float:
        return (self.done - self.sent) * 1e3


@dataclass
class Load:
    url: str
    bodies: list[bytes]
    concurrency: int = 16
    total: int | None = 3000
    duration_s: float | None = None
    timeout_s: float = 30.0
    rate: float | None = None  # requests/s in all (paced, open loop); None: as fast as answered
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._counter = itertools.count()
        self._timer: threading.Timer | None = None

    def _client(self, k: int = 0) -> None:
        parts = urlsplit(self.url)
        conn: http.client.HTTPConnection | None = None
        gap = self.concurrency / self.rate if self.rate else 0.0
        # paced clients are spread over the gap (client k starts k/rate late): arrivals come
        # one every 1/rate s, not in bursts of `concurrency` at once
        next_at = time.monotonic() + (k / self.rate if self.rate else 0.0) - gap
        while not self._stop.is_set():
            if gap:
                next_at += gap
                time.sleep(max(0.0, next_at - time.monotonic()))
            i = next(self._counter)
            if self.total is not None and i >= self.total:
                return
            body = self.bodies[i % len(self.bodies)]
            if conn is None:
                conn = http.client.HTTPConnection(
                    parts.hostname, parts.port, timeout=self.timeout_s
                )
            sent = time.time()
            try:
                conn.request(
                    "POST", "/predict", body=body, headers={"Content-Type": "application/json"}
                )
                r = conn.getresponse()
                data = r.read()
                version = None
                if r.status == 200:
                    version = json.loads(data).get("model_version")
                a = Answer(
                    sent,
                    time.time(),
                    r.status,
                    version,
                    r.getheader("X-Request-ID"),
                    None if r.status == 200 else data[:200].decode(errors="replace"),
                    r.getheader("X-Faultwatch-Server"),
                )
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                a = Answer(sent, time.time(), 0, None, None, f"{type(e).__name__}: {e}")
                conn.close()
                conn = None
            with self._lock:
                self.answers.append(a)
        if conn is not None:
            conn.close()

    def start(self) -> Load:
        if self.duration_s is not None:
            self._timer = threading.Timer(self.duration_s, self._stop.set)
            self._timer.daemon = True  # a finished run's timer does not hold the interpreter's exit
            self._timer.start()
        self._threads = [
            threading.Thread(target=self._client, args=(k,), daemon=True)
            for k in range(self.concurrency)
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:  # stopped with the load: no thread waits out duration_s
            self._timer.cancel()

    def join(self, timeout_s: float = 600) -> Load:
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.stop()
        return self

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def done(self) -> bool:
        return all(not t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ figures
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    def latency(self, since: float = 0.0, until: float = float("inf")) -> dict[str, float]:
        ms = sorted(a.ms for a in self.answers if a.status == 200 and since <= a.sent <= until)
        if not ms:
            return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan")}
        return {
            "n": len(ms),
            "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        }

    def first_from(self, colour: str, after: float, until: float = float("inf")) -> float | None:
        """Seconds from `after` to the first answer from `colour` among requests sent in
        [after, until)."""
        t = [a.done for a in self.answers if a.colour == colour and after <= a.sent < until]
        return (min(t) - after) if t else None

    def all_from(self, colour: str, after: float, until: float = float("inf")) -> float | None:
        """Seconds from `after` to the answer after which every answer (of requests sent
        before `until`) came from `colour`."""
        later = sorted(
            (a for a in self.answers if after <= a.sent < until and a.status == 200),
            key=lambda a: a.sent,
        )
        others = [a for a in later if a.colour != colour]
        rest = [a for a in later if a.colour == colour and (not others or a.sent > others[-1].sent)]
        return (rest[0].done - after) if rest else None
