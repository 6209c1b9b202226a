"""Request coalescing: concurrent requests for one model version merged into fewer upstream calls.

Many reconstruction jobs each send small batches; every request costs the gateway's upstream hop and Triton's
per-request work (protocol, scheduling, the backend's per-request hand-over) however few rows it carries. While
``max_calls`` calls for a model version are in flight, further requests wait and leave together, as one call
with their rows concatenated, when a call comes back. So a request never waits when the upstream has room (no
timer, no added latency at low load), and under load the batches grow by themselves. Where each call in flight
carries a single request, one more may leave at once: waiting would not merge anything, two clients would only
take turns. The caller merges only requests with the same signature (input names, types and per-row shapes,
requested outputs) for models whose rows are independent by declaration (Triton batches them dynamically: its
dynamic batcher would merge the same requests in the server) and of a fixed size.

The protocol-specific work (concatenating inputs, slicing outputs back per request) is the adapter's: a
:data:`BatchCall` turns a list of requests into one upstream call and returns one answer per request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["BatchCall", "Coalescer"]

I = TypeVar("I")  # one request, as the adapter represents it
R = TypeVar("R")  # one request's answer

#: Performs one upstream call for the given requests (merged when several); one answer per request, in order.
BatchCall = Callable[[list[I]], Awaitable[list[R]]]


@dataclass(eq=False)
class _Waiting(Generic[I, R]):
    item: I
    rows: int
    nbytes: int
    future: asyncio.Future[R] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Coalescer(Generic[I, R]):
    """Merges requests that may be merged (one model version, one signature) while ``max_calls`` calls are in flight.

    A merged call carries at most ``max_rows`` rows (the model's ``max_batch_size``) and ``max_bytes`` bytes.
    """

    def __init__(
        self,
        send: BatchCall[I, R],
        *,
        max_calls: int,
        max_rows: int,
        max_bytes: int,
        record: Callable[[int], None] = lambda _requests: None,
    ) -> None:
        self.send = send
        #: Upstream calls in flight before requests wait to be merged (the data plane scales it with the
        #: replicas serving the version).
        self.max_calls = max_calls
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        #: Called with the number of requests of every upstream call made (a metric).
        self.record = record
        self.calls = 0
        #: Requests carried by the calls in flight.
        self.carried = 0
        self.waiting: deque[_Waiting[I, R]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing waiting: the coalescer can be dropped."""
        return self.calls == 0 and not self.waiting

    async def submit(self, item: I, *, rows: int, nbytes: int) -> R:
        """This request's answer: sent at once when a call slot is free, else merged with the next call."""
        if not self.waiting and (
            self.calls < self.max_calls
            # Every call in flight carries one request: load is low, a request would wait for nothing to merge
            # with (two clients would take turns), so one call more may leave at once.
            or (self.calls == self.max_calls and self.carried == self.calls)
        ):
            self.calls += 1
            self.carried += 1
            try:
                self.record(1)
                (answer,) = await self.send([item])
                return answer
            finally:
                self._done(1)
        waiting: _Waiting[I, R] = _Waiting(item, rows, nbytes)
        self.waiting.append(waiting)
        return await waiting.future  # a cancelled request (its deadline) is skipped when the group leaves

    def _done(self, carried: int) -> None:
        self.calls -= 1
        self.carried -= carried
        while self.waiting and self.calls < self.max_calls:
            group = self._next_group()
            if not group:
                break
            self.calls += 1
            self.carried += len(group)
            task = asyncio.ensure_future(self._send_group(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_group(self) -> list[_Waiting[I, R]]:
        group: list[_Waiting[I, R]] = []
        rows = nbytes = 0
        while self.waiting:
            head = self.waiting[0]
            if head.future.done():  # cancelled while waiting: it has left
                self.waiting.popleft()
                continue
            if group and (rows + head.rows > self.max_rows or nbytes + head.nbytes > self.max_bytes):
                break
            group.append(self.waiting.popleft())
            rows += head.rows
            nbytes += head.nbytes
        return group

    async def _send_group(self, group: list[_Waiting[I, R]]) -> None:
        self.record(len(group))
        try:
            answers = await self.send([waiting.item for waiting in group])
        except asyncio.CancelledError:  # the gateway is shutting down: nothing more leaves
            self.calls -= 1
            self.carried -= len(group)
            for waiting in group:
                waiting.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001  (every request of the group gets the call's error)
            self._done(len(group))
            for waiting in group:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
        else:
            # The next merged call leaves before these answers are handed out (asyncio runs callbacks in the
            # order they were scheduled), so the upstream works while this group's requests are answered.
            self._done(len(group))
            for waiting, answer in zip(group, answers, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(answer)

    async def close(self) -> None:
        """Cancel the merged calls in flight (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
