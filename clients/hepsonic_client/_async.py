"""The asyncio client: the same methods as :class:`~hepsonic_client.Client`, awaitable."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import Any, Self, TypeVar

from ._client import Client
from ._pool import ProcessPool
from ._result import InferResult
from ._transport import ModelInfo, ModelMetadata

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """Awaitable twin of :class:`~hepsonic_client.Client` (same arguments, same method names).

    Requests run on a small thread pool over the same transports, so retries, failover, fallbacks,
    shared memory and provenance behave exactly as in :class:`Client`, and the event loop never blocks.
    ``concurrency`` bounds the requests in flight.

    >>> async with AsyncClient("grpc://127.0.0.1:8081") as client:          # doctest: +SKIP
    ...     result = await client.infer("ringer", inputs)
    """

    def __init__(self, *args: Any, concurrency: int = 8, **kwargs: Any) -> None:
        self._client = Client(*args, **kwargs)
        self._concurrency = concurrency
        self._pool = ProcessPool("hepsonic-async")

    @property
    def sync(self) -> Client:
        """The underlying blocking client (shares connections and counters)."""
        return self._client

    async def _run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        pool = self._pool.get(self._concurrency)
        return await loop.run_in_executor(pool, functools.partial(function, *args, **kwargs))

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        version: int | str | None = None,
        *,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> InferResult:
        """See :meth:`Client.infer`."""
        result: InferResult = await self._run(
            self._client.infer, model, inputs, version, outputs=outputs, timeout=timeout
        )
        return result

    async def infer_many(
        self,
        model: str,
        batches: Sequence[Mapping[str, Any]],
        version: int | str | None = None,
        *,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> list[InferResult]:
        """Run several batches concurrently; results in input order."""
        return list(
            await asyncio.gather(
                *(self.infer(model, batch, version, outputs=outputs, timeout=timeout) for batch in batches)
            )
        )

    async def is_ready(self) -> bool:
        """See :meth:`Client.is_ready`."""
        ready: bool = await self._run(self._client.is_ready)
        return ready

    async def models(self) -> list[ModelInfo]:
        """See :meth:`Client.models`."""
        models: list[ModelInfo] = await self._run(self._client.models)
        return models

    async def metadata(self, model: str, version: int | str | None = None) -> ModelMetadata:
        """See :meth:`Client.metadata`."""
        meta: ModelMetadata = await self._run(self._client.metadata, model, version)
        return meta

    def stats(self) -> dict[str, int]:
        """See :meth:`Client.stats`."""
        return self._client.stats()

    async def close(self) -> None:
        """Close the client (waits for requests in flight)."""
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
        self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
