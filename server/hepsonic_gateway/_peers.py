"""The other gateway replicas, which a rollout moves in step with this one.

Run-time routes live in each gateway's memory, so with several gateway replicas behind one Service a rollout
started on one of them must shift the same aliases and split on the others, and must not unload the old version
while any of them still has requests on it. ``HEPSONIC_PEERS`` names them: ``host:port`` entries (http) or
``http(s)://host:port``; a name that resolves to several addresses (a Kubernetes headless Service) means each
of them. A gateway recognises itself among them by its id (``GATEWAY_ID``, reported by ``GET /admin/routes``)
and skips itself, so every replica can be given the same list.

Peers are driven through their admin API with the key the replicas share (``HEPSONIC_PEER_KEY_FILE``; it
acts as the admin principal ``gateway-peers``), or else with the key of the operator who started the rollout
(kept in memory for the rollout's duration). Keys are never logged. With the shared key a starting gateway also
takes the run-time routes of a running peer (:meth:`._rollout.Rollouts.adopt_peer_routes`), so a pod that
replaces another after a rollout serves the rollout's outcome, not the routing file's older one.

Over https, a gateway that serves TLS itself trusts exactly its own certificate (the replicas share one), so the
key goes only to holders of that certificate's key; one without a certificate of its own checks peers against
the system's trust store and the entry's host name.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._errors import Unavailable

__all__ = ["PeerDown", "PeerGateways", "PeerSession", "parse_peer"]


class PeerDown(Unavailable):
    """Nothing listens at a peer's address (connection refused or unreachable): a gateway that is not running.

    It serves nothing, so a rollout passes it by; when it starts (with the shared key) it takes the routes of a
    running peer.
    """


def parse_peer(entry: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of one ``HEPSONIC_PEERS`` entry; ValueError says what is wrong with it."""
    text = entry.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"peer {entry!r}: expected host:port or http(s)://host:port")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        raise ValueError(f"peer {entry!r}: needs a port (the peer gateway's HTTP port)")
    return parts.scheme, parts.hostname, port


class PeerGateways:
    """The configured peers; :meth:`connect` finds the ones that are up for one rollout.

    ``self_id``: this gateway's id (the ``gateway`` of its ``GET /admin/routes``), to skip itself.
    ``key``: the key the replicas share (``HEPSONIC_PEER_KEY_FILE``); without it, the operator's key is used.
    ``own_certificate``: this gateway's TLS certificate (PEM), the one https peers must present.
    """

    def __init__(
        self,
        entries: Sequence[str],
        *,
        self_id: str,
        key: str | None = None,
        own_certificate: Path | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.entries = [parse_peer(entry) for entry in entries if entry.strip()]
        self.self_id = self_id
        self.key = key
        self.own_certificate = own_certificate
        self.timeout_s = timeout_s

    async def addresses(self) -> dict[str, str]:
        """Every peer address as a base URL, with the host name its certificate is checked against."""
        loop = asyncio.get_running_loop()
        urls: dict[str, str] = {}
        for scheme, host, port in self.entries:
            try:
                found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise Unavailable(f"gateway peer {host}:{port} does not resolve: {exc}") from exc
            for address in sorted({str(info[4][0]) for info in found}):
                shown = f"[{address}]" if ":" in address else address
                urls.setdefault(f"{scheme}://{shown}:{port}", host)
        return urls

    def _verify(self) -> ssl.SSLContext | bool:
        if self.own_certificate is None:
            return True  # the system's trust store, and the entry's host name (sent as SNI)
        context = ssl.create_default_context(cafile=str(self.own_certificate))  # nothing but our certificate
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a leaf or intermediate may be the anchor
        context.check_hostname = False  # pinned: pod addresses are not in the certificate, and need not be
        return context

    async def connect(self, authorization: str | None = None) -> PeerSession:
        """The running peers other than this gateway (those not running are listed in ``down``); Unavailable
        names any that runs but does not answer.

        ``authorization`` (an operator's ``Authorization`` header) is used when there is no shared ``key``.
        """
        if self.key is not None:
            authorization = f"Bearer {self.key}"
        headers = {"authorization": authorization} if authorization else {}
        session = PeerSession(
            self, httpx.AsyncClient(headers=headers, timeout=self.timeout_s, verify=self._verify())
        )
        try:
            await session.refresh()
        except BaseException:
            await session.aclose()
            raise
        return session


class PeerSession:
    """The peers as last looked up, with the credentials a rollout (or a starting gateway) acts with."""

    def __init__(self, gateways: PeerGateways, client: httpx.AsyncClient) -> None:
        self.gateways = gateways
        self.client = client
        #: Host name of each peer address (sent as SNI over https).
        self.hosts: dict[str, str] = {}
        #: The running peers other than this gateway.
        self.urls: list[str] = []
        #: Listed peers where nothing listens (see :class:`PeerDown`).
        self.down: list[str] = []
        #: What each running peer's ``GET /admin/routes`` said at the last :meth:`refresh`.
        self.reports: dict[str, dict[str, Any]] = {}

    async def refresh(self) -> bool:
        """Look the peers up again (pods come and go during a rollout); whether the set changed."""
        self.hosts = await self.gateways.addresses()
        reports = await asyncio.gather(*(self.routes(url) for url in self.hosts), return_exceptions=True)
        running: dict[str, dict[str, Any]] = {}
        down = []
        for url, report in zip(self.hosts, reports, strict=True):
            if isinstance(report, PeerDown):
                down.append(url)
            elif isinstance(report, BaseException):
                raise report
            elif report.get("gateway") != self.gateways.self_id:
                running[url] = report
        urls = list(running)
        changed = (urls, down) != (self.urls, self.down)
        self.urls, self.down, self.reports = urls, down, running
        return changed

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        base = _base(url)
        if base.startswith("https://"):
            kwargs["extensions"] = {"sni_hostname": self.hosts.get(base, urlsplit(url).hostname)}
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.ConnectError as exc:
            if not _bad_certificate(exc):
                raise PeerDown(f"gateway peer {base} is not running: {exc!r}") from exc
            raise Unavailable(f"gateway peer {base} did not answer: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"gateway peer {base} did not answer: {exc!r}") from exc
        if response.status_code != 200:
            raise Unavailable(f"gateway peer {base} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    async def routes(self, url: str) -> dict[str, Any]:
        """``GET /admin/routes`` of one peer."""
        routes: dict[str, Any] = await self._call("GET", f"{url}/admin/routes")
        return routes

    async def set_route(self, model: str, aliases: dict[str, int], split: dict[str, float]) -> None:
        """The same run-time aliases and split on every peer."""
        body = {"aliases": aliases, "split": split}
        await asyncio.gather(
            *(self._call("PUT", f"{url}/admin/models/{model}/route", json=body) for url in self.urls)
        )

    async def inflight(self, model: str, version: int) -> int:
        """Requests on ``model`` version ``version`` in flight on all peers together."""
        reports = await asyncio.gather(*(self.routes(url) for url in self.urls))
        return sum(
            int(report.get("models", {}).get(model, {}).get("inflight", {}).get(str(version), 0))
            for report in reports
        )

    async def aclose(self) -> None:
        """Close the connections (the operator's key goes with them)."""
        await self.client.aclose()


def _bad_certificate(exc: BaseException) -> bool:
    """Whether a failed connection failed on TLS verification (a running peer we must not trust), not absence."""
    return any(isinstance(cause, ssl.SSLError) for cause in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it was raised from (causes, contexts, members of exception groups)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)


def _base(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
