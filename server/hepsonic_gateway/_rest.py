"""The REST adapter: KServe v2 over HTTP (JSON and the binary-tensor extension), forwarded byte for byte.

Only the JSON header of an inference request is parsed (for validation); the binary part is forwarded untouched.
Domain errors become HTTP statuses in :data:`_STATUS`, in one exception handler.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import aiohttp
import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat
from starlette.types import ASGIApp, Receive, Scope, Send

from ._auth import Principal
from ._dataplane import (
    DataPlane,
    ReplicaUnreachable,
    RouteOverride,
    Target,
    new_request_id,
    retry_after_header,
)
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
from ._peers import PeerGateways
from ._rollout import RolloutPlan, Rollouts
from ._upstream import Replica
from ._validation import parse_http_request

__all__ = ["create_rest_app"]

log = logging.getLogger("hepsonic.gateway")

#: The one table of domain error -> HTTP status (subclasses fall back to their parent's entry).
_STATUS: dict[type[GatewayError], int] = {
    NotFound: 404,
    InvalidRequest: 400,
    TooLarge: 413,
    Unauthenticated: 401,
    PermissionDenied: 403,
    Conflict: 409,
    NotOffered: 501,
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
#: Client deadline in seconds (float); the gateway answers 504 once it passes. Triton's own ``timeout``
#: request parameter (microseconds, in the JSON header) is forwarded untouched and enforced by Triton.
_TIMEOUT_HEADER = "x-hepsonic-timeout"
_HEADER_LENGTH = "inference-header-content-length"


def status_of(exc: GatewayError) -> int:
    """The HTTP status of a domain error."""
    if isinstance(exc, UpstreamError):
        return exc.http_status
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 500


def _error_response(exc: GatewayError, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = retry_after_header(exc.retry_after_s)
        headers["retry-after-ms"] = str(int(exc.retry_after_s * 1000))
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": exc.message}, status_code=status_of(exc), headers=headers)


def _refuse(reason: str) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that answers 501 with ``reason`` (a part of Triton's API the gateway does not forward)."""

    async def refuse(request: Request) -> Response:
        raise NotOffered(f"{request.url.path}: {reason}")

    return refuse


def _dataplane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.dataplane
    return plane


def _principal(request: Request) -> Principal:
    return _dataplane(request).authenticate(request.headers.get("authorization"))


def _admin(request: Request) -> Principal:
    principal = _principal(request)
    principal.require_admin(f"call {request.method} {request.url.path}")
    return principal


DataPlaneDep = Annotated[DataPlane, Depends(_dataplane)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
AdminDep = Annotated[Principal, Depends(_admin)]


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
        if isinstance(exc, httpx.ConnectTimeout):
            raise ReplicaUnreachable(f"{replica.name}: connect timeout") from exc
        raise DeadlineExceeded(f"Triton {replica.name} did not answer {path} within {timeout_s:g} s") from exc
    except (httpx.TransportError, OSError) as exc:
        raise ReplicaUnreachable(f"{replica.name}: {exc!r}") from exc
    if response.status_code == 503:
        raise ReplicaUnreachable(f"{replica.name}: {response.text[:200]}")
    return response


async def _post_infer(
    replica: Replica, path: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> tuple[int, dict[str, str], bytes]:
    """The hot-path upstream call (aiohttp); connection failures become :class:`ReplicaUnreachable`."""
    try:
        async with replica.session.post(
            path, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            content = await response.read()
            relayed = {k: v for k, v in response.headers.items() if k.lower() in _RELAY_HEADERS}
            status = response.status
    except aiohttp.ConnectionTimeoutError as exc:
        raise ReplicaUnreachable(f"{replica.name}: connect timeout") from exc
    except TimeoutError as exc:
        raise DeadlineExceeded(f"Triton {replica.name} did not answer {path} within {timeout_s:g} s") from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
        raise ReplicaUnreachable(f"{replica.name}: {exc!r}") from exc
    if status == 503:
        raise ReplicaUnreachable(f"{replica.name}: {content[:200]!r}")
    return status, relayed, content


def _relay(response: httpx.Response, extra: dict[str, str] | None = None) -> Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() in _RELAY_HEADERS}
    headers.update(extra or {})
    return Response(content=response.content, status_code=response.status_code, headers=headers)


# -- admin request bodies (documented in OpenAPI) ---------------------------------------------------------
class RouteUpdate(BaseModel):
    """New aliases and/or split of a model; omitted fields keep their current value."""

    model_config = ConfigDict(extra="forbid")

    aliases: dict[str, Annotated[int, Field(gt=0)]] | None = None
    split: dict[str, PositiveFloat] | None = Field(default=None, description="{} removes the split")


class RolloutRequest(BaseModel):
    """A rollout of a model to a new version (see docs/gateway.md)."""

    model_config = ConfigDict(extra="forbid")

    to_version: int = Field(gt=0)
    steps: list[Annotated[int, Field(gt=0, le=100)]] = Field(
        default=[10, 50, 100], min_length=1, max_length=100
    )
    interval_s: float = Field(default=5.0, ge=0, le=3600)
    drain_timeout_s: float = Field(default=60.0, ge=0, le=3600)
    unload_old: bool = True


_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "KServe v2 inference request: JSON, or a JSON header followed by binary tensors "
        "(binary-tensor extension; send Inference-Header-Content-Length).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"type": "string"},
                                    "parameters": {"type": "object"},
                                    "data": {"type": "array"},
                                },
                            },
                        },
                        "outputs": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        },
    }
}


def create_rest_app(
    dataplane: DataPlane, *, manage_lifecycle: bool = True, peers: PeerGateways | None = None
) -> FastAPI:
    """The FastAPI app of the gateway. With ``manage_lifecycle`` it starts and closes the data plane.

    ``peers`` are the other gateway replicas that rollouts move in step with this one.
    """
    rollouts = Rollouts(dataplane, peers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.dataplane = dataplane
        if manage_lifecycle:
            await dataplane.start()
        await rollouts.adopt_peer_routes()  # before serving: a replacement pod serves what its peers serve
        try:
            yield
        finally:
            await rollouts.close()
            if manage_lifecycle:
                await dataplane.close()

    app = FastAPI(
        title="hepsonic gateway",
        description="KServe v2 / Open Inference Protocol front door for Triton pools serving HEP models. "
        "Send `Authorization: Bearer <key>` when the gateway has API keys; health endpoints are open.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=[
            {"name": "health", "description": "Liveness and readiness (no auth)."},
            {"name": "server", "description": "Server metadata and the repository index."},
            {"name": "models", "description": "Model metadata, configuration and readiness."},
            {"name": "inference", "description": "Inference, by version, alias or weighted split."},
            {"name": "admin", "description": "Routes, reload and rollouts (admin scope)."},
        ],
    )
    app.state.dataplane = dataplane
    app.state.rollouts = rollouts
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
    async def server_metadata(plane: DataPlaneDep, _principal: PrincipalDep) -> Response:
        """Triton's server metadata (name, version, extensions)."""
        return _relay(await _upstream(plane.any_replica(), "GET", "/v2"))

    @app.get("/metrics", tags=["server"], include_in_schema=False)
    async def metrics(plane: DataPlaneDep) -> Response:
        plane.ready()  # refresh the replica health gauges
        return Response(generate_latest(plane.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v2/repository/index", tags=["server"])
    async def repository_index(plane: DataPlaneDep, principal: PrincipalDep) -> list[dict[str, Any]]:
        """Every routed model (that the key may use) and its READY versions."""
        return [
            {"name": model, "version": str(version), "state": "READY"}
            for model, versions in sorted(plane.models(principal).items())
            for version in sorted(versions)
        ]

    # Parts of Triton's API the gateway does not forward: 501 with what to use instead, not a bare 404.
    not_offered = {
        "/v2/systemsharedmemory/{rest:path}": "shared memory",
        "/v2/cudasharedmemory/{rest:path}": "shared memory",
        "/v2/repository/models/{rest:path}": "model control",
        "/v2/trace/setting": "settings",
        "/v2/logging": "settings",
    }
    for path, what in not_offered.items():
        app.add_api_route(path, _refuse(NOT_OFFERED[what]), methods=["GET", "POST"], include_in_schema=False)

    async def _model_get(
        plane: DataPlane, principal: Principal, model: str, version: str | None, suffix: str
    ) -> Response:
        target = plane.resolve(model, version, principal=principal)
        path = f"/v2/models/{model}/versions/{target.version}{suffix}"
        with plane.hold(target):
            return await plane.forward(target, lambda r: _control(r, path, target))

    async def _control(replica: Replica, path: str, target: Target) -> Response:
        response = await _upstream(replica, "GET", path, timeout_s=target.policy.timeout_s)
        return _relay(response, {"x-hepsonic-model-version": str(target.version)})

    @app.get("/v2/models/{model}", tags=["models"])
    async def model_metadata(model: str, plane: DataPlaneDep, principal: PrincipalDep) -> Response:
        """Model metadata: inputs and outputs with names, datatypes and shapes."""
        return await _model_get(plane, principal, model, None, "")

    @app.get("/v2/models/{model}/versions/{version}", tags=["models"])
    async def model_version_metadata(
        model: str, version: str, plane: DataPlaneDep, principal: PrincipalDep
    ) -> Response:
        """Metadata of one version (a number, or an alias such as ``stable``)."""
        return await _model_get(plane, principal, model, version, "")

    @app.get("/v2/models/{model}/ready", tags=["models"])
    async def model_ready(model: str, plane: DataPlaneDep, principal: PrincipalDep) -> Response:
        """200 when the model is READY on a healthy replica, else 400 (as Triton answers)."""
        return await _ready(plane, principal, model, None)

    @app.get("/v2/models/{model}/versions/{version}/ready", tags=["models"])
    async def model_version_ready(
        model: str, version: str, plane: DataPlaneDep, principal: PrincipalDep
    ) -> Response:
        """200 when this version (or alias) is READY on a healthy replica, else 400."""
        return await _ready(plane, principal, model, version)

    async def _ready(plane: DataPlane, principal: Principal, model: str, version: str | None) -> Response:
        try:
            plane.resolve(model, version, principal=principal)
        except (NotFound, Unavailable):
            return Response(status_code=400)
        return Response(status_code=200)

    @app.get("/v2/models/{model}/config", tags=["models"])
    async def model_config(model: str, plane: DataPlaneDep, principal: PrincipalDep) -> Response:
        """The model's Triton configuration (as Triton reports it)."""
        return await _model_get(plane, principal, model, None, "/config")

    @app.get("/v2/models/{model}/versions/{version}/config", tags=["models"])
    async def model_version_config(
        model: str, version: str, plane: DataPlaneDep, principal: PrincipalDep
    ) -> Response:
        """Configuration of one version."""
        return await _model_get(plane, principal, model, version, "/config")

    # -- inference: the hot path reads the app state directly (no dependency injection per request) -----
    async def _infer(request: Request, model: str, version: str | None) -> Response:
        started = time.perf_counter()
        plane: DataPlane = request.app.state.dataplane
        headers_in = request.headers
        request_id = headers_in.get("x-request-id") or new_request_id()
        target: Target | None = None
        status = "error"
        try:
            principal = plane.authenticate(headers_in.get("authorization"))
            target = plane.resolve(model, version, route_key=headers_in.get(_ROUTE_KEY), principal=principal)
            with plane.hold(target):
                declared = headers_in.get("content-length")
                if (
                    declared is not None
                    and declared.isdigit()
                    and int(declared) > target.policy.max_request_bytes
                ):
                    raise TooLarge(
                        f"model {model!r}: the request has {declared} bytes, the limit is "
                        f"{target.policy.max_request_bytes}"
                    )
                timeout_s = plane.timeout_s(target, _client_timeout(headers_in.get(_TIMEOUT_HEADER)))
                body = await request.body()
                header_length = headers_in.get(_HEADER_LENGTH)
                if header_length is not None and not header_length.isdigit():
                    raise InvalidRequest(
                        f"model {model!r}: Inference-Header-Content-Length must be a byte count "
                        f"(a non-negative integer), got {header_length[:40]!r}"
                    )
                tensors = parse_http_request(
                    body, int(header_length) if header_length is not None else None, model=model
                )
                schema = await plane.validate(target, tensors, body_bytes=len(body))
                forward = {k: v for k, v in headers_in.items() if k in _PASS_HEADERS}
                forward["accept-encoding"] = "identity"
                forward["x-request-id"] = request_id
                path = f"/v2/models/{model}/versions/{target.version}/infer"
                served_by: list[str] = []

                async def call(replica: Replica) -> tuple[int, dict[str, str], bytes]:
                    served_by.append(replica.name)
                    return await _post_infer(replica, path, body, forward, timeout_s)

                upstream_status, relayed, content = await plane.forward(target, call)
                status = str(upstream_status)
                extra = {
                    "x-hepsonic-model-version": str(target.version),
                    "x-hepsonic-server": served_by[-1],
                    "x-request-id": request_id,
                }
                if schema is not None and schema.sha256:
                    extra["x-hepsonic-model-sha256"] = schema.sha256
                if upstream_status >= 400:
                    log.info(
                        "upstream error",
                        extra={
                            "request_id": request_id,
                            "model": model,
                            "status": status,
                            "replica": served_by[-1],
                        },
                    )
                else:
                    plane.log_served(request_id, target, served_by[-1], principal, "http")
                relayed.update(extra)
                return Response(content=content, status_code=upstream_status, headers=relayed)
        except GatewayError as exc:
            status = str(status_of(exc))
            plane.log_refused(request_id, model, status, exc)
            return _error_response(exc, {"x-request-id": request_id})
        finally:
            plane.observe(
                model if target is not None else "",
                target.version if target is not None else None,
                "http",
                status,
                time.perf_counter() - started,
            )

    @app.post("/v2/models/{model}/infer", tags=["inference"], openapi_extra=_INFER_BODY)
    async def infer(model: str, request: Request) -> Response:
        """Inference (JSON or binary tensors). No version: the split or the newest READY version answers.

        Headers: `x-hepsonic-route-key` (sticky split, e.g. a job id), `x-hepsonic-timeout` (seconds),
        `x-request-id` (passed to Triton and echoed). The answer carries `x-hepsonic-model-version`,
        `x-hepsonic-model-sha256` and `x-hepsonic-server`.
        """
        return await _infer(request, model, None)

    @app.post("/v2/models/{model}/versions/{version}/infer", tags=["inference"], openapi_extra=_INFER_BODY)
    async def infer_version(model: str, version: str, request: Request) -> Response:
        """Inference on a version or alias (``stable``, ``canary``, ``latest``...)."""
        return await _infer(request, model, version)

    # -- admin ------------------------------------------------------------------------------------------
    @app.get("/admin/routes", tags=["admin"])
    async def routes(plane: DataPlaneDep, _admin: AdminDep) -> dict[str, Any]:
        """The routing in force: pools and replica health, every model's aliases, split and overrides."""
        return plane.routes_report()

    @app.post("/admin/reload", tags=["admin"])
    async def reload(plane: DataPlaneDep, _admin: AdminDep) -> dict[str, Any]:
        """Re-read the routing and keys files now (in-flight requests finish on the old pools)."""
        try:
            return await plane.reload()
        except (ValueError, OSError) as exc:
            raise InvalidRequest(f"reload refused, the previous configuration stays: {exc}") from exc

    @app.put("/admin/models/{model}/route", tags=["admin"])
    async def set_route(
        model: str, update: RouteUpdate, plane: DataPlaneDep, _admin: AdminDep
    ) -> dict[str, Any]:
        """Set a model's aliases and/or split at run time (kept in memory, shown by GET /admin/routes)."""
        try:
            policy = plane.set_route(model, RouteOverride(aliases=update.aliases, split=update.split))
        except ValueError as exc:
            raise InvalidRequest(f"model {model!r}: invalid route: {exc}") from exc
        return {"model": model, "aliases": policy.aliases, "split": policy.split}

    @app.delete("/admin/models/{model}/route", tags=["admin"])
    async def clear_route(model: str, plane: DataPlaneDep, _admin: AdminDep) -> dict[str, Any]:
        """Forget a model's run-time aliases/split: the routing file applies again."""
        plane.policy(model)
        plane.clear_route(model)
        return {"model": model, "override": False}

    @app.post("/admin/models/{model}/rollout", tags=["admin"], status_code=202)
    async def start_rollout(
        model: str, body: RolloutRequest, request: Request, _admin: AdminDep
    ) -> dict[str, Any]:
        """Start a zero-downtime rollout (load, warm up, shift the alias step by step, drain, unload)."""
        plan = RolloutPlan(
            model=model,
            to_version=body.to_version,
            steps=tuple(body.steps),
            interval_s=body.interval_s,
            drain_timeout_s=body.drain_timeout_s,
            unload_old=body.unload_old,
        )
        return rollouts.start(plan, authorization=request.headers.get("authorization")).as_dict()

    @app.get("/admin/models/{model}/rollout", tags=["admin"])
    async def rollout_status(model: str, _admin: AdminDep) -> dict[str, Any]:
        """Progress of the latest rollout of a model."""
        return rollouts.status(model).as_dict()

    app.add_middleware(_InferFastPath, handler=_infer)
    return app


_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class _InferFastPath:
    """Inference requests skip FastAPI's routing, dependency solving and exception layers (they catch their
    own errors); every other request, and the OpenAPI description of these two routes, stay with FastAPI."""

    def __init__(
        self, app: ASGIApp, handler: Callable[[Request, str, str | None], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER_PATH.match(scope["path"])
            if match is not None:
                response = await self.handler(Request(scope, receive), match[1], match[2])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _client_timeout(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidRequest(f"{_TIMEOUT_HEADER} must be a number of seconds, got {value[:40]!r}") from None
    if not math.isfinite(seconds):
        raise InvalidRequest(f"{_TIMEOUT_HEADER} must be a finite number of seconds, got {value[:40]!r}")
    return seconds
