"""The REST adapter: KServe v2 over HTTP (JSON and the binary-tensor extension), forwarded byte for byte."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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

__all__ = ["create_rest_app"]

_STATUS: dict[type[GatewayError], int] = {
    NotFound: 404,
    InvalidRequest: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    Overloaded: 429,
    Unavailable: 503,
    DeadlineExceeded: 504,
}
#: Request headers that must travel with the body (binary-tensor extension, compressed requests).
_PASS_HEADERS = ("content-type", "inference-header-content-length", "content-encoding")
#: Response headers relayed back. Upstream replies are requested uncompressed (httpx would otherwise
#: decompress them while we relayed the encoding header), so content-encoding is never relayed.
_RELAY_HEADERS = ("content-type", "inference-header-content-length")
_ROUTE_KEY = "x-hepsonic-route-key"


def _error_response(exc: GatewayError) -> JSONResponse:
    status = exc.http_status if isinstance(exc, UpstreamError) else _STATUS.get(type(exc), 500)
    headers = {"Retry-After": f"{exc.retry_after_s:g}"} if isinstance(exc, Overloaded) else None
    return JSONResponse({"error": exc.message}, status_code=status, headers=headers)


def _dataplane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.dataplane
    return plane


DataPlaneDep = Annotated[DataPlane, Depends(_dataplane)]


async def _upstream(
    replica: Replica,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> httpx.Response:
    """One HTTP call to a replica; connection-level failures become :class:`ReplicaUnreachable`."""
    try:
        response = await replica.http.request(method, path, content=body, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        raise DeadlineExceeded(f"Triton {replica.name} did not answer {path} within {timeout_s} s") from exc
    except (httpx.TransportError, OSError) as exc:
        raise ReplicaUnreachable(f"{replica.name}: {exc!r}") from exc
    if response.status_code == 503:
        raise ReplicaUnreachable(f"{replica.name}: {response.text}")
    return response


def _relay(response: httpx.Response, extra: dict[str, str] | None = None) -> Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() in _RELAY_HEADERS}
    headers.update(extra or {})
    return Response(content=response.content, status_code=response.status_code, headers=headers)


def create_rest_app(dataplane: DataPlane, *, manage_lifecycle: bool = True) -> FastAPI:
    """The FastAPI app of the gateway. With ``manage_lifecycle`` it starts and closes the data plane."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.dataplane = dataplane
        if manage_lifecycle:
            await dataplane.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await dataplane.close()

    app = FastAPI(
        title="hepsonic gateway",
        description="KServe v2 / Open Inference Protocol front door for Triton pools serving HEP models.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.dataplane = dataplane
    app.add_exception_handler(GatewayError, lambda _r, exc: _error_response(exc))

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        """The gateway process is up."""
        return Response(status_code=200)

    @app.get("/v2/health/ready", tags=["health"])
    async def ready(plane: DataPlaneDep) -> Response:
        """Every pool has a healthy Triton replica."""
        return Response(status_code=200 if plane.ready() else 503)

    @app.get("/v2", tags=["server"])
    async def server_metadata(plane: DataPlaneDep) -> Response:
        """Triton's server metadata (name, version, extensions)."""
        return _relay(await _upstream(plane.any_replica(), "GET", "/v2"))

    @app.get("/metrics", tags=["server"], include_in_schema=False)
    async def metrics(plane: DataPlaneDep) -> Response:
        return Response(generate_latest(plane.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v2/repository/index", tags=["server"])
    async def repository_index(plane: DataPlaneDep) -> list[dict[str, Any]]:
        """Every routed model and its READY versions."""
        return [
            {"name": model, "version": str(version), "state": "READY"}
            for model, versions in sorted(plane.models().items())
            for version in sorted(versions)
        ]

    async def _model_get(plane: DataPlane, model: str, version: str | None, suffix: str) -> Response:
        target = plane.resolve(model, version)
        path = f"/v2/models/{model}/versions/{target.version}{suffix}"
        return await plane.forward(target, lambda r: _control(r, path, target))

    async def _control(replica: Replica, path: str, target: Target) -> Response:
        response = await _upstream(replica, "GET", path, timeout_s=target.policy.timeout_s)
        return _relay(response, {"x-hepsonic-model-version": str(target.version)})

    @app.get("/v2/models/{model}", tags=["models"])
    async def model_metadata(model: str, plane: DataPlaneDep) -> Response:
        """Model metadata: inputs and outputs with names, datatypes and shapes."""
        return await _model_get(plane, model, None, "")

    @app.get("/v2/models/{model}/versions/{version}", tags=["models"])
    async def model_version_metadata(model: str, version: str, plane: DataPlaneDep) -> Response:
        """Metadata of one version (a number, or an alias such as ``stable``)."""
        return await _model_get(plane, model, version, "")

    @app.get("/v2/models/{model}/ready", tags=["models"])
    async def model_ready(model: str, plane: DataPlaneDep) -> Response:
        """200 when the model is READY on a healthy replica."""
        try:
            plane.resolve(model, None)
        except GatewayError:
            return Response(status_code=400)
        return Response(status_code=200)

    @app.get("/v2/models/{model}/versions/{version}/ready", tags=["models"])
    async def model_version_ready(model: str, version: str, plane: DataPlaneDep) -> Response:
        """200 when this version (or alias) is READY on a healthy replica."""
        try:
            plane.resolve(model, version)
        except GatewayError:
            return Response(status_code=400)
        return Response(status_code=200)

    @app.get("/v2/models/{model}/config", tags=["models"])
    async def model_config(model: str, plane: DataPlaneDep) -> Response:
        """The model's Triton configuration (as Triton reports it)."""
        return await _model_get(plane, model, None, "/config")

    @app.get("/v2/models/{model}/versions/{version}/config", tags=["models"])
    async def model_version_config(model: str, version: str, plane: DataPlaneDep) -> Response:
        """Configuration of one version."""
        return await _model_get(plane, model, version, "/config")

    async def _infer(request: Request, plane: DataPlane, model: str, version: str | None) -> Response:
        started = time.perf_counter()
        target = plane.resolve(model, version, route_key=request.headers.get(_ROUTE_KEY))
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASS_HEADERS}
        headers["accept-encoding"] = "identity"
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        headers["x-request-id"] = request_id
        path = f"/v2/models/{model}/versions/{target.version}/infer"
        served_by: list[str] = []

        async def call(replica: Replica) -> httpx.Response:
            served_by.append(replica.name)
            return await _upstream(
                replica, "POST", path, body=body, headers=headers, timeout_s=target.policy.timeout_s
            )

        status = "error"
        try:
            response = await plane.forward(target, call)
            status = str(response.status_code)
        finally:
            plane.metrics.requests.labels(model, str(target.version), "http", status).observe(
                time.perf_counter() - started
            )
        extra = {
            "x-hepsonic-model-version": str(target.version),
            "x-hepsonic-server": served_by[-1],
            "x-request-id": request_id,
        }
        sha = await plane.sha256(target)
        if sha:
            extra["x-hepsonic-model-sha256"] = sha
        return _relay(response, extra)

    @app.post("/v2/models/{model}/infer", tags=["inference"])
    async def infer(model: str, request: Request, plane: DataPlaneDep) -> Response:
        """Inference (JSON or binary tensors). No version: the split or the newest READY version answers."""
        return await _infer(request, plane, model, None)

    @app.post("/v2/models/{model}/versions/{version}/infer", tags=["inference"])
    async def infer_version(model: str, version: str, request: Request, plane: DataPlaneDep) -> Response:
        """Inference on a version or alias (``stable``, ``canary``, ``latest``...)."""
        return await _infer(request, plane, model, version)

    return app
