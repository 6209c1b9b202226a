"""Triton replicas and pools: connections, health, and least-outstanding-requests selection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Iterable

import aiohttp
import grpc
import httpx
from tritonclient.grpc import service_pb2_grpc

from ._errors import Unavailable
from ._routing import EndpointSpec, PoolSpec

__all__ = ["Pool", "Replica"]

log = logging.getLogger("hepsonic.gateway")

_GRPC_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.keepalive_time_ms", 30_000),
    # A restarted replica must be usable again within a health interval, not after gRPC's default back-off.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


class Replica:
    """One Triton server: an HTTP connection pool, a gRPC channel, its health and what it serves."""

    def __init__(self, spec: EndpointSpec) -> None:
        self.spec = spec
        self.name = spec.grpc
        self.http = httpx.AsyncClient(
            base_url=f"http://{spec.http}",
            headers={"accept-encoding": "identity"},
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )
        self._session: aiohttp.ClientSession | None = None
        self.channel = grpc.aio.insecure_channel(spec.grpc, options=_GRPC_OPTIONS)
        self.grpc = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        #: ModelInfer on bytes: the gateway forwards requests and answers without re-serialising them.
        self.grpc_infer_raw = self.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        self.healthy = False
        self.outstanding = 0
        #: model -> versions READY on this replica (from Triton's repository index)
        self.ready_versions: dict[str, set[int]] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The hot-path HTTP client (aiohttp: several times less overhead per request than httpx here).

        Created on first use, inside the running event loop. Answers are relayed as they come: no decompression.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=f"http://{self.spec.http}",
                connector=aiohttp.TCPConnector(limit=512, limit_per_host=512, keepalive_timeout=30),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def serves(self, model: str, version: int | None) -> bool:
        """Whether this replica has ``model`` (at ``version``) READY."""
        versions = self.ready_versions.get(model)
        return bool(versions) and (version is None or version in versions)  # type: ignore[operator]

    async def probe(self) -> bool:
        """Refresh health and the READY versions; a failure marks the replica unhealthy."""
        try:
            # Liveness, not readiness: with explicit model control Triton reports not-ready while *another*
            # model loads (triton-inference-server/server#7014); what a replica serves comes from its index.
            live = await self.http.get("/v2/health/live", timeout=2.0)
            index = await self.http.post("/v2/repository/index", json={"ready": True}, timeout=2.0)
            index.raise_for_status()
        except (httpx.HTTPError, OSError):
            self.mark_failed("health check failed")
            return False
        versions: dict[str, set[int]] = {}
        for item in index.json():
            if item.get("state") == "READY" and str(item.get("version", "")).isdigit():
                versions.setdefault(item["name"], set()).add(int(item["version"]))
        self.ready_versions = versions
        was_healthy, self.healthy = self.healthy, live.status_code == 200
        if self.healthy and not was_healthy:
            log.info("replica healthy", extra={"replica": self.name})
        return self.healthy

    def mark_failed(self, reason: str) -> None:
        """Passive ejection: stop routing here until the next successful health check."""
        if self.healthy:
            log.warning("replica ejected", extra={"replica": self.name, "reason": reason})
        self.healthy = False

    async def close(self) -> None:
        """Close both connections."""
        await self.http.aclose()
        if self._session is not None:
            await self._session.close()
        await self.channel.close()


class Pool:
    """Interchangeable replicas of one pool, kept healthy by a background loop.

    ``leases`` counts the requests routed to this pool and not yet answered (``DataPlane.hold``): a pool replaced
    by a routing reload is closed only once they are all done.
    """

    def __init__(self, name: str, spec: PoolSpec) -> None:
        self.name = name
        self.spec = spec
        self.replicas: list[Replica] = [Replica(endpoint) for endpoint in spec.endpoints]
        self.leases = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Discover, probe once (so the first requests find healthy replicas), then keep probing."""
        await self._discover()
        await asyncio.gather(*(replica.probe() for replica in self.replicas))
        self._task = asyncio.create_task(self._loop(), name=f"pool-{self.name}")

    async def _loop(self) -> None:
        discover_every = self.spec.discover.interval_s if self.spec.discover else None
        since_discovery = 0.0
        while True:
            await asyncio.sleep(self.spec.health_interval_s)
            since_discovery += self.spec.health_interval_s
            if discover_every is not None and since_discovery >= discover_every:
                since_discovery = 0.0
                await self._discover()
            await asyncio.gather(*(replica.probe() for replica in self.replicas))

    async def _discover(self) -> None:
        spec = self.spec.discover
        if spec is None:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                spec.host, spec.grpc_port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            log.warning("discovery failed", extra={"pool": self.name, "error": str(exc)})
            return
        addresses = sorted({str(info[4][0]) for info in infos})
        wanted = {
            f"{a}:{spec.grpc_port}": EndpointSpec(http=f"{a}:{spec.http_port}", grpc=f"{a}:{spec.grpc_port}")
            for a in addresses
        }
        keep = [r for r in self.replicas if r.name in wanted]
        for gone in (r for r in self.replicas if r.name not in wanted):
            await gone.close()
        known = {r.name for r in keep}
        self.replicas = keep + [Replica(e) for name, e in wanted.items() if name not in known]

    def pick(self, model: str, version: int | None, *, exclude: Iterable[Replica] = ()) -> Replica:
        """The healthy replica serving ``model``/``version`` with the fewest outstanding requests."""
        excluded = set(map(id, exclude))
        candidates = [
            r for r in self.replicas if r.healthy and id(r) not in excluded and r.serves(model, version)
        ]
        if not candidates:
            what = model if version is None else f"{model} version {version}"
            raise Unavailable(f"no healthy Triton replica in pool {self.name!r} serves {what}")
        fewest = min(r.outstanding for r in candidates)
        tied = [r for r in candidates if r.outstanding == fewest]
        # Random among equals: sequential clients would otherwise always land on the first replica.
        return tied[0] if len(tied) == 1 else random.choice(tied)

    def ready_versions(self, model: str) -> set[int]:
        """Versions of ``model`` READY on at least one healthy replica."""
        versions: set[int] = set()
        for replica in self.replicas:
            if replica.healthy:
                versions |= replica.ready_versions.get(model, set())
        return versions

    def models(self) -> set[str]:
        """Models READY on at least one healthy replica."""
        return {m for r in self.replicas if r.healthy for m, v in r.ready_versions.items() if v}

    async def probe_all(self) -> None:
        """Probe every replica now (after a load or unload, so routing sees the new versions at once)."""
        await asyncio.gather(*(replica.probe() for replica in self.replicas))

    async def stop_probing(self) -> None:
        """Stop the health-check loop."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop probing and close every replica."""
        await self.stop_probing()
        await asyncio.gather(*(replica.close() for replica in self.replicas))
