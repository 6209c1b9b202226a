"""Client-side batching for reconstruction loops: one object in, one slice out.

SONIC batches only the objects of one event; Triton's dynamic batcher only merges requests that are
already on the wire at the same time. A reconstruction loop that sends one jet at a time gets neither.
The :class:`Batcher` merges single objects from any number of call sites and threads, across events,
into one request of up to ``max_batch_size`` objects (or after ``max_latency``), and resolves each
caller's future with exactly its own row of the result.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from ._exceptions import HepsonicError, InputError
from ._options import BatchingOptions
from ._result import InferResult

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Batcher"]

log = logging.getLogger("hepsonic_client")

_BucketKey = tuple[Any, ...]


@dataclass(slots=True)
class _Pending:
    inputs: dict[str, np.ndarray[Any, Any]]
    future: Future[InferResult]
    born: float


@dataclass(slots=True)
class _Bucket:
    items: list[_Pending] = field(default_factory=list)


class Batcher:
    """Merge one-object requests for ``model`` into batched requests through ``client``.

    >>> with Batcher(client, "particlenet_lite") as tagger:                 # doctest: +SKIP
    ...     futures = [tagger.submit(jet_inputs) for jet_inputs in jets]   # from any thread
    ...     probabilities = [f.result()["softmax"] for f in futures]       # shape (2,) each

    ``submit`` takes one object's inputs *without* the batch axis and returns a
    ``concurrent.futures.Future`` of an :class:`InferResult` whose outputs have no batch axis either
    (use ``asyncio.wrap_future`` from asyncio code). Objects whose inputs differ in shape are never put
    in the same request; with ``BatchingOptions(bucket_edges=...)`` the first axis of each input is
    zero-padded up to its bucket's edge so that similar sizes share a request (the model must ignore the
    padding, e.g. through a mask). ``stats()`` tells how many requests were sent.
    """

    def __init__(
        self,
        client: Client,
        model: str,
        version: int | str | None = None,
        *,
        options: BatchingOptions | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.version = version
        self.options = options or BatchingOptions()
        self._closed = False
        self._start()

    def _start(self) -> None:
        """Fresh queue, counters and threads: at construction, and in a forked child (a worker process of the
        job), which inherits none of the parent's threads; what the parent had queued stays the parent's."""
        self._pid = os.getpid()
        self._buckets: dict[_BucketKey, _Bucket] = {}
        self._cond = threading.Condition()
        self._inflight = threading.Semaphore(self.options.max_inflight)
        self._objects = 0
        self._requests = 0
        self._senders = ThreadPoolExecutor(self.options.max_inflight, thread_name_prefix="hepsonic-send")
        self._thread = threading.Thread(target=self._run, name=f"hepsonic-batcher-{self.model}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    def submit(self, inputs: Mapping[str, Any]) -> Future[InferResult]:
        """Queue one object; its future resolves to that object's outputs (no batch axis)."""
        arrays = {name: np.asarray(value) for name, value in inputs.items()}
        key, arrays = self._bucket(arrays)
        future: Future[InferResult] = Future()
        if self._pid != os.getpid() and not self._closed:
            self._start()
        with self._cond:
            if self._closed:
                msg = f"Batcher for model {self.model!r} is closed"
                raise RuntimeError(msg)
            bucket = self._buckets.setdefault(key, _Bucket())
            bucket.items.append(_Pending(arrays, future, time.monotonic()))
            if len(bucket.items) == 1 or len(bucket.items) >= self.options.max_batch_size:
                self._cond.notify()
        return future

    def infer(self, inputs: Mapping[str, Any], timeout: float | None = None) -> InferResult:
        """``submit(inputs).result(timeout)``: blocking, for one object."""
        return self.submit(inputs).result(timeout)

    def flush(self) -> None:
        """Send everything queued now, without waiting for ``max_latency``."""
        with self._cond:
            for bucket in self._buckets.values():
                for item in bucket.items:
                    item.born = float("-inf")
            self._cond.notify()

    def stats(self) -> dict[str, float]:
        """Objects submitted, requests sent and their mean size."""
        with self._cond:
            return {
                "objects": self._objects,
                "requests": self._requests,
                "mean_batch_size": self._objects / self._requests if self._requests else 0.0,
            }

    def close(self) -> None:
        """Send what is queued, wait for every answer, stop the worker. Idempotent."""
        if self._pid != os.getpid():  # a forked child never started the parent's threads
            self._closed = True
            return
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._senders.shutdown(wait=True)  # batches still on the wire finish first

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _bucket(self, arrays: dict[str, np.ndarray[Any, Any]]) -> tuple[_BucketKey, dict[str, Any]]:
        edges = self.options.bucket_edges
        if edges is None:
            return tuple((n, a.dtype.str, a.shape) for n, a in sorted(arrays.items())), arrays
        sizes = {a.shape[0] for a in arrays.values() if a.ndim}
        size = max(sizes) if sizes else 0
        index = bisect.bisect_left(edges, size)
        if index == len(edges):
            msg = (
                f"model {self.model!r}: object of size {size} exceeds the largest bucket edge "
                f"{edges[-1]} (BatchingOptions.bucket_edges)"
            )
            raise InputError(msg, model=self.model)
        edge = edges[index]
        padded = {}
        for name, array in arrays.items():
            if array.ndim and array.shape[0] < edge:
                pad = [(0, edge - array.shape[0])] + [(0, 0)] * (array.ndim - 1)
                array = np.pad(array, pad)  # noqa: PLW2901
            padded[name] = array
        return tuple((n, a.dtype.str, a.shape) for n, a in sorted(padded.items())), padded

    def _take_ready(self, now: float) -> tuple[list[_Pending], float | None]:
        """A batch to send now (or empty) and how long to wait otherwise. Caller holds the lock."""
        wait: float | None = None
        for key, bucket in self._buckets.items():
            if not bucket.items:
                continue
            age_deadline = bucket.items[0].born + self.options.max_latency
            if len(bucket.items) >= self.options.max_batch_size or now >= age_deadline or self._closed:
                batch = bucket.items[: self.options.max_batch_size]
                del bucket.items[: self.options.max_batch_size]
                if not bucket.items:
                    del self._buckets[key]
                return batch, 0.0
            remaining = age_deadline - now
            wait = remaining if wait is None else min(wait, remaining)
        return [], wait

    def _run(self) -> None:
        while True:
            # A free in-flight slot first: while all are busy, objects keep piling into bigger batches.
            self._inflight.acquire()
            with self._cond:
                while True:
                    batch, wait = self._take_ready(time.monotonic())
                    if batch or (self._closed and not self._buckets):
                        break
                    self._cond.wait(wait)
                if batch:
                    self._objects += len(batch)
                    self._requests += 1
            if not batch:
                self._inflight.release()
                return
            self._senders.submit(self._send, batch)

    def _send(self, batch: list[_Pending]) -> None:
        try:
            names = batch[0].inputs.keys()
            stacked = {name: np.stack([item.inputs[name] for item in batch]) for name in names}
            try:
                result = self.client.infer(self.model, stacked, self.version)
            except HepsonicError as exc:
                for item in batch:
                    item.future.set_exception(exc)
                return
            except Exception as exc:  # never leave a caller waiting forever
                log.exception("hepsonic batcher: unexpected error")
                for item in batch:
                    item.future.set_exception(exc)
                return
            for row, item in enumerate(batch):
                item.future.set_result(
                    InferResult(
                        {name: np.array(array[row]) for name, array in result.items()},
                        provenance=result.provenance,
                    )
                )
        finally:
            self._inflight.release()
