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
├── NotOffered          a KServe/Triton API the gateway does not forward (shared memory, model control)
└── UpstreamError       Triton answered with an error (its status is kept)
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "DeadlineExceeded",
    "GatewayError",
    "InvalidRequest",
    "NotFound",
    "NotOffered",
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


class NotOffered(GatewayError):
    """A part of Triton's API that the gateway does not forward; the message says what to use instead."""


#: Why each part of Triton's API that the gateway does not forward is left out, and what to use instead.
NOT_OFFERED: dict[str, str] = {
    "shared memory": (
        "the gateway does not forward shared-memory registration (a region lives on one machine, the gateway "
        "spreads requests over replicas): send the tensors in the request, or use shared memory with a Triton "
        "on the same machine"
    ),
    "model control": (
        "the gateway loads and unloads models itself: use its rollout (POST /admin/models/{model}/rollout or "
        "`hepsonic-gateway rollout`, admin key)"
    ),
    "settings": "trace and log settings are Triton's own: change them on each Triton",
}


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
