"""The one exception tree of hepsonic_client.

Every error the client raises is a :class:`HepsonicError`; errors from grpc, tritonclient, gevent or the
operating system are converted to these in one place (:mod:`hepsonic_client._convert`).

::

    HepsonicError
    ├── InputError              bad input caught before sending (names the model, input, expected vs got)
    ├── InferenceError          the server refused or failed the request (not retried)
    │   └── ModelNotFoundError  the model or version is not served there
    ├── TransportError          the request may not have reached a model
    │   ├── ConnectError        no connection (refused, reset, unreachable): retried, then failover
    │   ├── UnavailableError    server answered "unavailable" (UNAVAILABLE / 503): retried, then failover
    │   ├── OverloadedError     admission refused (429 / RESOURCE_EXHAUSTED): retried after the server's hint
    │   └── RequestTimeoutError the deadline passed (not retried: the request may still run)
    ├── NoServerAvailableError  every server and every enabled fallback failed
    └── FallbackError           the embedded Triton or local onnxruntime fallback could not start
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "FallbackError",
    "HepsonicError",
    "InferenceError",
    "InputError",
    "ModelNotFoundError",
    "NoServerAvailableError",
    "OverloadedError",
    "RequestTimeoutError",
    "TransportError",
    "UnavailableError",
]


class HepsonicError(Exception):
    """Base class of every error raised by hepsonic_client."""

    def __init__(self, message: str, *, server: str | None = None, model: str | None = None) -> None:
        super().__init__(message)
        self.server = server
        self.model = model


class InputError(HepsonicError, ValueError):
    """The inputs do not match the model's interface; nothing was sent."""


class InferenceError(HepsonicError):
    """The server received the request and refused or failed it; retrying would not help."""


class ModelNotFoundError(InferenceError):
    """The model (or the requested version) is not served by this server."""


class TransportError(HepsonicError):
    """The request failed on the way; it may not have reached a model."""


class ConnectError(TransportError):
    """No connection could be made (refused, reset, unreachable)."""


class UnavailableError(TransportError):
    """The server answered but is not able to serve now (gRPC UNAVAILABLE, HTTP 502/503/504)."""


class OverloadedError(TransportError):
    """The gateway refused the request for load (HTTP 429, gRPC RESOURCE_EXHAUSTED).

    ``retry_after_s`` is the server's hint (``Retry-After`` / ``retry-after-ms``), or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        server: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, server=server, model=model)
        self.retry_after_s = retry_after_s


class RequestTimeoutError(TransportError):
    """The deadline passed. Not retried: the request may still be running on the server."""


class NoServerAvailableError(HepsonicError):
    """Every configured server failed, and no fallback was enabled or able to answer."""


class FallbackError(HepsonicError):
    """A fallback (embedded Triton or local onnxruntime) could not be started or used."""
