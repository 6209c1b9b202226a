"""The Grafana dashboard of a hepsonic stack, as code: ``python -m loadtests.dashboards`` rewrites
``deploy/grafana/dashboards/hepsonic.json`` (a test checks the committed file matches).

Panels read the recording rules of ``deploy/prometheus/rules/`` where one exists (so dashboards, alerts and
the autoscaler agree on one definition) and raw metrics otherwise. ``$model`` is the dashboard's model filter.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD_FILE", "PANELS", "Panel", "Query", "build_dashboard", "expressions", "main"]

DASHBOARD_FILE = (
    Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards" / "hepsonic.json"
)
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
MODEL = 'model=~"$model"'


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One time-series panel."""

    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    #: True for panels whose metrics exist only on GPU servers (empty on CPU-only stacks).
    gpu_only: bool = False
    options: dict[str, Any] = field(default_factory=dict)


PANELS: tuple[Panel, ...] = (
    Panel(
        "Request rate (gateway)",
        "reqps",
        (Query(f"model_protocol:hepsonic_gateway_requests:rate1m{{{MODEL}}}", "{{model}} {{protocol}}"),),
        "Requests per second through the gateway, by model and protocol.",
    ),
    Panel(
        "Inferences per second (Triton)",
        "short",
        (Query(f"model:hepsonic_triton_inferences:rate1m{{{MODEL}}}", "{{model}}"),),
        "Objects (jets, candidates, crossings, showers) inferred per second over all Triton replicas.",
    ),
    Panel(
        "Latency percentiles (gateway histograms)",
        "s",
        (
            Query(f"model:hepsonic_gateway_latency_seconds:p50_1m{{{MODEL}}}", "{{model}} p50"),
            Query(f"model:hepsonic_gateway_latency_seconds:p90_1m{{{MODEL}}}", "{{model}} p90"),
            Query(f"model:hepsonic_gateway_latency_seconds:p99_1m{{{MODEL}}}", "{{model}} p99"),
        ),
        "End-to-end latency seen by the gateway; histograms aggregate across replicas.",
    ),
    Panel(
        "Queue vs compute time per request (Triton)",
        "µs",
        (
            Query(f"model:hepsonic_triton_queue_us_per_request:rate1m{{{MODEL}}}", "{{model}} queue"),
            Query(f"model:hepsonic_triton_compute_us_per_request:rate1m{{{MODEL}}}", "{{model}} compute"),
        ),
        "Mean per-request time in Triton's queue (the autoscaling signal) and in compute. Queue growing "
        "while compute stays flat = saturated: add replicas.",
    ),
    Panel(
        "Batch sizes",
        "short",
        (
            Query(
                f"model:hepsonic_triton_batch_size:rate1m{{{MODEL}}}",
                "{{model}} server batch (dynamic batcher)",
            ),
            Query(
                f"sum by (model) (rate(hepsonic_gateway_request_batch_size_sum{{{MODEL}}}[1m]))"
                f" / (sum by (model) (rate(hepsonic_gateway_request_batch_size_count{{{MODEL}}}[1m])) > 0)",
                "{{model}} objects per client request",
            ),
            Query(
                f"sum by (model) (rate(hepsonic_gateway_requests_per_upstream_call_sum{{{MODEL}}}[1m]))"
                f" / (sum by (model) (rate(hepsonic_gateway_requests_per_upstream_call_count{{{MODEL}}}[1m])) > 0)",
                "{{model}} client requests per upstream call (gateway coalescing)",
            ),
        ),
        "What clients send per request, how many requests the gateway merges into one call to Triton, and what "
        "Triton's dynamic batcher runs per execution.",
    ),
    Panel(
        "Failures and rejections",
        "reqps",
        (
            Query(
                f"sum by (model, status) (rate(hepsonic_gateway_request_duration_seconds_count"
                f'{{{MODEL},status!~"200|OK"}}[1m])) or on() vector(0)',
                "{{model}} gateway {{status}}",
            ),
            Query(
                f"sum by (model) (rate(nv_inference_request_failure{{{MODEL}}}[1m]))",
                "{{model}} Triton failures",
            ),
            Query(
                f"sum by (model, reason) (rate(hepsonic_gateway_rejected_requests_total{{{MODEL}}}[1m]))"
                " or on() vector(0)",
                "{{model}} rejected ({{reason}})",
            ),
        ),
        "Failed requests by status, Triton failures, and admission-control rejections (429 / RESOURCE_EXHAUSTED).",
    ),
    Panel(
        "In flight and queued",
        "short",
        (
            Query(
                f"sum by (model) (hepsonic_gateway_inflight_requests{{{MODEL}}})",
                "{{model}} gateway in flight",
            ),
            Query(
                f"sum by (model) (hepsonic_gateway_queued_requests{{{MODEL}}}) or on() vector(0)",
                "{{model}} gateway queued",
            ),
            Query(
                f"sum by (model) (nv_inference_pending_request_count{{{MODEL}}})", "{{model}} Triton pending"
            ),
        ),
        "Requests being served or waiting, at the gateway and inside Triton.",
    ),
    Panel(
        "Triton replicas healthy",
        "short",
        (Query("sum by (pool) (hepsonic_gateway_replica_healthy)", "{{pool}} healthy replicas"),),
        "Replicas passing the gateway's health checks, per pool.",
    ),
    Panel(
        "CPU utilisation (Triton)",
        "percentunit",
        (Query("avg by (instance) (nv_cpu_utilization)", "{{instance}}"),),
        "CPU use of the Triton hosts.",
    ),
    Panel(
        "GPU utilisation",
        "percentunit",
        (
            Query("avg by (instance, gpu_uuid) (nv_gpu_utilization)", "{{instance}} {{gpu_uuid}}"),
            Query(
                "sum by (instance, gpu_uuid) (nv_gpu_memory_used_bytes)"
                " / sum by (instance, gpu_uuid) (nv_gpu_memory_total_bytes)",
                "{{instance}} {{gpu_uuid}} memory",
            ),
        ),
        "GPU duty cycle and memory share per GPU (empty on CPU-only servers).",
        gpu_only=True,
    ),
)


def expressions(*, include_gpu: bool = True) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query, in dashboard order."""
    return [
        (panel.title, query.expr)
        for panel in PANELS
        if include_gpu or not panel.gpu_only
        for query in panel.queries
    ]


def _panel_json(panel: Panel, index: int) -> dict[str, Any]:
    width = 12
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": (index % 2) * width, "y": (index // 2) * 8},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "custom": {"lineWidth": 1, "fillOpacity": 10}},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": q.expr, "legendFormat": q.legend}
            for n, q in enumerate(panel.queries)
        ],
    }


def build_dashboard() -> dict[str, Any]:
    """The dashboard JSON (Grafana 11 schema)."""
    return {
        "uid": "hepsonic-overview",
        "title": "hepsonic: serving overview",
        "description": "Request rate, latency percentiles, queue vs compute time, batch sizes, failures, "
        "rejections and utilisation of a hepsonic stack (gateway + Triton).",
        "tags": ["hepsonic", "triton", "inference"],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-30m", "to": "now"},
        "refresh": "10s",
        "timezone": "browser",
        "templating": {
            "list": [
                {
                    "name": "model",
                    "label": "model",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "definition": "label_values(nv_inference_count, model)",
                    "query": {"query": "label_values(nv_inference_count, model)", "refId": "model"},
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                }
            ]
        },
        "panels": [_panel_json(panel, index) for index, panel in enumerate(PANELS)],
    }


def render() -> str:
    """The dashboard file's exact text."""
    return json.dumps(build_dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboard JSON (``--check``: exit 1 when the committed file differs)."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        current = DASHBOARD_FILE.read_text() if DASHBOARD_FILE.exists() else ""
        if current != render():
            print(f"{DASHBOARD_FILE} is out of date: run python -m loadtests.dashboards")
            return 1
        return 0
    DASHBOARD_FILE.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_FILE.write_text(render())
    print(f"wrote {DASHBOARD_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
