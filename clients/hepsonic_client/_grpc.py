"""gRPC transport (KServe v2 ``inference.GRPCInferenceService``), on tritonclient's protobufs.

One channel per transport (thread-safe, reused). The ``ModelInferRequest`` for a given model, version,
input shapes and requested outputs is built once per thread and reused: each call only swaps the raw
tensor bytes. This is the same reuse the Triton maintainers advise for ``InferInput`` objects, one step
further (the request message itself is not rebuilt). Talking to the stub directly also keeps the gRPC
trailing metadata (``retry-after-ms``) that tritonclient's own wrapper drops.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor, np_to_triton_dtype, triton_to_np_dtype

from ._convert import converted_errors
from ._transport import Array, ModelInfo, ModelMetadata, Reply, ShmBinding, TensorMetadata, Transport

__all__ = ["GrpcTransport"]

_MAX_MESSAGE = 2**31 - 1
_TEMPLATE_CACHE_SIZE = 256


def _decode(datatype: str, shape: Sequence[int], raw: bytes) -> Array:
    if datatype == "BYTES":
        return np.asarray(deserialize_bytes_tensor(raw)).reshape(tuple(shape))
    return np.frombuffer(raw, dtype=triton_to_np_dtype(datatype)).reshape(tuple(shape))


class GrpcTransport(Transport):
    """One gRPC server (a Triton or the hepsonic gateway)."""

    def __init__(
        self,
        host_port: str,
        *,
        headers: Mapping[str, str] | None = None,
        is_local: bool | None = None,
    ) -> None:
        self.address = f"grpc://{host_port}"
        self.is_local = (
            is_local if is_local is not None else host_port.startswith(("127.", "localhost", "[::1]"))
        )
        self._channel = grpc.insecure_channel(
            host_port,
            options=[
                ("grpc.max_send_message_length", _MAX_MESSAGE),
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ],
        )
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._metadata = tuple((key.lower(), value) for key, value in (headers or {}).items())
        self._local = threading.local()

    def _templates(self) -> dict[Any, Any]:
        cache: dict[Any, Any] | None = getattr(self._local, "templates", None)
        if cache is None:
            cache = self._local.templates = {}
        return cache

    def _request(
        self,
        model: str,
        version: str,
        inputs: Mapping[str, Array],
        outputs: Sequence[str] | None,
        shm: ShmBinding | None,
    ) -> Any:
        key = (
            model,
            version,
            tuple((name, array.dtype.str, array.shape) for name, array in inputs.items()),
            tuple(outputs) if outputs is not None else None,
            shm,
        )
        cache = self._templates()
        request = cache.get(key)
        if request is None:
            if len(cache) >= _TEMPLATE_CACHE_SIZE:  # bounded: variable batch sizes make new keys
                cache.pop(next(iter(cache)))
            request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
            for name, array in inputs.items():
                tensor = request.inputs.add(
                    name=name, datatype=np_to_triton_dtype(array.dtype), shape=array.shape
                )
                place = shm.input_at(name) if shm is not None else None
                if shm is not None and place is not None:
                    offset, size = place
                    tensor.parameters["shared_memory_region"].string_param = shm.region
                    tensor.parameters["shared_memory_byte_size"].int64_param = size
                    tensor.parameters["shared_memory_offset"].int64_param = offset
            for name in outputs or ():
                requested = request.outputs.add(name=name)
                place = shm.output_at(name) if shm is not None else None
                if shm is not None and place is not None:
                    offset, size = place
                    requested.parameters["shared_memory_region"].string_param = shm.region
                    requested.parameters["shared_memory_byte_size"].int64_param = size
                    requested.parameters["shared_memory_offset"].int64_param = offset
            cache[key] = request
        del request.raw_input_contents[:]
        if shm is None:
            request.raw_input_contents.extend([array.tobytes() for array in inputs.values()])
        return request

    def infer(
        self,
        model: str,
        inputs: Mapping[str, Array],
        *,
        version: str,
        outputs: Sequence[str] | None,
        timeout: float | None,
        shm: ShmBinding | None = None,
    ) -> Reply:
        with converted_errors(server=self.address, model=model):
            request = self._request(model, version, inputs, outputs, shm)
            response = self._stub.ModelInfer(request, timeout=timeout, metadata=self._metadata)
            decoded: dict[str, Array] = {}
            raw = response.raw_output_contents
            for index, tensor in enumerate(response.outputs):
                if (shm is not None and shm.output_at(tensor.name) is not None) or index >= len(raw):
                    # left in shared memory; the client reads it from there
                    decoded[tensor.name] = np.empty(0, dtype=triton_to_np_dtype(tensor.datatype))
                else:
                    decoded[tensor.name] = _decode(tensor.datatype, tensor.shape, raw[index])
            params = response.parameters
            return Reply(
                outputs=decoded,
                model_version=response.model_version or version,
                sha256=params["hepsonic_model_sha256"].string_param
                if "hepsonic_model_sha256" in params
                else None,
                server=params["hepsonic_server"].string_param if "hepsonic_server" in params else None,
            )

    def is_ready(self, *, timeout: float | None) -> bool:
        try:
            with converted_errors(server=self.address):
                answer = self._stub.ServerReady(
                    service_pb2.ServerReadyRequest(), timeout=timeout, metadata=self._metadata
                )
                return bool(answer.ready)
        except Exception:  # noqa: BLE001 - "not ready" is the answer for any failure
            return False

    def models(self, *, timeout: float | None) -> list[ModelInfo]:
        with converted_errors(server=self.address):
            answer = self._stub.RepositoryIndex(
                service_pb2.RepositoryIndexRequest(ready=True), timeout=timeout, metadata=self._metadata
            )
            return [
                ModelInfo(name=entry.name, version=entry.version, state=entry.state or "READY")
                for entry in answer.models
            ]

    def metadata(self, model: str, *, version: str, timeout: float | None) -> ModelMetadata:
        with converted_errors(server=self.address, model=model):
            answer = self._stub.ModelMetadata(
                service_pb2.ModelMetadataRequest(name=model, version=version),
                timeout=timeout,
                metadata=self._metadata,
            )
            return ModelMetadata(
                name=answer.name,
                versions=tuple(answer.versions),
                inputs=tuple(
                    TensorMetadata(name=t.name, datatype=t.datatype, shape=tuple(t.shape))
                    for t in answer.inputs
                ),
                outputs=tuple(
                    TensorMetadata(name=t.name, datatype=t.datatype, shape=tuple(t.shape))
                    for t in answer.outputs
                ),
            )

    def config_parameter(self, model: str, key: str, *, timeout: float | None) -> str | None:
        with converted_errors(server=self.address, model=model):
            answer = self._stub.ModelConfig(
                service_pb2.ModelConfigRequest(name=model), timeout=timeout, metadata=self._metadata
            )
            parameters = answer.config.parameters
            return parameters[key].string_value if key in parameters else None

    def register_shared_memory(self, name: str, key: str, byte_size: int, *, timeout: float | None) -> None:
        with converted_errors(server=self.address):
            self._stub.SystemSharedMemoryRegister(
                service_pb2.SystemSharedMemoryRegisterRequest(name=name, key=key, byte_size=byte_size),
                timeout=timeout,
                metadata=self._metadata,
            )

    def unregister_shared_memory(self, name: str, *, timeout: float | None) -> None:
        with converted_errors(server=self.address):
            self._stub.SystemSharedMemoryUnregister(
                service_pb2.SystemSharedMemoryUnregisterRequest(name=name),
                timeout=timeout,
                metadata=self._metadata,
            )

    def close(self) -> None:
        self._channel.close()
