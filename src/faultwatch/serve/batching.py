"""Continuous micro-batching: concurrent requests share one model call, idle requests wait for none.

While the model runs a batch in a worker thread, new signals queue up; when it finishes, the
next batch is everything queued (up to `max_batch`). At low load a signal is computed at once
(no timer, no latency estimate); under load batches fill by themselves. A full queue is
answered at once with 503, the one overload signal, instead of an estimate of future latency.

Failures stay with the request that caused them. `run` returns one outcome per item, and an
outcome that is an exception fails that item's request only (`run_isolated` turns a call that
raises for a whole batch into per-item outcomes by retrying the items one by one). An exception
that `run` itself raises (a prediction log that cannot be written) fails every request of that
batch. A batch whose task is cancelled (server shutdown) fails every request still waiting,
so no request is left waiting on a future nobody will set.
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


class BatchCancelled(Exception):
    """The batcher's task was cancelled (the server is stopping) before this signal was answered."""


def run_isolated(fn: Callable[[list[T]], Sequence[R]], items: list[T]) -> list[R | Exception]:
    """`fn(items)`, or where that raises, `fn([item])` for each item: one bad item gets its own
    exception as its outcome, the others their results."""
    try:
        results = list(fn(items))
        if len(results) != len(items):
            raise RuntimeError(f"a call on {len(items)} items gave {len(results)} results")
        return results
    except Exception as e:
        if len(items) == 1:
            return [e]
    outcomes: list[R | Exception] = []
    for item in items:
        outcomes += run_isolated(fn, [item])
    return outcomes


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R | Exception]],
        max_batch: int,
        max_queue: int,
    ):
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
        """The results of `items`, in order, computed in one or more shared batches; raises
        the first item's exception if any item failed."""
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

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while self._queue and len(batch) < self.max_batch:
            item, fut = self._queue.popleft()
            if not fut.done():  # a cancelled request (client gone) costs no model time
                batch.append((item, fut))
        return batch

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch = self._next_batch()
                if not batch:
                    continue
                self.batch_sizes.append(len(batch))
                try:
                    outcomes = await anyio.to_thread.run_sync(self._run, [x for x, _ in batch])
                    if len(outcomes) != len(batch):
                        raise RuntimeError(f"batch of {len(batch)} gave {len(outcomes)} results")
                except Exception as e:  # not one item's failure: every request of the batch
                    outcomes = [e] * len(batch)
                for (_, fut), outcome in zip(batch, outcomes, strict=True):
                    if fut.done():  # cancelled meanwhile
                        continue
                    if isinstance(outcome, Exception):
                        fut.set_exception(outcome)
                    else:
                        fut.set_result(outcome)
                batch = []
        except BaseException:  # cancelled: nobody will answer these any more
            stranded = batch + list(self._queue)
            self._queue.clear()
            for _, fut in stranded:
                if not fut.done():
                    fut.set_exception(BatchCancelled("the server stopped before answering"))
            raise
        finally:
            self._draining = False
