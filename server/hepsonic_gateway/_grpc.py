"""The gRPC adapter: ``inference.GRPCInferenceService`` forwarded to Triton's, tensors untouched.

``ModelInfer`` is handled on raw bytes: the request is parsed once (to route and validate it) but forwarded as the
bytes that came, with at most a few appended bytes that override ``model_version`` (an alias resolved to a number)
and set ``id`` (the request id) — protobuf's last-field-wins rule makes that exact. Triton's answer is relayed as
bytes too, with the provenance parameters appended the same way (map entries merge). So no tensor is ever
re-serialised. ``ModelStreamInfer`` serves each streamed request the same way. Domain errors become gRPC statuses
in :data:`_CODE`, in one place (:func:`_abort`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ._auth import Principal
from ._dataplane import DataPlane, ReplicaUnreachable, Target, new_request_id
from ._errors import (
    NOT_OFFERED,
    Conflict,
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    NotFound,
    NotOffered,
    Overloaded,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UpstreamError,
)
from ._upstream import Replica
from ._validation import ModelSchema, TensorHeader

__all__ = ["GatewayServicer", "create_grpc_server"]

log = logging.getLogger("hepsonic.gateway")

_SERVICE = "inference.GRPCInferenceService"
#: The one table of domain error -> gRPC status (subclasses fall back to their parent's entry).
_CODE: dict[type[GatewayError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    TooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Conflict: grpc.StatusCode.ABORTED,
    NotOffered: grpc.StatusCode.UNIMPLEMENTED,
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
#: ``ModelStreamInferResponse.infer_response`` (field 2; field 1 is ``error_message``).
_STREAM_INFER_RESPONSE_FIELD = service_pb2.ModelStreamInferResponse.DESCRIPTOR.fields_by_name[
    "infer_response"
].number
_TYPED_CONTENTS = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
)


def code_of(exc: GatewayError) -> grpc.StatusCode:
    """The gRPC status of a domain error."""
    if isinstance(exc, UpstreamError):
        return _CODE_OF_HTTP.get(exc.http_status, grpc.StatusCode.INTERNAL)
    for cls in type(exc).__mro__:
        code = _CODE.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: GatewayError) -> NoReturn:
    if isinstance(exc, Overloaded):
        context.set_trailing_metadata((("retry-after-ms", str(int(exc.retry_after_s * 1000))),))
    await context.abort(code_of(exc), exc.message)
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


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {str(item.key): str(item.value) for item in context.invocation_metadata() or ()}


def tensor_headers(request: Any) -> list[TensorHeader]:
    """The tensor metadata of a ``ModelInferRequest`` (sizes from lengths only; no value is decoded)."""
    inputs, raw = request.inputs, request.raw_input_contents
    if not raw:
        return [TensorHeader(t.name, t.datatype, tuple(t.shape), None, _typed_count(t)) for t in inputs]
    if len(raw) != len(inputs):
        raise InvalidRequest(
            f"model {request.model_name!r}: {len(inputs)} inputs but {len(raw)} raw_input_contents"
        )
    return [
        TensorHeader(t.name, t.datatype, tuple(t.shape), len(contents), _typed_count(t))
        for t, contents in zip(inputs, raw, strict=True)
    ]


def _typed_count(tensor: Any) -> int | None:
    """Values sent in a tensor's typed ``contents`` (None when it has none)."""
    if not tensor.HasField("contents"):
        return None
    return sum(len(getattr(tensor.contents, name)) for name in _TYPED_CONTENTS)


class GatewayServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Thin adapter over :class:`DataPlane`; every domain error is mapped in :func:`_abort`."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.plane = dataplane

    def _principal(self, context: Any) -> Principal:
        return self.plane.authenticate(_metadata(context).get("authorization"))

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: ARG002
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: ARG002
        return service_pb2.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            principal = self._principal(context)
            try:
                self.plane.resolve(request.name, request.version or None, principal=principal)
            except (NotFound, Unavailable):
                return service_pb2.ModelReadyResponse(ready=False)
            return service_pb2.ModelReadyResponse(ready=True)
        except GatewayError as exc:
            await _abort(context, exc)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        try:
            self._principal(context)
            replica = self.plane.any_replica()
            return await _call(replica.grpc.ServerMetadata(request, timeout=10), replica)
        except GatewayError as exc:
            await _abort(context, exc)

    async def _model_rpc(self, method: str, request: Any, context: Any) -> Any:
        try:
            principal = self._principal(context)
            target = self.plane.resolve(request.name, request.version or None, principal=principal)
            request.version = str(target.version)
            timeout = self.plane.timeout_s(target, context.time_remaining())
            with self.plane.hold(target):
                return await self.plane.forward(
                    target, lambda r: _call(getattr(r.grpc, method)(request, timeout=timeout), r)
                )
        except GatewayError as exc:
            await _abort(context, exc)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        return await self._model_rpc("ModelMetadata", request, context)

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        return await self._model_rpc("ModelConfig", request, context)

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        if not request.name:  # statistics of every model: only for admins (it names every model)
            try:
                self._principal(context).require_admin("read statistics of every model")
                replica = self.plane.any_replica()
                return await _call(replica.grpc.ModelStatistics(request, timeout=10), replica)
            except GatewayError as exc:
                await _abort(context, exc)
        return await self._model_rpc("ModelStatistics", request, context)

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:  # noqa: ARG002
        try:
            principal = self._principal(context)
        except GatewayError as exc:
            await _abort(context, exc)
        models = [
            service_pb2.RepositoryIndexResponse.ModelIndex(name=model, version=str(version), state="READY")
            for model, versions in sorted(self.plane.models(principal).items())
            for version in sorted(versions)
        ]
        return service_pb2.RepositoryIndexResponse(models=models)

    async def ModelInfer(self, raw: bytes, context: Any) -> bytes:
        """Inference on raw bytes (see the module docstring): routed, validated, forwarded untouched."""
        try:
            return await self._infer(raw, _metadata(context), context.time_remaining())
        except GatewayError as exc:
            await _abort(context, exc)

    async def ModelStreamInfer(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        """Triton's bidirectional stream: every request is served as by ``ModelInfer``, concurrently.

        Answers come in completion order (match them by ``id``, as with Triton); a refused request becomes an
        ``error_message`` answer (with the request's model and ``id``) and the stream goes on, as Triton does.
        One unary call upstream per request: no served model is decoupled, so each request has exactly one answer.
        """
        metadata = _metadata(context)
        try:
            self.plane.authenticate(metadata.get("authorization"))
        except GatewayError as exc:
            await _abort(context, exc)
        answers: asyncio.Queue[bytes | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()

        async def serve(raw: bytes) -> None:
            try:
                answer = await self._infer(raw, metadata, context.time_remaining())
                await answers.put(_field_bytes(_STREAM_INFER_RESPONSE_FIELD, answer))
            except Exception as exc:  # every request gets its answer; the stream goes on
                if isinstance(exc, GatewayError):
                    message = f"[{code_of(exc).name}] {exc.message}"
                else:
                    log.exception("stream request failed")
                    message = f"[INTERNAL] the gateway failed on this request: {type(exc).__name__}"
                await answers.put(_stream_error(raw, message))

        async def read() -> None:
            try:
                async for raw in requests:
                    task = asyncio.create_task(serve(raw))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                if pending:
                    await asyncio.gather(*pending)
            finally:
                await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
        finally:
            for task in (reader, *pending):
                task.cancel()

    async def _infer(self, raw: bytes, metadata: dict[str, str], time_remaining: float | None) -> bytes:
        """One inference on raw bytes: route, validate, forward; the answer with provenance appended."""
        started = time.perf_counter()
        plane = self.plane
        status = "error"
        target: Target | None = None
        model = ""
        request_id = metadata.get("x-request-id", "")
        try:
            try:
                request = service_pb2.ModelInferRequest.FromString(raw)
            except Exception as exc:  # noqa: BLE001  (protobuf raises DecodeError or RuntimeWarning-ish errors)
                raise InvalidRequest(f"the ModelInferRequest does not parse: {exc}") from None
            model = request.model_name
            principal = plane.authenticate(metadata.get("authorization"))
            target = plane.resolve(
                model, request.model_version or None, route_key=metadata.get(_ROUTE_KEY), principal=principal
            )
            with plane.hold(target):
                headers = tensor_headers(request)
                schema = await plane.validate(target, headers, body_bytes=len(raw))
                timeout = plane.timeout_s(target, time_remaining)
                request_id = request_id or request.id or new_request_id()
                version = str(target.version)
                patch = service_pb2.ModelInferRequest()
                if request.model_version != version:
                    patch.model_version = version
                if not request.id:
                    patch.id = request_id
                pending = _Pending(
                    request,
                    version,
                    request.id or request_id,
                    raw,
                    patch.SerializeToString(),
                    timeout,
                    rows=headers[0].shape[0] if headers and headers[0].shape else 0,
                )
                signature = _signature(request, headers, schema) if target.policy.coalesce else None
                if schema is not None and signature is not None:
                    part, server = await plane.forward_coalesced(
                        target,
                        schema,
                        signature,
                        pending,
                        rows=pending.rows,
                        nbytes=len(raw),
                        call=_infer_merged,
                    )
                    answer = part()
                else:
                    answer, server = await plane.forward(target, pending.send)
                status = "OK"
                plane.log_served(request_id, target, server, principal, "grpc")
                return answer + _provenance(server, schema.sha256 if schema is not None else "")
        except GatewayError as exc:
            status = code_of(exc).name
            plane.log_refused(request_id, model, status, exc)
            raise
        finally:
            plane.observe(
                model if target is not None else "",
                target.version if target is not None else None,
                "grpc",
                status,
                time.perf_counter() - started,
            )


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more, per request
class _Pending:
    """One ``ModelInfer`` ready to go upstream: the parsed request, the id Triton echoes, its bytes as they came
    and the fields appended to them (version, id) when it leaves alone."""

    request: Any
    version: str
    answer_id: str
    raw: bytes
    patch: bytes
    timeout: float
    #: Its batch size (first dimension of its inputs).
    rows: int

    async def send(self, replica: Replica) -> tuple[bytes, str]:
        """Forward the request's bytes; (Triton's answer, the replica's name)."""
        payload = self.raw + self.patch
        answer: bytes = await _call(replica.grpc_infer_raw(payload, timeout=self.timeout), replica)
        return answer, replica.name


def _signature(request: Any, headers: list[TensorHeader], schema: ModelSchema | None) -> Hashable | None:
    """What must match for requests to be merged (input names, types, per-row shapes; outputs), or None when
    this request is not merged: a model that may not be (``ModelSchema.mergeable``), tensors not sent as raw
    bytes, or request or tensor parameters (priorities, sequences, shared memory, classification) that a merge
    would lose. ``headers`` are the request's :func:`tensor_headers`.
    """
    if schema is None or not schema.mergeable or not headers or request.parameters:
        return None
    for header in headers:
        if header.byte_size is None or header.data_count is not None:
            return None
    outputs = request.outputs
    for tensor in (*request.inputs, *outputs):
        if tensor.parameters:
            return None
    return (
        tuple([(header.name, header.datatype, header.shape[1:]) for header in headers]),
        tuple([output.name for output in outputs]),
    )


#: One request's answer from a merged call, sliced when called (in the request's own task, so the next merged
#: call leaves first), and the replica that served it.
_Part = tuple[Callable[[], bytes], str]


async def _infer_merged(replica: Replica, items: list[_Pending]) -> list[_Part]:
    """One upstream call for requests of one signature: rows concatenated, Triton's answer sliced back."""
    if len(items) == 1:
        answer, server = await items[0].send(replica)
        return [(lambda: answer, server)]
    rows = [item.rows for item in items]
    first = items[0].request
    merged = service_pb2.ModelInferRequest(
        model_name=first.model_name,
        model_version=items[0].version,
        id=",".join(item.answer_id for item in items),
    )
    total = sum(rows)
    for index, tensor in enumerate(first.inputs):
        merged.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=[total, *tensor.shape[1:]])
        merged.raw_input_contents.append(b"".join(item.request.raw_input_contents[index] for item in items))
    merged.outputs.extend(first.outputs)
    timeout = max(item.timeout for item in items)  # each request keeps its own deadline at the gateway
    answer = await _call(replica.grpc_infer_raw(merged.SerializeToString(), timeout=timeout), replica)
    response = service_pb2.ModelInferResponse.FromString(answer)
    row_bytes = _row_bytes(response, total)
    starts = itertools.accumulate(rows, initial=0)
    return [
        (functools.partial(_answer_part, response, row_bytes, start, n, item.answer_id), replica.name)
        for item, start, n in zip(items, starts, rows, strict=False)
    ]


def _row_bytes(response: Any, total: int) -> list[int]:
    """Bytes per row of each output of Triton's answer to ``total`` merged rows (checked to be whole)."""
    outputs, raws = response.outputs, response.raw_output_contents
    if len(raws) != len(outputs):
        raise UpstreamError(
            f"model {response.model_name!r}: Triton's answer has no raw contents for every output",
            http_status=500,
        )
    sizes = []
    for output, raw in zip(outputs, raws, strict=True):
        if not output.shape or output.shape[0] != total or len(raw) % total:
            raise UpstreamError(
                f"model {response.model_name!r}: Triton answered {total} merged rows with output "
                f"{output.name!r} of shape {list(output.shape)} ({len(raw)} bytes)",
                http_status=500,
            )
        sizes.append(len(raw) // total)
    return sizes


def _answer_part(response: Any, row_bytes: list[int], start: int, rows: int, answer_id: str) -> bytes:
    """Rows ``start:start+rows`` of every output of a merged answer, as a serialised ``ModelInferResponse``."""
    part = service_pb2.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=answer_id
    )
    for key, value in response.parameters.items():
        part.parameters[key].CopyFrom(value)
    for output, raw, size in zip(response.outputs, response.raw_output_contents, row_bytes, strict=True):
        tensor = part.outputs.add()
        tensor.CopyFrom(output)
        tensor.shape[0] = rows
        part.raw_output_contents.append(raw[start * size : (start + rows) * size])
    data: bytes = part.SerializeToString()
    return data


@functools.lru_cache(maxsize=1024)
def _provenance(server: str, sha256: str) -> bytes:
    """The provenance parameters as serialised ``ModelInferResponse`` fields (appended: map entries merge)."""
    tail = service_pb2.ModelInferResponse()
    tail.parameters["hepsonic_server"].string_param = server
    if sha256:
        tail.parameters["hepsonic_model_sha256"].string_param = sha256
    data: bytes = tail.SerializeToString()
    return data


def _stream_error(raw: bytes, message: str) -> bytes:
    """A serialised ``ModelStreamInferResponse`` error, carrying the request's model and id when it parses."""
    answer = service_pb2.ModelStreamInferResponse(error_message=message)
    try:
        request = service_pb2.ModelInferRequest.FromString(raw)
    except Exception:  # noqa: BLE001  (an unparsable request has no id to echo)
        request = None
    if request is not None:
        answer.infer_response.model_name = request.model_name
        answer.infer_response.id = request.id
    data: bytes = answer.SerializeToString()
    return data


def _field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (tag, varint length, bytes): wraps a message without re-parsing it.

    The tag is one byte, so ``number`` must be below 16 (it is 2 here)."""
    header = bytearray([number << 3 | 2])
    length = len(payload)
    while length >= 0x80:
        header.append(length & 0x7F | 0x80)
        length >>= 7
    header.append(length)
    return bytes(header) + payload


def _not_offered_reason(method: str) -> str:
    if "SharedMemory" in method:
        return NOT_OFFERED["shared memory"]
    if method.startswith("Repository"):
        return NOT_OFFERED["model control"]
    return NOT_OFFERED["settings"]


async def _not_offered(method: str, _request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    await _abort(context, NotOffered(f"{method}: {_not_offered_reason(method)}"))


def _handlers(servicer: GatewayServicer) -> grpc.GenericRpcHandler:
    """The service's method handlers: protobuf (de)serialisation everywhere except ``ModelInfer`` (raw)."""
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        if method.name == "ModelInfer":
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(servicer.ModelInfer)
            continue
        if method.name == "ModelStreamInfer":
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(servicer.ModelStreamInfer)
            continue
        request_type = getattr(service_pb2, method.input_type.name)
        response_type = getattr(service_pb2, method.output_type.name)
        # What the gateway only inherits from the generated base class would end in "Unexpected
        # NotImplementedError" (UNKNOWN); it answers UNIMPLEMENTED with what to use instead.
        inherited = getattr(service_pb2_grpc.GRPCInferenceServiceServicer, method.name)
        offered = getattr(type(servicer), method.name) is not inherited
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name) if offered else functools.partial(_not_offered, method.name),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(_SERVICE, handlers)


async def create_grpc_server(
    dataplane: DataPlane,
    address: str,
    *,
    tls: tuple[bytes, bytes] | None = None,
    max_message_bytes: int = 256 * 1024 * 1024,
) -> grpc.aio.Server:
    """Start the gRPC front on ``address`` (TLS when ``(key, cert)`` PEM bytes are given)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
    )
    server.add_generic_rpc_handlers((_handlers(GatewayServicer(dataplane)),))
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
    if port == 0:
        raise OSError(f"cannot bind the gRPC front to {address}")
    await server.start()
    return server
