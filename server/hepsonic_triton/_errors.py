"""Errors raised while preparing or running the embedded Triton server."""

from __future__ import annotations

__all__ = ["PortInUseError", "RepositoryError", "TritonError", "TritonStartError"]


class TritonError(Exception):
    """Base class of every hepsonic_triton error."""


class RepositoryError(TritonError):
    """The model repository is not a valid hepsonic/Triton repository (the message says where and why)."""


class PortInUseError(TritonError):
    """A port the server should listen on is already taken."""


class TritonStartError(TritonError):
    """tritonserver exited or did not become ready in time (the message carries the tail of its log)."""
