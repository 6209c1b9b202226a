"""Small keyword-only value objects holding the client's tunables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BatchingOptions", "FallbackOptions", "RetryPolicy", "Timeouts"]


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        msg = f"{name} must be > 0 (or None for no limit), got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """Time limits in seconds (``None`` = no limit).

    ``connect``: opening a connection (HTTP) / a readiness probe; ``request``: one inference round trip;
    ``fallback_start``: how long an embedded fallback Triton may take to become ready (a cold start loads
    every model, hence the generous default).
    """

    connect: float | None = 5.0
    request: float | None = 60.0
    fallback_start: float = 120.0

    def __post_init__(self) -> None:
        _positive("Timeouts.connect", self.connect)
        _positive("Timeouts.request", self.request)
        _positive("Timeouts.fallback_start", self.fallback_start)


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """When and how often to retry. Only failures where a retry is safe are retried.

    Retried: connection failures, UNAVAILABLE/503, and admission refusals (429 / RESOURCE_EXHAUSTED, after
    the server's ``Retry-After`` hint when it gives one, capped at ``max_retry_after``). Never retried:
    timeouts (the request may still run) and refusals of the request itself (bad input, unknown model).
    A server that keeps failing is skipped for ``circuit_open`` seconds (failover to the next one).
    """

    attempts_per_server: int = 3
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    max_retry_after: float = 30.0
    circuit_open: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts_per_server < 1:
            msg = f"RetryPolicy.attempts_per_server must be >= 1, got {self.attempts_per_server}"
            raise ValueError(msg)
        for name in ("backoff_base", "backoff_max", "max_retry_after", "circuit_open"):
            if getattr(self, name) < 0:
                msg = f"RetryPolicy.{name} must be >= 0, got {getattr(self, name)!r}"
                raise ValueError(msg)

    def backoff(self, attempt: int, rng_uniform: float) -> float:
        """Full-jitter exponential back-off for retry number ``attempt`` (0-based), in seconds."""
        return float(rng_uniform * min(self.backoff_max, self.backoff_base * 2.0**attempt))


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchingOptions:
    """How a :class:`~hepsonic_client.Batcher` merges one-object requests.

    A batch is sent when it holds ``max_batch_size`` objects or its oldest object has waited
    ``max_latency`` seconds. ``max_inflight`` batches may be on the wire at once. With ``bucket_edges``,
    objects are grouped by the size of their first axis (e.g. number of tracks or constituents) into
    buckets with these upper edges, so a batch only merges objects of similar size (less padding).
    """

    max_batch_size: int = 256
    max_latency: float = 0.005
    max_inflight: int = 2
    bucket_edges: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            msg = f"BatchingOptions.max_batch_size must be >= 1, got {self.max_batch_size}"
            raise ValueError(msg)
        if self.max_latency < 0:
            msg = f"BatchingOptions.max_latency must be >= 0, got {self.max_latency}"
            raise ValueError(msg)
        if self.max_inflight < 1:
            msg = f"BatchingOptions.max_inflight must be >= 1, got {self.max_inflight}"
            raise ValueError(msg)
        if self.bucket_edges is not None and list(self.bucket_edges) != sorted(set(self.bucket_edges)):
            msg = f"BatchingOptions.bucket_edges must be strictly increasing, got {self.bucket_edges}"
            raise ValueError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class FallbackOptions:
    """Opt-in fallbacks used when no configured server answers. Each use is logged and counted.

    ``repository``: the model repository (``model_repository/``) both fallbacks read.
    ``embedded_triton``: start ``hepsonic-triton`` locally on free ports (stopped when the client closes).
    ``local_onnxruntime``: run the same ONNX file in-process with onnxruntime (extra ``local``) when the
    embedded Triton cannot start or answer.
    """

    repository: Path
    embedded_triton: bool = True
    local_onnxruntime: bool = True
    triton_command: tuple[str, ...] = ("hepsonic-triton",)
