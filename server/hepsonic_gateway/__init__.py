"""hepsonic_gateway: the KServe-v2 front door (HTTP + gRPC) in front of Triton pools.

One protocol-agnostic :class:`DataPlane` (routing, versions and aliases, admission, retries, provenance) and two
thin adapters over it: the FastAPI REST app and the grpcio ``inference.GRPCInferenceService``.
"""

from ._dataplane import DataPlane, Target
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
from ._grpc import create_grpc_server
from ._rest import create_rest_app
from ._routing import RoutingConfig, load_routing
from ._settings import Settings
from .cli import serve

__all__ = [
    "DataPlane",
    "DeadlineExceeded",
    "GatewayError",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "RoutingConfig",
    "Settings",
    "Target",
    "Unauthenticated",
    "Unavailable",
    "UpstreamError",
    "create_grpc_server",
    "create_rest_app",
    "load_routing",
    "serve",
]
