"""HTTP transport (KServe v2 REST with the binary-tensor extension), on tritonclient.http.

tritonclient.http is gevent based and must not be shared between OS threads, so each thread gets its own
connection (kept for the transport's life). ``InferInput``/``InferRequestedOutput`` objects are cached
per thread by model, version, input shapes and outputs; each call only sets new data on them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import np_to_triton_dtype

from ._convert import HttpStatusError, converted_errors
from ._transport import Array, ModelInfo, ModelMetadata, Reply, ShmBinding, TensorMetadata, Transport

__all__ = ["HttpTransport"]

_TEMPLATE_CACHE_SIZE = 256
_PROVENANCE_HEADERS = ("x-hepsonic-model-version", "x-hepsonic-model-sha256", "x-hepsonic-server")


#: The process in which each thread last used gevent (tritonclient.http runs on it).
_gevent_user = threading.local()


def _reinit_gevent_after_fork() -> None:
    """Give this thread's gevent hub its own event loop when it was inherited through a fork.

    gevent's hub is per thread, and a forked child (a worker process of the job) inherits the forking thread's:
    its epoll descriptor is the parent's, so the parent takes the child's socket events and the child waits
    forever. ``gevent.reinit`` makes the child a loop of its own (gevent only does it for ``gevent.fork``).
    """
    pid = os.getpid()
    if getattr(_gevent_user, "pid", pid) != pid:
        import gevent  # noqa: PLC0415

        gevent.reinit()
    _gevent_user.pid = pid


class _HeaderKeepingClient(triton_http.InferenceServerClient):  # type: ignore[misc]
    """tritonclient.http client that keeps the provenance headers and raises on non-200 answers.

    tritonclient's ``InferResult`` drops the response headers; the gateway's provenance and
    ``Retry-After`` hints live there.
    """

    last_headers: dict[str, str]

    def _check(self, response: Any) -> Any:
        if response.status_code != 200:
            headers = {"retry-after": response.get("retry-after")} if response.status_code == 429 else {}
            raise HttpStatusError(response.status_code, response.read(), headers)
        self.last_headers = {name: response.get(name) for name in _PROVENANCE_HEADERS}
        return response

    def _post(self, request_uri: str, request_body: Any, headers: Any, query_params: Any) -> Any:
        return self._check(super()._post(request_uri, request_body, headers, query_params))

    def _get(self, request_uri: str, headers: Any, query_params: Any) -> Any:
        return self._check(super()._get(request_uri, headers, query_params))


class HttpTransport(Transport):
    """One HTTP server (a Triton or the hepsonic gateway)."""

    def __init__(
        self,
        host_port: str,
        *,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float | None = 5.0,
        request_timeout: float | None = 60.0,
        is_local: bool | None = None,
    ) -> None:
        self.address = f"http://{host_port}"
        self.is_local = (
            is_local if is_local is not None else host_port.startswith(("127.", "localhost", "[::1]"))
        )
        self._host_port = host_port
        self._headers = dict(headers or {})
        self._connect_timeout = connect_timeout or 3600.0
        self._request_timeout = request_timeout or 3600.0
        self._local = threading.local()
        self._all_clients: list[tuple[int, _HeaderKeepingClient]] = []
        self._lock = threading.Lock()

    def _client(self) -> _HeaderKeepingClient:
        client: _HeaderKeepingClient | None = getattr(self._local, "client", None)
        # A forked child (a worker process of the job) inherits this thread's connection: sharing the socket
        # with the parent mixes up the answers, so it opens its own.
        if client is None or self._local.pid != os.getpid():
            _reinit_gevent_after_fork()
            client = _HeaderKeepingClient(
                self._host_port,
                connection_timeout=self._connect_timeout,
                network_timeout=self._request_timeout,
            )
            self._local.client = client
            self._local.pid = os.getpid()
            self._local.templates = {}
            with self._lock:
                self._all_clients.append((os.getpid(), client))
        return client

    def _tensors(
        self,
        model: str,
        version: str,
        inputs: Mapping[str, Array],
        outputs: Sequence[str] | None,
        shm: ShmBinding | None,
    ) -> tuple[list[Any], list[Any] | None]:
        key = (
            model,
            version,
            tuple((name, array.dtype.str, array.shape) for name, array in inputs.items()),
            tuple(outputs) if outputs is not None else None,
            shm,
        )
        cache: dict[Any, Any] = self._local.templates
        entry = cache.get(key)
        if entry is None:
            if len(cache) >= _TEMPLATE_CACHE_SIZE:
                cache.pop(next(iter(cache)))
            infer_inputs = [
                triton_http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                for name, array in inputs.items()
            ]
            requested = None
            if outputs is not None:
                requested = [triton_http.InferRequestedOutput(name, binary_data=True) for name in outputs]
            if shm is not None:
                for infer_input in infer_inputs:
                    place = shm.input_at(infer_input.name())
                    if place is not None:
                        infer_input.set_shared_memory(shm.region, place[1], place[0])
                for output in requested or ():
                    place = shm.output_at(output.name())
                    if place is not None:
                        output.set_shared_memory(shm.region, place[1], place[0])
            entry = cache[key] = (infer_inputs, requested)
        infer_inputs, requested = entry
        for infer_input, array in zip(infer_inputs, inputs.values(), strict=True):
            if shm is None or shm.input_at(infer_input.name()) is None:
                infer_input.set_data_from_numpy(array, binary_data=True)
        return infer_inputs, requested

    def infer(
        self,
        model: str,
        inputs: Mapping[str, Array],
        *,
        version: str,
        outputs: Sequence[str] | None,
        timeout: float | None,  # noqa: ARG002 - set per connection (network_timeout)
        shm: ShmBinding | None = None,
    ) -> Reply:
        with converted_errors(server=self.address, model=model):
            client = self._client()
            infer_inputs, requested = self._tensors(model, version, inputs, outputs, shm)
            result = client.infer(
                model, infer_inputs, model_version=version, outputs=requested, headers=self._headers or None
            )
            response = result.get_response()
            decoded: dict[str, Array] = {}
            for output in response.get("outputs", ()):
                if shm is not None and shm.output_at(output["name"]) is not None:
                    decoded[output["name"]] = np.empty(0)  # left in shared memory
                    continue
                array = result.as_numpy(output["name"])
                decoded[output["name"]] = array if array is not None else np.empty(0)
            headers = client.last_headers
            return Reply(
                outputs=decoded,
                model_version=headers.get("x-hepsonic-model-version")
                or str(response.get("model_version") or version),
                sha256=headers.get("x-hepsonic-model-sha256"),
                server=headers.get("x-hepsonic-server"),
            )

    def is_ready(self, *, timeout: float | None) -> bool:  # noqa: ARG002
        try:
            with converted_errors(server=self.address):
                return bool(self._client().is_server_ready(headers=self._headers or None))
        except Exception:  # noqa: BLE001 - "not ready" is the answer for any failure
            return False

    def models(self, *, timeout: float | None) -> list[ModelInfo]:  # noqa: ARG002
        with converted_errors(server=self.address):
            index = self._client().get_model_repository_index(headers=self._headers or None)
            return [
                ModelInfo(
                    name=entry["name"], version=str(entry.get("version", "")), state=entry.get("state", "")
                )
                for entry in index
                if entry.get("state", "READY") == "READY"
            ]

    def metadata(self, model: str, *, version: str, timeout: float | None) -> ModelMetadata:  # noqa: ARG002
        with converted_errors(server=self.address, model=model):
            answer = self._client().get_model_metadata(model, version, headers=self._headers or None)

            def tensors(entries: list[dict[str, Any]]) -> tuple[TensorMetadata, ...]:
                return tuple(
                    TensorMetadata(name=t["name"], datatype=t["datatype"], shape=tuple(t["shape"]))
                    for t in entries
                )

            return ModelMetadata(
                name=answer["name"],
                versions=tuple(answer.get("versions", ())),
                inputs=tensors(answer.get("inputs", [])),
                outputs=tensors(answer.get("outputs", [])),
            )

    def config_parameter(self, model: str, key: str, *, timeout: float | None) -> str | None:  # noqa: ARG002
        with converted_errors(server=self.address, model=model):
            config = self._client().get_model_config(model, headers=self._headers or None)
            value = config.get("parameters", {}).get(key)
            return str(value["string_value"]) if value else None

    def register_shared_memory(self, name: str, key: str, byte_size: int, *, timeout: float | None) -> None:  # noqa: ARG002
        with converted_errors(server=self.address):
            self._client().register_system_shared_memory(name, key, byte_size, headers=self._headers or None)

    def unregister_shared_memory(self, name: str, *, timeout: float | None) -> None:  # noqa: ARG002
        with converted_errors(server=self.address):
            self._client().unregister_system_shared_memory(name, headers=self._headers or None)

    def close(self) -> None:
        with self._lock:
            clients, self._all_clients = self._all_clients, []
        for owner, client in clients:
            # A connection inherited through a fork is the parent's to close.
            if owner != os.getpid():
                continue
            # closing another thread's gevent client may fail; the connection dies with it anyway
            with contextlib.suppress(Exception):
                client.close()
