"""The protocol-agnostic data plane: everything the REST and gRPC fronts share.

An adapter turns its request into (API key, model, requested version, route key, tensor metadata) and a coroutine
that performs the upstream call on a given replica in its own protocol (so tensors are forwarded as bytes, never
decoded). The data plane authenticates and authorizes, resolves versions and aliases, validates tensor metadata
against the model's schema, applies admission control, picks a replica, retries on another one when a replica is
unreachable, records metrics, and knows each served version's sha256 for provenance.

Routing state is one immutable snapshot (:class:`_Routes`: the routing file and its pools) swapped atomically by
:meth:`DataPlane.reload`; requests keep the snapshot they started with, and a replaced pool is closed once its
last request is done. Aliases and splits changed at run time (rollouts, ``PUT /admin/models/{m}/route``) are
*overrides* kept in memory on top of the routing file; they survive reloads and are shown by ``GET /admin/routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import itertools
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ._auth import ANONYMOUS, KeyStore, Principal
from ._coalesce import Coalescer
from ._errors import DeadlineExceeded, GatewayError, NotFound, Overloaded, TooLarge, Unavailable
from ._metrics import Metrics
from ._routing import ModelPolicy, RoutingConfig, load_routing
from ._upstream import Pool, Replica
from ._validation import ModelSchema, TensorHeader, check_request

__all__ = ["GATEWAY_ID", "DataPlane", "ReplicaUnreachable", "RouteOverride", "Target", "new_request_id"]

log = logging.getLogger("hepsonic.gateway")
T = TypeVar("T")
I = TypeVar("I")  # one request, as an adapter represents it
R = TypeVar("R")  # one request's answer

#: What "no version requested" looks like (an absent or empty version; Triton also reads "0" as none).
_NO_VERSION = (None, "", "0")
_POLICY_CACHE_LIMIT = 4096
#: Checked tensor header sets remembered (see ``DataPlane._checked``).
_CHECKED_MEMO_SIZE = 4096
#: How long a replaced pool may wait for its last requests before it is closed anyway.
_RETIRE_TIMEOUT_S = 120.0
#: This gateway process's identity: the prefix of its request ids, and how it recognises itself among its peers.
GATEWAY_ID = os.urandom(6).hex()
_REQUEST_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A request id unique across gateway processes: a random per-process prefix and a counter.

    (A uuid4 per request costs several times more, on the hot path of every request.)
    """
    return f"{GATEWAY_ID}-{next(_REQUEST_COUNTER):x}"


class ReplicaUnreachable(Exception):
    """Raised by an adapter's upstream call when the replica could not be reached: safe to retry elsewhere."""


@dataclass(frozen=True, kw_only=True)
class Target:
    """A resolved request destination."""

    model: str
    version: int
    policy: ModelPolicy
    pool: Pool


@dataclass(frozen=True, kw_only=True)
class RouteOverride:
    """Aliases and split of one model set at run time; ``None`` keeps the routing file's value."""

    aliases: dict[str, int] | None = None
    split: dict[str, float] | None = None


@dataclass(frozen=True)
class _Routes:
    config: RoutingConfig
    pools: dict[str, Pool]


class _Admission:
    """Per-model in-flight limit with a bounded queue; beyond the queue, refuse with a retry hint."""

    def __init__(self, policy: ModelPolicy, inflight_gauge: Any) -> None:
        self.limits = (policy.max_inflight, policy.max_queue)
        #: The model's in-flight gauge (its series, looked up once: every request moves it twice).
        self.inflight_gauge = inflight_gauge
        self.slots = asyncio.Semaphore(policy.max_inflight)
        self.max_inflight, self.max_queue = self.limits
        self.inflight = 0
        self.waiting = 0
        self.mean_latency_s = 0.01  # exponentially weighted, for the retry hint

    def release(self) -> None:
        """Give back the slot taken by :meth:`DataPlane._admit`."""
        self.inflight -= 1
        self.inflight_gauge.dec()
        self.slots.release()

    def retry_after_s(self) -> float:
        """Time for the queue ahead to drain at the current pace."""
        return round(max(0.05, (self.waiting + 1) * self.mean_latency_s / self.max_inflight), 3)


class DataPlane:
    """Shared by the REST and gRPC adapters; owns the pools, the keys and the run-time routing overrides."""

    def __init__(
        self,
        routing: RoutingConfig,
        *,
        metrics: Metrics | None = None,
        keys: KeyStore | None = None,
        routing_file: Path | None = None,
        keys_file: Path | None = None,
        watch_interval_s: float | None = None,
        server_name: str = "hepsonic-gateway",
    ) -> None:
        self.metrics = metrics or Metrics()
        self.keys = keys
        self.routing_file = routing_file
        self.keys_file = keys_file
        self.watch_interval_s = watch_interval_s
        self.server_name = server_name
        self._routes = _Routes(routing, {name: Pool(name, spec) for name, spec in routing.pools.items()})
        self.overrides: dict[str, RouteOverride] = {}
        self._effective: dict[str, ModelPolicy | None] = {}
        self._admission: dict[str, _Admission] = {}
        self._schemas: dict[tuple[str, str, int], ModelSchema] = {}
        self._schema_fetches: dict[tuple[str, str, int], asyncio.Task[ModelSchema | None]] = {}
        #: Batch sizes of tensor header sets already checked against a schema (and the tensor element limit):
        #: a job sends the same shapes again and again, so the hot path checks each set once.
        self._checked: dict[tuple[ModelSchema, tuple[TensorHeader, ...], int], int] = {}
        #: Request coalescers by (pool, model, version, signature); dropped when idle. The pool object, not its
        #: name: after a reload replaced a pool, new requests merge apart from those still bound for the old one.
        self._coalescers: dict[tuple[Pool, str, int, Hashable], Coalescer[Any, Any]] = {}
        #: (model, version) -> requests routed there and not yet answered (:meth:`hold`): what a rollout drains.
        self.inflight_versions: Counter[tuple[str, int]] = Counter()
        self._reload_lock = asyncio.Lock()
        self._mtimes = self._file_mtimes()
        self._background: set[asyncio.Task[Any]] = set()

    # -- life cycle -------------------------------------------------------------------------------------
    @property
    def routing(self) -> RoutingConfig:
        """The routing configuration in force."""
        return self._routes.config

    @property
    def pools(self) -> dict[str, Pool]:
        """The pools in force, by name."""
        return self._routes.pools

    async def start(self) -> None:
        """Connect to every pool and probe it once; watch the routing and keys files when asked to."""
        await asyncio.gather(*(pool.start() for pool in self.pools.values()))
        if self.watch_interval_s and (self.routing_file or self.keys_file):
            self._spawn(self._watch(self.watch_interval_s))

    async def close(self) -> None:
        """Stop background work and close every upstream connection."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(coalescer.close() for coalescer in self._coalescers.values()))
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- hot reload -------------------------------------------------------------------------------------
    def _file_mtimes(self) -> tuple[float | None, float | None]:
        def mtime(path: Path | None) -> float | None:
            try:
                return path.stat().st_mtime_ns if path is not None else None
            except OSError:
                return None

        return mtime(self.routing_file), mtime(self.keys_file)

    async def _watch(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self._file_mtimes() != self._mtimes:
                try:
                    await self.reload()
                except Exception as exc:  # noqa: BLE001  (a bad edit must not kill the gateway: keep the old one)
                    log.error("reload failed; keeping the previous configuration", extra={"error": str(exc)})

    async def reload(self) -> dict[str, Any]:
        """Re-read the routing and keys files and swap them in atomically, without dropping a request.

        Pools whose specification is unchanged are kept (with their connections and health); new ones are
        started (and probed) before the swap; replaced ones are closed after their last in-flight request.
        Raises (keeping everything as it was) when a file is invalid.
        """
        async with self._reload_lock:
            self._mtimes = self._file_mtimes()
            try:
                config = load_routing(self.routing_file) if self.routing_file else self.routing
                keys = self.keys
                if self.keys_file:
                    peer_key_sha256 = keys.peer_key_sha256 if keys else None  # not in the file: kept
                    keys = KeyStore.from_file(self.keys_file, peer_key_sha256=peer_key_sha256)
            except Exception:
                self.metrics.reloads.labels("error").inc()
                raise
            old = self._routes
            pools: dict[str, Pool] = {}
            started: list[Pool] = []
            for name, spec in config.pools.items():
                kept = old.pools.get(name)
                if kept is not None and kept.spec == spec:
                    pools[name] = kept
                else:
                    pools[name] = Pool(name, spec)
                    started.append(pools[name])
            await asyncio.gather(*(pool.start() for pool in started))
            self._routes = _Routes(config, pools)
            self.keys = keys
            self._effective.clear()
            retired = [pool for name, pool in old.pools.items() if pools.get(name) is not pool]
            for pool in retired:
                self._spawn(self._retire(pool))
            self._schemas = {
                k: v for k, v in self._schemas.items() if k[0] in pools and pools[k[0]] is old.pools.get(k[0])
            }
            self.metrics.reloads.labels("ok").inc()
            summary = {
                "pools": sorted(pools),
                "started": sorted(p.name for p in started),
                "retired": sorted(p.name for p in retired),
                "models": sorted(config.models),
            }
            log.info("routing reloaded", extra=summary)
            return summary

    async def _retire(self, pool: Pool) -> None:
        try:
            await pool.stop_probing()
            deadline = time.monotonic() + _RETIRE_TIMEOUT_S
            while pool.leases and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:  # also when the gateway shuts down meanwhile: its connections are closed either way
            await pool.close()

    # -- auth -------------------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` value (everyone is :data:`ANONYMOUS` when auth is off)."""
        keys = self.keys
        if keys is None:
            return ANONYMOUS
        try:
            return keys.authenticate(authorization)
        except Exception:
            self.metrics.rejected.labels("", "unauthenticated").inc()
            raise

    # -- health -----------------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Ready when every pool has at least one healthy replica."""
        ready = True
        for pool in self.pools.values():
            for replica in pool.replicas:
                self.metrics.replica_healthy.labels(pool.name, replica.name).set(1 if replica.healthy else 0)
            ready = ready and any(replica.healthy for replica in pool.replicas)
        return ready

    def models(self, principal: Principal = ANONYMOUS) -> dict[str, set[int]]:
        """Every routed model (that ``principal`` may use) with its READY versions."""
        served: dict[str, set[int]] = {}
        for pool in self.pools.values():
            for model in pool.models():
                policy = self.policy_or_none(model)
                if policy is not None and policy.pool == pool.name and principal.may_use(model):
                    served.setdefault(model, set()).update(pool.ready_versions(model))
        return served

    # -- routing ----------------------------------------------------------------------------------------
    def policy_or_none(self, model: str) -> ModelPolicy | None:
        """The effective policy of ``model`` (routing file + run-time overrides), or None when not routed."""
        try:
            return self._effective[model]
        except KeyError:
            pass
        policy = self.routing.policy(model)
        override = self.overrides.get(model)
        if policy is not None and override is not None:
            update: dict[str, Any] = {}
            if override.aliases is not None:
                update["aliases"] = override.aliases
            if override.split is not None:
                update["split"] = override.split
            policy = policy.model_copy(update=update)
        if len(self._effective) < _POLICY_CACHE_LIMIT:  # model names come from clients: bound the cache
            self._effective[model] = policy
        return policy

    def policy(self, model: str) -> ModelPolicy:
        """The effective routing policy of ``model``, or :class:`NotFound`."""
        policy = self.policy_or_none(model)
        if policy is None:
            raise NotFound(f"model {model!r} is not routed by this gateway")
        return policy

    def set_route(self, model: str, override: RouteOverride) -> ModelPolicy:
        """Change ``model``'s aliases and/or split at run time (validated like the routing file)."""
        base = self.routing.policy(model)
        if base is None:
            raise NotFound(f"model {model!r} is not routed by this gateway")
        merged = RouteOverride(
            aliases=override.aliases
            if override.aliases is not None
            else self.overrides.get(model, RouteOverride()).aliases,
            split=override.split
            if override.split is not None
            else self.overrides.get(model, RouteOverride()).split,
        )
        candidate = ModelPolicy.model_validate(
            {
                **base.model_dump(),
                **({"aliases": merged.aliases} if merged.aliases is not None else {}),
                **({"split": merged.split} if merged.split is not None else {}),
            }
        )
        self.overrides[model] = merged
        self._effective.pop(model, None)
        log.info(
            "route changed", extra={"model": model, "aliases": candidate.aliases, "split": candidate.split}
        )
        return candidate

    def clear_route(self, model: str) -> None:
        """Drop ``model``'s run-time overrides: the routing file applies again."""
        self.overrides.pop(model, None)
        self._effective.pop(model, None)

    def routes_report(self) -> dict[str, Any]:
        """The routing in force: pools with replica health, and every model's effective aliases and split."""
        models: dict[str, Any] = {}
        names = set(self.routing.models) | {m for p in self.pools.values() for m in p.models()}
        for model in sorted(names):
            policy = self.policy_or_none(model)
            if policy is None:
                continue
            pool = self.pools[policy.pool]
            models[model] = {
                "pool": policy.pool,
                "aliases": policy.aliases,
                "split": policy.split,
                "override": model in self.overrides,
                "served_versions": sorted(pool.ready_versions(model)) if model != "*" else [],
                "inflight": {
                    str(v): n for (m, v), n in sorted(self.inflight_versions.items()) if m == model and n
                },
                "limits": {
                    "timeout_s": policy.timeout_s,
                    "max_inflight": policy.max_inflight,
                    "max_queue": policy.max_queue,
                    "retries": policy.retries,
                    "max_request_bytes": policy.max_request_bytes,
                    "max_tensor_elements": policy.max_tensor_elements,
                    "coalesce": policy.coalesce,
                    "coalesce_calls": policy.coalesce_calls,
                },
            }
        return {
            "gateway": GATEWAY_ID,
            "routing_file": str(self.routing_file) if self.routing_file else None,
            "pools": {
                name: [
                    {
                        "replica": r.name,
                        "http": r.spec.http,
                        "healthy": r.healthy,
                        "outstanding": r.outstanding,
                        "models": {m: sorted(v) for m, v in sorted(r.ready_versions.items())},
                    }
                    for r in pool.replicas
                ]
                for name, pool in self.pools.items()
            },
            "models": models,
        }

    def resolve(
        self,
        model: str,
        requested: str | None,
        *,
        route_key: str | None = None,
        principal: Principal = ANONYMOUS,
    ) -> Target:
        """Authorize, then turn a requested version, alias or nothing into a served version.

        Nothing requested: a weighted split when the model has one (sticky by ``route_key``, so one job sees one
        version), else the newest READY version, as Triton itself would pick. A request that goes on to use the
        target holds it (:meth:`hold`) from here to its answer.
        """
        requested = principal.authorize(model, requested)
        policy = self.policy(model)
        pool = self.pools[policy.pool]
        served = pool.ready_versions(model)
        if not served:
            if not any(model in r.ready_versions for p in self.pools.values() for r in p.replicas):
                raise NotFound(self._unknown_model(model, principal))
            raise Unavailable(f"model {model!r} has no READY version on a healthy replica")
        if requested in _NO_VERSION and policy.split:
            requested = self._split_choice(policy, route_key)
        if requested in _NO_VERSION or requested == "latest":
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

    def _unknown_model(self, model: str, principal: Principal) -> str:
        """The message for a model nobody serves: what the caller may use instead, the closest name first."""
        usable = sorted(self.models(principal))
        close = difflib.get_close_matches(model, usable, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown model {model!r} (served: {', '.join(usable) or 'none'}{hint})"

    @contextlib.contextmanager
    def hold(self, target: Target) -> Iterator[None]:
        """Count a routed request against its pool and its version until it is answered.

        Enter it right after :meth:`resolve`, before any await: at any await a reload may retire the pool, or a
        rollout drain the version and unload it; they wait until nothing holds them. (Counted only from the
        forward on, a request still validating, or fetching the model's schema, was missed: seen as a 500 in a
        reload and a 503 in a rollout under CPU contention.)
        """
        key = (target.model, target.version)
        target.pool.leases += 1
        self.inflight_versions[key] += 1
        try:
            yield
        finally:
            target.pool.leases -= 1
            self.inflight_versions[key] -= 1

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

    # -- validation and provenance ----------------------------------------------------------------------
    async def schema(self, target: Target) -> ModelSchema | None:
        """The served version's schema and sha256, from Triton's model configuration (cached per version).

        None when no replica could tell (validation is then left to Triton; provenance is best effort).
        """
        key = (target.pool.name, target.model, target.version)
        schema = self._schemas.get(key)
        if schema is not None:
            return schema
        fetch = self._schema_fetches.get(key)
        if fetch is None:
            fetch = self._schema_fetches[key] = asyncio.ensure_future(self._fetch_schema(target))
            fetch.add_done_callback(lambda _f: self._schema_fetches.pop(key, None))
        return await asyncio.shield(fetch)

    async def _fetch_schema(self, target: Target) -> ModelSchema | None:
        path = f"/v2/models/{target.model}/versions/{target.version}/config"
        for replica in target.pool.replicas:
            if not replica.serves(target.model, target.version):
                continue
            try:
                response = await replica.http.get(path, timeout=5.0)
                if response.status_code != 200:
                    continue
                schema = ModelSchema.from_triton_config(target.model, target.version, response.json())
            except Exception as exc:  # noqa: BLE001  (try the next replica; Triton validates anyway)
                log.warning("model config fetch failed", extra={"replica": replica.name, "error": repr(exc)})
                continue
            self._schemas[(target.pool.name, target.model, target.version)] = schema
            return schema
        return None

    def forget_schemas(self, model: str) -> None:
        """Drop cached schemas of ``model`` (after a rollout loaded or unloaded versions)."""
        self._schemas = {k: v for k, v in self._schemas.items() if k[1] != model}

    async def validate(
        self, target: Target, tensors: Sequence[TensorHeader], *, body_bytes: int
    ) -> ModelSchema | None:
        """Check size limits and tensor metadata against the version's schema; record the batch size."""
        policy = target.policy
        if body_bytes > policy.max_request_bytes:
            self.metrics.rejected.labels(target.model, "too_large").inc()
            raise TooLarge(
                f"model {target.model!r}: the request has {body_bytes} bytes, the limit is {policy.max_request_bytes}"
            )
        schema = await self.schema(target)
        if schema is None:
            return None
        key = (schema, tuple(tensors), policy.max_tensor_elements)
        batch = self._checked.get(key)
        if batch is None:
            try:
                batch = check_request(schema, tensors, max_elements=policy.max_tensor_elements)
            except Exception:
                self.metrics.rejected.labels(target.model, "invalid").inc()
                raise
            if len(self._checked) >= _CHECKED_MEMO_SIZE:  # bounded: shapes that vary per request find no hit
                self._checked.clear()
            self._checked[key] = batch
        self.metrics.child(self.metrics.batch_size, target.model).observe(batch)
        return schema

    # -- forwarding -------------------------------------------------------------------------------------
    def timeout_s(self, target: Target, client_timeout_s: float | None) -> float:
        """The time this request may take at Triton: the model's timeout, or the client's shorter deadline."""
        if client_timeout_s is None:
            return target.policy.timeout_s
        if client_timeout_s <= 0:
            raise DeadlineExceeded(f"model {target.model!r}: the client's deadline has already passed")
        return min(target.policy.timeout_s, client_timeout_s)

    def _admission_for(self, target: Target) -> _Admission:
        admission = self._admission.get(target.model)
        policy = target.policy
        if admission is None or admission.limits != (policy.max_inflight, policy.max_queue):
            admission = self._admission[target.model] = _Admission(
                policy, self.metrics.child(self.metrics.inflight, target.model)
            )
        return admission

    async def forward(self, target: Target, call: Callable[[Replica], Awaitable[T]]) -> T:
        """Run ``call`` on a replica under admission control, retrying elsewhere if a replica is unreachable.

        The caller holds the target (:meth:`hold`)."""
        admission = await self._admit(target)
        try:
            return await self._with_retries(target, call, admission)
        finally:
            admission.release()

    async def forward_coalesced(
        self,
        target: Target,
        schema: ModelSchema,
        signature: Hashable,
        item: I,
        *,
        rows: int,
        nbytes: int,
        call: Callable[[Replica, list[I]], Awaitable[list[R]]],
    ) -> R:
        """Like :meth:`forward`, merged with concurrent requests of the same ``signature`` (see ``_coalesce``).

        Each request passes admission control on its own; ``call`` makes one upstream call for a list of
        requests and returns one answer per request. The caller checks that the model may be merged.
        """
        admission = await self._admit(target)
        try:
            serving = sum(
                1 for r in target.pool.replicas if r.healthy and r.serves(target.model, target.version)
            )
            max_calls = (target.policy.coalesce_calls or schema.instances) * max(1, serving)
            key = (target.pool, target.model, target.version, signature)
            coalescer: Coalescer[I, R] | None = self._coalescers.get(key)
            if coalescer is None:

                def send(items: list[I]) -> Awaitable[list[R]]:
                    return self._with_retries(
                        target, lambda replica: call(replica, items), self._admission_for(target)
                    )

                merged = self.metrics.child(self.metrics.merged, target.model)
                coalescer = self._coalescers[key] = Coalescer(
                    send,
                    max_calls=max_calls,
                    max_rows=schema.max_batch_size,
                    max_bytes=target.policy.max_request_bytes,
                    record=merged.observe,
                )
            coalescer.max_calls = max_calls  # replicas come and go
            try:
                return await coalescer.submit(item, rows=rows, nbytes=nbytes)
            finally:
                if coalescer.idle and self._coalescers.get(key) is coalescer:
                    del self._coalescers[key]
        finally:
            admission.release()

    async def _admit(self, target: Target) -> _Admission:
        """Take one of the model's in-flight slots (waiting in its bounded queue), or raise :class:`Overloaded`.

        The caller gives it back with :meth:`_Admission.release` (a plain pair rather than a context manager:
        this is the hot path).
        """
        admission = self._admission_for(target)
        metrics = self.metrics
        if admission.slots.locked():
            if admission.waiting >= admission.max_queue:
                metrics.rejected.labels(target.model, "queue_full").inc()
                retry = admission.retry_after_s()
                raise Overloaded(
                    f"model {target.model!r} is overloaded: {admission.inflight} requests in flight and "
                    f"{admission.waiting} queued (limits {admission.max_inflight}/{admission.max_queue}); "
                    f"retry in {retry} s",
                    retry_after_s=retry,
                )
            admission.waiting += 1
            metrics.child(metrics.queued, target.model).inc()
            try:
                await admission.slots.acquire()
            finally:
                admission.waiting -= 1
                metrics.child(metrics.queued, target.model).dec()
        else:
            await admission.slots.acquire()
        admission.inflight += 1
        admission.inflight_gauge.inc()
        return admission

    async def _with_retries(
        self, target: Target, call: Callable[[Replica], Awaitable[T]], admission: _Admission
    ) -> T:
        tried: list[Replica] = []
        while True:
            try:
                replica = target.pool.pick(target.model, target.version, exclude=tried)
            except Unavailable:
                if tried:  # every replica serving the version has failed for this request
                    raise Unavailable(
                        f"model {target.model!r} version {target.version}: "
                        f"{len(tried)} replica(s) unreachable ({', '.join(r.name for r in tried)})"
                    ) from None
                raise
            replica.outstanding += 1
            start = time.perf_counter()
            try:
                result = await call(replica)
            except ReplicaUnreachable as exc:
                replica.mark_failed(str(exc))
                tried.append(replica)
                if len(tried) > target.policy.retries:
                    raise Unavailable(
                        f"model {target.model!r} version {target.version}: {len(tried)} replica(s) unreachable"
                    ) from exc
                self.metrics.retries.labels(target.model).inc()
                log.warning(
                    "retrying on another replica",
                    extra={"model": target.model, "replica": replica.name, "reason": str(exc)[:200]},
                )
                continue
            finally:
                replica.outstanding -= 1
            elapsed = time.perf_counter() - start
            admission.mean_latency_s = 0.9 * admission.mean_latency_s + 0.1 * elapsed
            self.metrics.child(
                self.metrics.upstream, target.model, str(target.version), replica.name
            ).observe(elapsed)
            return result

    @staticmethod
    def log_served(
        request_id: str, target: Target, replica: str, principal: Principal, protocol: str
    ) -> None:
        """One DEBUG line per served request (off by default: it is the hot path)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request served",
                extra={
                    "request_id": request_id,
                    "model": target.model,
                    "version": target.version,
                    "replica": replica,
                    "key": principal.name,
                    "protocol": protocol,
                },
            )

    @staticmethod
    def log_refused(request_id: str, model: str, status: str, exc: GatewayError) -> None:
        """One line per refused request; overload refusals at DEBUG (counted in metrics: logging each one
        would flood the log exactly then)."""
        log.log(
            logging.DEBUG if isinstance(exc, Overloaded) else logging.INFO,
            "request refused",
            extra={"request_id": request_id, "model": model, "status": status, "error": exc.message},
        )

    def observe(self, model: str, version: int | None, protocol: str, status: str, elapsed_s: float) -> None:
        """Record one answered request in the latency histogram."""
        self.metrics.child(
            self.metrics.requests, model, "" if version is None else str(version), protocol, status
        ).observe(elapsed_s)

    def any_replica(self, model: str | None = None) -> Replica:
        """A healthy replica (of ``model``'s pool when given), for control-plane reads."""
        pools = [self.pools[self.policy(model).pool]] if model else list(self.pools.values())
        for pool in pools:
            healthy = [r for r in pool.replicas if r.healthy]
            if healthy:
                return min(healthy, key=lambda r: r.outstanding)
        raise Unavailable("no healthy Triton replica")


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` wants whole seconds (RFC 9110); round up so clients never retry too early."""
    return str(max(1, math.ceil(seconds)))
