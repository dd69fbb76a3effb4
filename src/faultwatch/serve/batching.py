"""Continuous micro-batching: concurrent requests share one model call, idle requests wait for none.

While the model runs a batch in a worker thread, new signals queue up; when it finishes, the
next batch is everything queued (up to `max_batch`). At low load a signal is computed at once
(no timer, no latency estimate); under load batches fill by themselves. A full queue is
answered at once with 503, the one overload signal, instead of an estimate of future latency.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio.to_thread

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """More signals are waiting than the queue holds."""


class MicroBatcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Sequence[R]], max_batch: int, max_queue: int):
        if not 1 <= max_batch <= max_queue:
            raise ValueError(f"need 1 <= max_batch ({max_batch}) <= max_queue ({max_queue})")
        self._run = run
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._draining = False
        self._task: asyncio.Task[None] | None = None  # a reference keeps the task alive
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # recent batch sizes, for tests

    async def submit(self, items: Sequence[T]) -> list[R]:
        """The results of `items`, in order, computed in one or more shared batches."""
        if len(self._queue) + len(items) > self.max_queue:
            raise Overloaded(
                f"{len(self._queue)} signals are queued; the queue holds {self.max_queue}"
            )
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._queue.extend(zip(items, futures, strict=True))
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        try:
            while self._queue:
                n = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
                self.batch_sizes.append(n)
                try:
                    results = await anyio.to_thread.run_sync(self._run, [x for x, _ in batch])
                    if len(results) != n:
                        raise RuntimeError(f"batch of {n} gave {len(results)} results")
                except Exception as e:  # every waiting request gets the error
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                else:
                    for (_, fut), r in zip(batch, results, strict=True):
                        if not fut.done():  # a cancelled request (client gone) is skipped
                            fut.set_result(r)
        finally:
            self._draining = False
