"""hepsonic's benchmark harness (the project's perf_analyzer): ``python -m loadtests.bench``.

For each model it sweeps concurrency and objects per request, with warm-up and repeated measurement windows,
over every path side by side in one run: onnxruntime in-process (the limit), Triton direct (gRPC, HTTP), the
gateway (gRPC, HTTP), Triton with dynamic batching off, and a naive FastAPI + onnxruntime peer (a baseline).
It reports throughput, p50/p90/p99 latency and Triton's queue vs compute time, picks the best server
configuration per model, and writes a capacity plan, PNG plots, JSON, Markdown and HTML.
"""

from ._harness import PATHS, BenchOptions, PathInfo, PlannedPoint, plan_sweep, run_sweep
from ._loadgen import PointResult, PointSpec, TritonStats, measure_point, read_triton_stats
from ._report import (
    CapacityPlan,
    TargetRatio,
    analyse,
    best_configurations,
    capacity_plan,
    target_ratios,
    write_report,
)

__all__ = [
    "PATHS",
    "BenchOptions",
    "CapacityPlan",
    "PathInfo",
    "PlannedPoint",
    "PointResult",
    "PointSpec",
    "TargetRatio",
    "TritonStats",
    "analyse",
    "best_configurations",
    "capacity_plan",
    "measure_point",
    "plan_sweep",
    "read_triton_stats",
    "run_sweep",
    "target_ratios",
    "write_report",
]
