"""The protocol-agnostic data plane: everything the REST and gRPC fronts share.

An adapter turns its request into (model, requested version, route key) and a coroutine that performs the
upstream call on a given replica in its own protocol (so tensors are forwarded as bytes, never decoded). The data
plane resolves versions and aliases, applies admission control, picks a replica, retries on another one when a
replica is unreachable, records metrics, and knows each served version's sha256 for provenance.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ._errors import NotFound, Overloaded, Unavailable
from ._metrics import Metrics
from ._routing import ModelPolicy, RoutingConfig
from ._upstream import Pool, Replica

__all__ = ["DataPlane", "ReplicaUnreachable", "Target"]

log = logging.getLogger("hepsonic.gateway")
T = TypeVar("T")

#: How many other replicas a request may be retried on after a connection failure.
MAX_RETRIES = 2


class ReplicaUnreachable(Exception):
    """Raised by an adapter's upstream call when the replica could not be reached: safe to retry elsewhere."""


@dataclass(frozen=True, kw_only=True)
class Target:
    """A resolved request destination."""

    model: str
    version: int
    policy: ModelPolicy
    pool: Pool


class _Admission:
    """Per-model in-flight limit with a bounded queue; beyond the queue, refuse with a retry hint."""

    def __init__(self, policy: ModelPolicy) -> None:
        self.slots = asyncio.Semaphore(policy.max_inflight)
        self.max_queue = policy.max_queue
        self.inflight = 0
        self.waiting = 0
        self.mean_latency_s = 0.01  # exponentially weighted, for the Retry-After estimate

    def retry_after_s(self, max_inflight: int) -> float:
        return round(max(0.05, (self.waiting + 1) * self.mean_latency_s / max_inflight), 3)


class DataPlane:
    """Shared by the REST and gRPC adapters; owns the pools."""

    def __init__(self, routing: RoutingConfig, *, metrics: Metrics | None = None) -> None:
        self.routing = routing
        self.metrics = metrics or Metrics()
        self.pools = {name: Pool(name, spec) for name, spec in routing.pools.items()}
        self._admission: dict[str, _Admission] = {}
        self._sha256: dict[tuple[str, int], str | None] = {}

    async def start(self) -> None:
        """Connect to every pool and probe it once."""
        await asyncio.gather(*(pool.start() for pool in self.pools.values()))

    async def close(self) -> None:
        """Close every upstream connection."""
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))

    # -- health -----------------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Ready when every pool has at least one healthy replica."""
        ready = True
        for pool in self.pools.values():
            for replica in pool.replicas:
                self.metrics.replica_healthy.labels(pool.name, replica.name).set(1 if replica.healthy else 0)
            ready = ready and any(replica.healthy for replica in pool.replicas)
        return ready

    def models(self) -> dict[str, set[int]]:
        """Every routed model with its READY versions."""
        served: dict[str, set[int]] = {}
        for pool in self.pools.values():
            for model in pool.models():
                policy = self.routing.policy(model)
                if policy is not None and policy.pool == pool.name:
                    served.setdefault(model, set()).update(pool.ready_versions(model))
        return served

    # -- routing ----------------------------------------------------------------------------------------
    def policy(self, model: str) -> ModelPolicy:
        """The routing policy of ``model``, or :class:`NotFound`."""
        policy = self.routing.policy(model)
        if policy is None:
            raise NotFound(f"model {model!r} is not routed by this gateway")
        return policy

    def resolve(self, model: str, requested: str | None, *, route_key: str | None = None) -> Target:
        """Turn a requested version, alias or nothing into a served version.

        Nothing requested: a weighted split when the model has one (sticky by ``route_key``, so one job sees one
        version), else the newest READY version, as Triton itself would pick.
        """
        policy = self.policy(model)
        pool = self.pools[policy.pool]
        served = pool.ready_versions(model)
        if not served:
            if model not in {m for p in self.pools.values() for r in p.replicas for m in r.ready_versions}:
                raise NotFound(f"unknown model {model!r}")
            raise Unavailable(f"model {model!r} has no READY version on a healthy replica")
        if requested in (None, "", "0") and policy.split:
            requested = self._split_choice(policy, route_key)
        if requested in (None, "", "0", "latest"):
            version = max(served)
        elif requested.isdigit():
            version = int(requested)
        elif requested in policy.aliases:
            version = policy.aliases[requested]
        else:
            known = ", ".join(sorted([*policy.aliases, "latest"]))
            raise NotFound(f"model {model!r} has no version or alias {requested!r} (aliases: {known})")
        if version not in served:
            listed = ", ".join(map(str, sorted(served)))
            raise NotFound(f"model {model!r} version {version} is not served (served versions: {listed})")
        return Target(model=model, version=version, policy=policy, pool=pool)

    @staticmethod
    def _split_choice(policy: ModelPolicy, route_key: str | None) -> str:
        targets = sorted(policy.split)
        weights = [policy.split[t] for t in targets]
        if route_key:
            # Sticky: the same key always lands at the same point of the cumulative weights.
            point = int.from_bytes(hashlib.sha256(route_key.encode()).digest()[:8], "big") / 2**64
        else:
            point = random.random()
        cumulative = 0.0
        total = sum(weights)
        for target, weight in zip(targets, weights, strict=True):
            cumulative += weight / total
            if point < cumulative:
                return target
        return targets[-1]

    # -- forwarding -------------------------------------------------------------------------------------
    def _admission_for(self, target: Target) -> _Admission:
        admission = self._admission.get(target.model)
        if admission is None:
            admission = self._admission[target.model] = _Admission(target.policy)
        return admission

    async def forward(self, target: Target, call: Callable[[Replica], Awaitable[T]]) -> T:
        """Run ``call`` on a replica under admission control, retrying elsewhere if a replica is unreachable."""
        admission = self._admission_for(target)
        policy = target.policy
        if admission.slots.locked() and admission.waiting >= admission.max_queue:
            self.metrics.rejected.labels(target.model, "queue_full").inc()
            retry = admission.retry_after_s(policy.max_inflight)
            raise Overloaded(
                f"model {target.model!r} is overloaded: {admission.inflight} requests in flight and "
                f"{admission.waiting} queued (limits {policy.max_inflight}/{policy.max_queue}); retry in {retry} s",
                retry_after_s=retry,
            )
        admission.waiting += 1
        self.metrics.queued.labels(target.model).inc()
        try:
            await admission.slots.acquire()
        finally:
            admission.waiting -= 1
            self.metrics.queued.labels(target.model).dec()
        admission.inflight += 1
        self.metrics.inflight.labels(target.model).inc()
        try:
            return await self._with_retries(target, call, admission)
        finally:
            admission.inflight -= 1
            self.metrics.inflight.labels(target.model).dec()
            admission.slots.release()

    async def _with_retries(
        self, target: Target, call: Callable[[Replica], Awaitable[T]], admission: _Admission
    ) -> T:
        tried: list[Replica] = []
        while True:
            replica = target.pool.pick(target.model, target.version, exclude=tried)
            replica.outstanding += 1
            start = time.perf_counter()
            try:
                result = await call(replica)
            except ReplicaUnreachable as exc:
                replica.mark_failed(str(exc))
                tried.append(replica)
                if len(tried) > MAX_RETRIES:
                    raise Unavailable(
                        f"model {target.model!r} version {target.version}: {len(tried)} replicas unreachable"
                    ) from exc
                self.metrics.retries.labels(target.model).inc()
                continue
            finally:
                replica.outstanding -= 1
            elapsed = time.perf_counter() - start
            admission.mean_latency_s = 0.9 * admission.mean_latency_s + 0.1 * elapsed
            self.metrics.upstream.labels(target.model, str(target.version), replica.name).observe(elapsed)
            return result

    # -- provenance -------------------------------------------------------------------------------------
    async def sha256(self, target: Target) -> str | None:
        """sha256 of the served ONNX file, from the model config's ``sha256/<version>`` parameter (cached)."""
        key = (target.model, target.version)
        if key not in self._sha256:
            replica = target.pool.pick(target.model, target.version)
            try:
                response = await replica.http.get(
                    f"/v2/models/{target.model}/versions/{target.version}/config"
                )
                parameters = response.json().get("parameters", {}) if response.status_code == 200 else {}
            except Exception:  # noqa: BLE001  (provenance is best effort; the inference must not fail for it)
                return None
            entry = parameters.get(f"sha256/{target.version}", {})
            self._sha256[key] = entry.get("string_value") if isinstance(entry, dict) else None
        return self._sha256[key]

    def any_replica(self, model: str | None = None) -> Replica:
        """A healthy replica (of ``model``'s pool when given), for control-plane reads."""
        pools = [self.pools[self.policy(model).pool]] if model else list(self.pools.values())
        for pool in pools:
            healthy = [r for r in pool.replicas if r.healthy]
            if healthy:
                return min(healthy, key=lambda r: r.outstanding)
        raise Unavailable("no healthy Triton replica")
