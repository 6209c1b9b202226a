"""Prometheus metrics of the gateway: histograms, so latency aggregates across gateway replicas."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

__all__ = ["Metrics"]

# Sub-millisecond to tens of seconds: trigger paths live at the low end, GAN batches at the high end.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_MERGED_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class Metrics:
    """All gateway metrics, on their own registry (one per app, so tests can build several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.requests = Histogram(
            "hepsonic_gateway_request_duration_seconds",
            "Inference request latency seen by the gateway, by model, version, protocol and status.",
            ["model", "version", "protocol", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream = Histogram(
            "hepsonic_gateway_upstream_duration_seconds",
            "Latency of the call to Triton, by model, version and replica.",
            ["model", "version", "replica"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "hepsonic_gateway_inflight_requests",
            "Requests being served upstream, by model.",
            ["model"],
            registry=self.registry,
        )
        self.queued = Gauge(
            "hepsonic_gateway_queued_requests",
            "Requests waiting for an in-flight slot, by model.",
            ["model"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "hepsonic_gateway_rejected_requests",
            "Requests refused by admission control, by model and reason.",
            ["model", "reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "hepsonic_gateway_retries",
            "Requests retried on another replica, by model.",
            ["model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "hepsonic_gateway_request_batch_size",
            "Batch size (first dimension) of inference requests, by model.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.merged = Histogram(
            "hepsonic_gateway_requests_per_upstream_call",
            "Requests carried by one upstream call (above 1 when coalescing merged them), by model.",
            ["model"],
            buckets=_MERGED_BUCKETS,
            registry=self.registry,
        )
        self.reloads = Counter(
            "hepsonic_gateway_reloads",
            "Routing/keys reloads, by result (ok, error).",
            ["result"],
            registry=self.registry,
        )
        self.rollout_step = Gauge(
            "hepsonic_gateway_rollout_percent",
            "Share of unpinned traffic sent to the new version by the rollout in progress, by model.",
            ["model"],
            registry=self.registry,
        )
        self.replica_healthy = Gauge(
            "hepsonic_gateway_replica_healthy",
            "1 when the replica passes health checks.",
            ["pool", "replica"],
            registry=self.registry,
        )

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the hot path finds each series with one dict lookup.

        Label sets are bounded (models, versions, replicas, statuses), as they are in the registry itself.
        """
        key = (id(metric), labels)
        series = self._children.get(key)
        if series is None:
            series = self._children[key] = metric.labels(*labels)
        return series
