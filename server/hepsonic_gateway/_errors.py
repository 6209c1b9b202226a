"""The gateway's domain errors. They know nothing of HTTP or gRPC; each adapter maps them in one table.

GatewayError
├── NotFound            unknown model, version or alias
├── InvalidRequest      malformed request, wrong shape/dtype/byte size
│   └── TooLarge        over a size limit (body bytes, tensor elements)
├── Unauthenticated     no or unknown API key
├── PermissionDenied    key not allowed for this model or action
├── Overloaded          admission control refused it; carries retry_after_s
├── Unavailable         no healthy replica, or every retry failed
├── DeadlineExceeded    the upstream did not answer in time
├── Conflict            the action clashes with one in progress (a second rollout of the same model)
└── UpstreamError       Triton answered with an error (its status is kept)
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "DeadlineExceeded",
    "GatewayError",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "UpstreamError",
]


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(GatewayError):
    """Unknown model, version or alias."""


class InvalidRequest(GatewayError):
    """The request is malformed or does not match the model."""


class TooLarge(InvalidRequest):
    """The request exceeds a size limit (body bytes or tensor elements)."""


class Conflict(GatewayError):
    """The action clashes with one already in progress."""


class Unauthenticated(GatewayError):
    """No API key, or an unknown one."""


class PermissionDenied(GatewayError):
    """The key is valid but not allowed for this model or action."""


class Overloaded(GatewayError):
    """Admission control refused the request; retry after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(GatewayError):
    """No healthy replica could serve the request."""


class DeadlineExceeded(GatewayError):
    """The upstream did not answer within the deadline."""


class UpstreamError(GatewayError):
    """Triton answered with an error; ``http_status`` is what it said (gRPC statuses are mapped to HTTP)."""

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status
