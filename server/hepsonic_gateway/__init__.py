"""hepsonic_gateway: the KServe-v2 front door (HTTP + gRPC) in front of Triton pools.

One protocol-agnostic :class:`DataPlane` (auth, routing, versions and aliases, validation, admission, retries,
provenance) and two thin adapters over it: the FastAPI REST app and the grpcio ``inference.GRPCInferenceService``.
:class:`Rollouts` moves a model to a new version with zero downtime, on every gateway replica
(:class:`PeerGateways`). See docs/gateway.md.
"""

from ._auth import ApiKeySpec, KeysFile, KeyStore, Principal, hash_key
from ._dataplane import DataPlane, RouteOverride, Target
from ._errors import (
    Conflict,
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UpstreamError,
)
from ._grpc import create_grpc_server
from ._peers import PeerGateways
from ._rest import create_rest_app
from ._rollout import RolloutPlan, Rollouts, RolloutStatus
from ._routing import ModelPolicy, RoutingConfig, load_routing
from ._settings import Settings
from ._validation import InputSpec, ModelSchema, TensorHeader, check_request, parse_http_request
from .cli import serve

__all__ = [
    "ApiKeySpec",
    "Conflict",
    "DataPlane",
    "DeadlineExceeded",
    "GatewayError",
    "InputSpec",
    "InvalidRequest",
    "KeyStore",
    "KeysFile",
    "ModelPolicy",
    "ModelSchema",
    "NotFound",
    "Overloaded",
    "PeerGateways",
    "PermissionDenied",
    "Principal",
    "RolloutPlan",
    "RolloutStatus",
    "Rollouts",
    "RouteOverride",
    "RoutingConfig",
    "Settings",
    "Target",
    "TensorHeader",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "UpstreamError",
    "check_request",
    "create_grpc_server",
    "create_rest_app",
    "hash_key",
    "load_routing",
    "parse_http_request",
    "serve",
]
