"""The gRPC adapter: ``inference.GRPCInferenceService`` forwarded to Triton's, tensors untouched."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ._dataplane import DataPlane, ReplicaUnreachable, Target
from ._errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    UpstreamError,
)
from ._upstream import Replica

__all__ = ["GatewayServicer", "create_grpc_server"]

_CODE: dict[type[GatewayError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}
#: Triton's gRPC statuses as HTTP statuses (UpstreamError keeps one protocol-neutral status) and back.
_HTTP_OF: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
}
_CODE_OF_HTTP = {status: code for code, status in _HTTP_OF.items()}
_ROUTE_KEY = "x-hepsonic-route-key"


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: GatewayError) -> NoReturn:
    if isinstance(exc, UpstreamError):
        code = _CODE_OF_HTTP.get(exc.http_status, grpc.StatusCode.INTERNAL)
    else:
        code = _CODE.get(type(exc), grpc.StatusCode.INTERNAL)
    if isinstance(exc, Overloaded):
        context.set_trailing_metadata((("retry-after-ms", str(int(exc.retry_after_s * 1000))),))
    await context.abort(code, exc.message)
    raise AssertionError("unreachable")  # context.abort raises


async def _call(coro: Any, replica: Replica) -> Any:
    """Await an upstream RPC; unreachable replicas become :class:`ReplicaUnreachable`."""
    try:
        return await coro
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            raise ReplicaUnreachable(f"{replica.name}: {exc.details()}") from exc
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise DeadlineExceeded(f"Triton {replica.name} did not answer in time") from exc
        raise UpstreamError(exc.details() or str(code), http_status=_HTTP_OF.get(code, 500)) from exc


def _metadata(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value)
    return None


class GatewayServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Thin adapter over :class:`DataPlane`; every domain error is mapped in :func:`_abort`."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.plane = dataplane

    @staticmethod
    def _timeout(context: grpc.aio.ServicerContext[Any, Any], target: Target) -> float:
        # Propagate the caller's deadline to Triton, capped by the model's own timeout.
        remaining = context.time_remaining()
        return min(target.policy.timeout_s, remaining) if remaining is not None else target.policy.timeout_s

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: ARG002
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: ARG002
        return service_pb2.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: ARG002
        try:
            self.plane.resolve(request.name, request.version or None)
        except GatewayError:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        try:
            replica = self.plane.any_replica()
            return await _call(replica.grpc.ServerMetadata(request, timeout=10), replica)
        except GatewayError as exc:
            await _abort(context, exc)

    async def _model_rpc(self, method: str, request: Any, context: Any, name: str, version: str) -> Any:
        try:
            target = self.plane.resolve(name, version or None)
            request.version = str(target.version)
            return await self.plane.forward(
                target,
                lambda r: _call(getattr(r.grpc, method)(request, timeout=self._timeout(context, target)), r),
            )
        except GatewayError as exc:
            await _abort(context, exc)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        return await self._model_rpc("ModelMetadata", request, context, request.name, request.version)

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        return await self._model_rpc("ModelConfig", request, context, request.name, request.version)

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        return await self._model_rpc("ModelStatistics", request, context, request.name, request.version)

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:  # noqa: ARG002
        models = [
            service_pb2.RepositoryIndexResponse.ModelIndex(name=model, version=str(version), state="READY")
            for model, versions in sorted(self.plane.models().items())
            for version in sorted(versions)
        ]
        return service_pb2.RepositoryIndexResponse(models=models)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        import time  # noqa: PLC0415

        started = time.perf_counter()
        status = "error"
        target: Target | None = None
        try:
            target = self.plane.resolve(
                request.model_name, request.model_version or None, route_key=_metadata(context, _ROUTE_KEY)
            )
            request.model_version = str(target.version)
            served_by: list[str] = []

            async def call(replica: Replica) -> Any:
                served_by.append(replica.name)
                return await _call(
                    replica.grpc.ModelInfer(request, timeout=self._timeout(context, target)),
                    replica,
                )

            response = await self.plane.forward(target, call)
            status = "OK"
            response.parameters["hepsonic_server"].string_param = served_by[-1]
            sha = await self.plane.sha256(target)
            if sha:
                response.parameters["hepsonic_model_sha256"].string_param = sha
            return response
        except GatewayError as exc:
            status = type(exc).__name__
            await _abort(context, exc)
        finally:
            if target is not None:
                self.plane.metrics.requests.labels(target.model, str(target.version), "grpc", status).observe(
                    time.perf_counter() - started
                )


async def create_grpc_server(
    dataplane: DataPlane, address: str, *, tls: tuple[bytes, bytes] | None = None
) -> grpc.aio.Server:
    """Start the gRPC front on ``address`` (TLS when ``(key, cert)`` PEM bytes are given)."""
    server = grpc.aio.server(
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(GatewayServicer(dataplane), server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
    if port == 0:
        raise OSError(f"cannot bind the gRPC front to {address}")
    await server.start()
    return server
