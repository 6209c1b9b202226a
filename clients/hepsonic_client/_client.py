"""The synchronous client: validation, retries, failover, fallbacks and provenance over transports."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Self, TypeVar

import numpy as np

from ._client_types import NUMPY_OF_DATATYPE
from ._exceptions import (
    ConnectError,
    FallbackError,
    HepsonicError,
    InputError,
    ModelNotFoundError,
    NoServerAvailableError,
    OverloadedError,
    TransportError,
    UnavailableError,
)
from ._options import FallbackOptions, RetryPolicy, Timeouts
from ._pool import ProcessPool
from ._result import InferResult, Provenance
from ._shm import SharedMemory, SharedMemoryRefused
from ._transport import Array, ModelInfo, ModelMetadata, Reply, Transport

__all__ = ["Client", "parse_server"]

log = logging.getLogger("hepsonic_client")

Protocol = Literal["grpc", "http"]
T = TypeVar("T")


def parse_server(url: str, protocol: Protocol) -> tuple[Protocol, str]:
    """``"grpc://h:p"``, ``"http://h:p"`` or ``"h:p"`` (with ``protocol``) -> (protocol, "h:p")."""
    for scheme in ("grpc", "http"):
        prefix = f"{scheme}://"
        if url.startswith(prefix):
            return ("grpc" if scheme == "grpc" else "http"), url[len(prefix) :].rstrip("/")
    if "://" in url:
        msg = f"server URL {url!r}: scheme must be grpc:// or http:// (https is not supported yet)"
        raise ValueError(msg)
    if protocol not in ("grpc", "http"):
        msg = f"protocol must be 'grpc' or 'http', got {protocol!r}"
        raise ValueError(msg)
    return protocol, url


def make_transport(
    url: str, *, protocol: Protocol, headers: Mapping[str, str], timeouts: Timeouts
) -> Transport:
    """A transport for one server URL."""
    scheme, host_port = parse_server(url, protocol)
    if scheme == "grpc":
        from ._grpc import GrpcTransport  # noqa: PLC0415

        return GrpcTransport(host_port, headers=headers)
    from ._http import HttpTransport  # noqa: PLC0415

    return HttpTransport(
        host_port, headers=headers, connect_timeout=timeouts.connect, request_timeout=timeouts.request
    )


class _Server:
    """A transport plus its circuit-breaker state."""

    def __init__(self, transport: Transport, *, via: str = "server") -> None:
        self.transport = transport
        self.via = via
        self.open_until = 0.0
        #: False once the server refused a shared-memory region: its tensors then travel in the requests.
        self.takes_shared_memory = True

    def available(self, now: float) -> bool:
        return now >= self.open_until


class Client:
    """Blocking client for hepsonic (the gateway) or any KServe v2 server (a Triton directly).

    >>> client = Client("grpc://127.0.0.1:8081")                      # doctest: +SKIP
    >>> result = client.infer("ringer", {"rings": r, "et": et, "eta": eta})  # doctest: +SKIP
    >>> result["discriminant"], result.provenance                      # doctest: +SKIP

    ``url`` is one server or an ordered list (failover goes down the list; a failing server is skipped
    for ``RetryPolicy.circuit_open`` seconds). Connections and request objects are reused; the client is
    thread-safe. ``fallback`` (opt-in) starts an embedded Triton, then in-process onnxruntime, when no
    server answers; every fallback is logged at WARNING and counted in :meth:`stats`.
    ``shared_memory=True`` passes tensors through Triton system shared memory when the server is on this
    machine (``None``: off; see :class:`~hepsonic_client.SharedMemory` for clean-up); a server that refuses
    regions (the gateway, which spreads requests over replicas) gets the tensors in the requests instead.
    """

    def __init__(
        self,
        url: str | Sequence[str] = "grpc://127.0.0.1:8081",
        *,
        protocol: Protocol = "grpc",
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        fallback: FallbackOptions | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        shared_memory: bool = False,
        validate_inputs: bool = True,
        transport: Transport | Sequence[Transport] | None = None,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.fallback = fallback
        self._headers = dict(headers or {})
        if api_key is not None:
            self._headers["authorization"] = f"Bearer {api_key}"
        if transport is not None:
            transports = [transport] if isinstance(transport, Transport) else list(transport)
        else:
            urls = [url] if isinstance(url, str) else list(url)
            if not urls:
                msg = "Client needs at least one server URL"
                raise ValueError(msg)
            transports = [
                make_transport(u, protocol=protocol, headers=self._headers, timeouts=self.timeouts)
                for u in urls
            ]
        self._servers = [_Server(t, via=t.kind) for t in transports]
        self._fallback_servers: list[_Server] = []
        self._fallback_lock = threading.Lock()
        self._embedded: Any = None  # EmbeddedTriton, started on demand
        self._validate = validate_inputs
        self._metadata_cache: dict[tuple[str, str], ModelMetadata | None] = {}
        self._sha_cache: dict[tuple[str, str, str], str | None] = {}
        self._parameter_cache: dict[tuple[str, str], str | None] = {}
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._rng = random.Random()
        self._pool = ProcessPool("hepsonic")  # for infer_many
        self._shm: Any = None
        if shared_memory:
            self._shm = SharedMemory()
        self._closed = False

    # ------------------------------------------------------------------ public API
    def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        version: int | str | None = None,
        *,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> InferResult:
        """Run ``model`` on a batch. ``inputs`` maps input names to arrays with a leading batch axis.

        Returns the outputs by name, with ``.provenance``. Raises :class:`InputError` (nothing sent)
        when the inputs do not match the model, and :class:`NoServerAvailableError` when no server
        (and no enabled fallback) answered.
        """
        version_str = "" if version is None else str(version)
        arrays = self._prepare(model, version_str, inputs)
        wanted = outputs if outputs is not None else self._output_names(model, version_str)
        deadline = timeout if timeout is not None else self.timeouts.request

        def call(server: _Server) -> Reply:
            if self._shm is not None and server.transport.is_local and server.takes_shared_memory:
                shm: SharedMemory = self._shm
                try:
                    return shm.infer(
                        server.transport,
                        model,
                        arrays,
                        version=version_str,
                        outputs=wanted,
                        timeout=deadline,
                        metadata=self._metadata_cache.get((model, version_str)),
                    )
                except SharedMemoryRefused as exc:
                    server.takes_shared_memory = False
                    log.warning(
                        "hepsonic: no shared memory with %s; tensors go in the requests: %s",
                        server.transport.address,
                        exc,
                    )
            return server.transport.infer(
                model, arrays, version=version_str, outputs=wanted, timeout=deadline
            )

        reply, server = self._dispatch(model, call)
        return self._result(model, reply, server)

    def infer_many(
        self,
        model: str,
        batches: Sequence[Mapping[str, Any]],
        version: int | str | None = None,
        *,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
        concurrency: int = 4,
    ) -> list[InferResult]:
        """Run several batches with up to ``concurrency`` requests in flight; results in input order."""
        if not batches:
            return []
        pool = self._pool.get(concurrency)
        futures = [
            pool.submit(self.infer, model, batch, version, outputs=outputs, timeout=timeout)
            for batch in batches
        ]
        return [future.result() for future in futures]

    def is_ready(self) -> bool:
        """True when at least one configured server is ready."""
        return any(s.transport.is_ready(timeout=self.timeouts.connect) for s in self._servers)

    def models(self) -> list[ModelInfo]:
        """The models and versions served by the first server that answers."""
        return self._dispatch("", lambda s: s.transport.models(timeout=self.timeouts.connect))[0]

    def metadata(self, model: str, version: int | str | None = None) -> ModelMetadata:
        """A model's inputs and outputs (cached)."""
        version_str = "" if version is None else str(version)
        key = (model, version_str)
        cached = self._metadata_cache.get(key)
        if cached is None:
            fetched, _ = self._dispatch(
                model,
                lambda s: s.transport.metadata(model, version=version_str, timeout=self.timeouts.connect),
            )
            self._metadata_cache[key] = cached = fetched
        return cached

    def model_parameter(self, model: str, key: str, version: int | str) -> str | None:
        """A parameter a served version publishes in its configuration (``<key>/<version>``, such as
        pv_finder's ``peak_finder``), or None when it publishes none. Cached per (model, key, version)."""
        cache_key = (model, f"{key}/{version}")
        if cache_key not in self._parameter_cache:
            value, _ = self._dispatch(
                model,
                lambda s: s.transport.config_parameter(model, cache_key[1], timeout=self.timeouts.connect),
            )
            self._parameter_cache[cache_key] = value
        return self._parameter_cache[cache_key]

    def stats(self) -> dict[str, int]:
        """Counters: requests, retries, failovers, fallback uses (by kind)."""
        with self._counts_lock:
            return dict(self._counts)

    @property
    def servers(self) -> list[str]:
        """Addresses of the configured servers, then of any fallback in use."""
        return [s.transport.address for s in (*self._servers, *self._fallback_servers)]

    def close(self) -> None:
        """Close connections, stop an embedded fallback Triton, free shared memory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown()
        if self._shm is not None:
            self._shm.close()
        for server in (*self._servers, *self._fallback_servers):
            server.transport.close()
        if self._embedded is not None:
            self._embedded.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _count(self, name: str, amount: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += amount

    def _describe(self, model: str, version: str) -> ModelMetadata | None:
        """Metadata for validation; None when no server can describe the model (validation skipped)."""
        key = (model, version)
        if key in self._metadata_cache:
            return self._metadata_cache[key]
        try:
            meta: ModelMetadata | None = self.metadata(model, version or None)
        except ModelNotFoundError:
            raise
        except HepsonicError as exc:
            log.debug("no metadata for %s (%s); inputs not validated", model, exc)
            meta = None
        self._metadata_cache[key] = meta
        return meta

    def _output_names(self, model: str, version: str) -> list[str] | None:
        meta = self._metadata_cache.get((model, version))
        return [t.name for t in meta.outputs] if meta is not None else None

    def _prepare(self, model: str, version: str, inputs: Mapping[str, Any]) -> dict[str, Array]:
        arrays = {name: np.ascontiguousarray(value) for name, value in inputs.items()}
        if not self._validate:
            return arrays
        meta = self._describe(model, version)
        if meta is None:
            return arrays
        expected = {t.name: t for t in meta.inputs}
        missing = sorted(set(expected) - set(arrays))
        unknown = sorted(set(arrays) - set(expected))
        if missing or unknown:
            msg = (
                f"model {model!r}: inputs {sorted(arrays)} do not match the model's inputs "
                f"{sorted(expected)} (missing {missing}, unknown {unknown})"
            )
            raise InputError(msg, model=model)
        batch_sizes = set()
        ordered: dict[str, Array] = {}
        for name, spec in expected.items():  # server order: keeps request templates stable
            array = arrays[name]
            want_dtype = NUMPY_OF_DATATYPE.get(spec.datatype)
            if want_dtype is not None and array.dtype != want_dtype:
                msg = (
                    f"model {model!r}, input {name!r}: expected dtype {want_dtype} ({spec.datatype}), "
                    f"got {array.dtype}; convert explicitly, e.g. array.astype(np.{want_dtype})"
                )
                raise InputError(msg, model=model)
            shape_ok = array.ndim == len(spec.shape) and all(
                want in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
            )
            if not shape_ok:
                pretty = tuple("batch" if i == 0 and d == -1 else d for i, d in enumerate(spec.shape))
                msg = (
                    f"model {model!r}, input {name!r}: expected shape {pretty} (-1 = any), got {array.shape}"
                )
                raise InputError(msg, model=model)
            if spec.shape and spec.shape[0] == -1:
                batch_sizes.add(array.shape[0])
            ordered[name] = array
        if len(batch_sizes) > 1:
            sizes = {name: a.shape[0] for name, a in ordered.items()}
            msg = f"model {model!r}: inputs disagree on the batch size: {sizes}"
            raise InputError(msg, model=model)
        return ordered

    def _sleep_before_retry(self, attempt: int, error: TransportError) -> None:
        delay = self.retry.backoff(attempt, self._rng.random())
        if isinstance(error, OverloadedError) and error.retry_after_s is not None:
            # The server's hint wins, with a little jitter so that refused jobs do not return in step.
            delay = min(error.retry_after_s, self.retry.max_retry_after) * (1.0 + 0.1 * self._rng.random())
        time.sleep(delay)

    def _try_server(self, server: _Server, call: Callable[[_Server], T]) -> T:
        last: TransportError | None = None
        for attempt in range(self.retry.attempts_per_server):
            if attempt:
                assert last is not None
                self._count("retries")
                self._sleep_before_retry(attempt - 1, last)
            try:
                return call(server)
            except (ConnectError, UnavailableError, OverloadedError) as exc:
                last = exc
                log.info("%s: %s (attempt %d)", server.transport.address, exc, attempt + 1)
        assert last is not None
        raise last

    def _dispatch(self, model: str, call: Callable[[_Server], T]) -> tuple[T, _Server]:
        self._count("requests")
        errors: list[HepsonicError] = []
        now = time.monotonic()
        candidates = [s for s in self._servers if s.available(now)] or list(self._servers)
        for index, server in enumerate(candidates):
            try:
                return self._try_server(server, call), server
            except (TransportError, ModelNotFoundError) as exc:
                if isinstance(exc, TransportError) and not isinstance(
                    exc, ConnectError | UnavailableError | OverloadedError
                ):
                    raise  # timeouts: the request may still run; do not send it elsewhere too
                errors.append(exc)
                if not isinstance(exc, ModelNotFoundError):
                    server.open_until = time.monotonic() + self.retry.circuit_open
                if index + 1 < len(candidates):
                    self._count("failovers")
                    log.warning(
                        "hepsonic: %s failed (%s); failing over to %s",
                        server.transport.address,
                        exc,
                        candidates[index + 1].transport.address,
                    )
        if self.fallback is not None and model:
            for server in self._fallbacks():
                try:
                    result = self._try_server(server, call)
                except (TransportError, ModelNotFoundError) as exc:
                    errors.append(exc)
                    log.warning("hepsonic: fallback %s failed too (%s)", server.transport.address, exc)
                    continue
                self._count(f"fallback_{server.via}")
                log.warning(
                    "hepsonic: FALLBACK: no server answered for model %r; used %s (%s)",
                    model,
                    server.via,
                    server.transport.address,
                )
                return result, server
        if len(errors) == 1 and isinstance(errors[0], ModelNotFoundError):
            raise errors[0]
        detail = "; ".join(str(e) for e in errors) or "no server configured"
        msg = f"no server answered{f' for model {model!r}' if model else ''}: {detail}"
        raise NoServerAvailableError(msg, model=model or None) from (errors[-1] if errors else None)

    def _fallbacks(self) -> list[_Server]:
        """Start the enabled fallbacks once (embedded Triton, then onnxruntime); logged and counted."""
        assert self.fallback is not None
        with self._fallback_lock:
            if self._fallback_servers:
                return self._fallback_servers
            options = self.fallback
            if options.embedded_triton:
                from ._fallback import EmbeddedTriton  # noqa: PLC0415

                try:
                    log.warning(
                        "hepsonic: FALLBACK: no configured server answers; starting an embedded Triton on %s",
                        options.repository,
                    )
                    self._embedded = EmbeddedTriton(
                        options.repository,
                        command=options.triton_command,
                        start_timeout=self.timeouts.fallback_start,
                    )
                    self._embedded.start()
                    from ._grpc import GrpcTransport  # noqa: PLC0415

                    self._fallback_servers.append(
                        _Server(GrpcTransport(self._embedded.grpc_address), via="embedded_triton")
                    )
                    self._count("fallback_embedded_triton_started")
                except FallbackError as exc:
                    self._count("fallback_embedded_triton_failed")
                    log.warning("hepsonic: embedded Triton fallback unavailable: %s", exc)
            if options.local_onnxruntime:
                from ._local import OnnxRuntimeTransport  # noqa: PLC0415

                try:
                    self._fallback_servers.append(
                        _Server(OnnxRuntimeTransport(options.repository), via="onnxruntime")
                    )
                except FallbackError as exc:
                    self._count("fallback_onnxruntime_failed")
                    log.warning("hepsonic: onnxruntime fallback unavailable: %s", exc)
            return self._fallback_servers

    def _result(self, model: str, reply: Reply, server: _Server) -> InferResult:
        sha256 = reply.sha256
        version = reply.model_version
        address = server.transport.address
        if sha256 is None and version:
            key = (address, model, version)
            if key not in self._sha_cache:
                try:
                    self._sha_cache[key] = server.transport.config_parameter(
                        model, f"sha256/{version}", timeout=self.timeouts.connect
                    )
                except HepsonicError as exc:
                    log.debug("no sha256 for %s/%s on %s: %s", model, version, address, exc)
                    self._sha_cache[key] = None
            sha256 = self._sha_cache[key]
        provenance = Provenance(
            model=model, version=version, sha256=sha256, server=reply.server or address, via=server.via
        )
        return InferResult(reply.outputs, provenance=provenance)
