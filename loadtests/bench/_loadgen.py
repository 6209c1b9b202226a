"""The load generator: runs in its own process and measures one point (path, model, batch, concurrency).

Served paths: ``concurrency`` asyncio clients (``tritonclient`` aio, gRPC or HTTP) each send one request after
the other with the same pre-built inputs, as perf_analyzer does. After the warm-up, the run is cut into
``repeats`` windows of ``window_s``; throughput is counted per window and latencies are taken from the
requests that finished inside the windows. Triton's statistics are read at the start and the end of the
measurement, so queue and compute time cover the same span.

The limit: one onnxruntime session in this process, same ONNX file, batch size and thread count, called
back to back for the same windows.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtests.payloads import PayloadPool

__all__ = ["PointResult", "PointSpec", "TritonStats", "measure_point", "read_triton_stats"]


@dataclass(frozen=True, kw_only=True)
class PointSpec:
    """One measurement: what to call, how hard, for how long."""

    path: str
    model: str
    batch_size: int
    concurrency: int
    #: "grpc", "http" or "onnxruntime" (the in-process limit).
    protocol: str
    #: host:port of the endpoint (unused for onnxruntime).
    url: str = ""
    #: host:port of the Triton HTTP endpoint whose /v2/models/{m}/stats to read ("" = none).
    stats_url: str = ""
    #: ONNX file and thread count for the limit.
    onnx_file: str = ""
    threads: int = 1
    device: str = "cpu"
    warmup_s: float = 1.0
    window_s: float = 2.0
    repeats: int = 3
    #: Labels carried into the result (server configuration).
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TritonStats:
    """Cumulative counters of one model (all versions) from Triton's statistics extension."""

    success_count: int = 0
    inference_count: int = 0
    execution_count: int = 0
    queue_ns: int = 0
    compute_ns: int = 0

    def minus(self, earlier: TritonStats) -> TritonStats:
        """The counters accumulated since ``earlier``."""
        return TritonStats(
            success_count=self.success_count - earlier.success_count,
            inference_count=self.inference_count - earlier.inference_count,
            execution_count=self.execution_count - earlier.execution_count,
            queue_ns=self.queue_ns - earlier.queue_ns,
            compute_ns=self.compute_ns - earlier.compute_ns,
        )


def read_triton_stats(stats_url: str, model: str) -> TritonStats:
    """Sum Triton's ``/v2/models/{model}/stats`` over every version."""
    with urllib.request.urlopen(f"http://{stats_url}/v2/models/{model}/stats", timeout=5) as response:
        body = json.loads(response.read())
    totals = {"success": 0, "inference": 0, "execution": 0, "queue": 0, "compute": 0}
    for entry in body.get("model_stats", []):
        stats = entry.get("inference_stats", {})
        totals["success"] += int(stats.get("success", {}).get("count", 0))
        totals["inference"] += int(entry.get("inference_count", 0))
        totals["execution"] += int(entry.get("execution_count", 0))
        totals["queue"] += int(stats.get("queue", {}).get("ns", 0))
        totals["compute"] += sum(
            int(stats.get(part, {}).get("ns", 0))
            for part in ("compute_input", "compute_infer", "compute_output")
        )
    return TritonStats(
        success_count=totals["success"],
        inference_count=totals["inference"],
        execution_count=totals["execution"],
        queue_ns=totals["queue"],
        compute_ns=totals["compute"],
    )


@dataclass(frozen=True, kw_only=True)
class PointResult:
    """What one point measured. Throughputs are inferences (objects) per second."""

    spec: PointSpec
    throughput: float = 0.0
    throughput_windows: tuple[float, ...] = ()
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    #: Server side, per request (Triton paths only): mean queue and compute time (µs), mean server batch.
    queue_us: float | None = None
    compute_us: float | None = None
    server_batch: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        spec = self.spec
        return {
            "path": spec.path,
            "model": spec.model,
            "batch_size": spec.batch_size,
            "concurrency": spec.concurrency,
            "protocol": spec.protocol,
            "labels": spec.labels,
            "throughput": self.throughput,
            "throughput_windows": list(self.throughput_windows),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "queue_us": self.queue_us,
            "compute_us": self.compute_us,
            "server_batch": self.server_batch,
        }


def _summarise(
    spec: PointSpec, start: float, completions: list[tuple[float, float]]
) -> tuple[tuple[float, ...], list[float]]:
    """Per-window throughputs and the latencies (ms) of requests finished inside the windows."""
    windows = [0] * spec.repeats
    latencies = []
    for finished, latency in completions:
        index = int((finished - start) // spec.window_s)
        if 0 <= index < spec.repeats:
            windows[index] += 1
            latencies.append(latency * 1000.0)
    return tuple(count * spec.batch_size / spec.window_s for count in windows), latencies


def _result(
    spec: PointSpec,
    windows: tuple[float, ...],
    latencies: list[float],
    errors: int,
    first_error: str,
    server: TritonStats | None = None,
) -> PointResult:
    percentiles = np.percentile(latencies, [50, 90, 99]) if latencies else np.zeros(3)
    queue_us = compute_us = server_batch = None
    if server is not None and server.success_count > 0:
        queue_us = server.queue_ns / server.success_count / 1e3
        compute_us = server.compute_ns / server.success_count / 1e3
        server_batch = server.inference_count / max(server.execution_count, 1)
    return PointResult(
        spec=spec,
        throughput=float(np.median(windows)) if windows else 0.0,
        throughput_windows=windows,
        p50_ms=float(percentiles[0]),
        p90_ms=float(percentiles[1]),
        p99_ms=float(percentiles[2]),
        requests=len(latencies),
        errors=errors,
        first_error=first_error,
        queue_us=queue_us,
        compute_us=compute_us,
        server_batch=server_batch,
    )


def _measure_onnxruntime(spec: PointSpec) -> PointResult:
    import onnxruntime as ort  # noqa: PLC0415  (only the limit needs it in this process)

    options = ort.SessionOptions()
    options.intra_op_num_threads = spec.threads
    options.inter_op_num_threads = 1
    providers: list[Any] = ["CPUExecutionProvider"]
    if spec.device == "gpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(spec.onnx_file, options, providers=providers)
    feed = PayloadPool(spec.model, spec.batch_size, size=1).next()
    warm_end = time.perf_counter() + spec.warmup_s
    while time.perf_counter() < warm_end:
        session.run(None, feed)
    start = time.perf_counter()
    end = start + spec.window_s * spec.repeats
    completions = []
    while (began := time.perf_counter()) < end:
        session.run(None, feed)
        finished = time.perf_counter()
        completions.append((finished, finished - began))
    windows, latencies = _summarise(spec, start, completions)
    return _result(spec, windows, latencies, 0, "")


async def _measure_served(spec: PointSpec) -> PointResult:
    if spec.protocol == "grpc":
        import tritonclient.grpc as module  # noqa: PLC0415
        from tritonclient.grpc import aio  # noqa: PLC0415

        client: Any = aio.InferenceServerClient(spec.url)
    else:
        import tritonclient.http as module  # noqa: PLC0415
        from tritonclient.http import aio  # noqa: PLC0415

        client = aio.InferenceServerClient(spec.url, conn_limit=max(spec.concurrency, 1))
    pool = PayloadPool(spec.model, spec.batch_size, size=4)
    # Inputs are built once per client and reused (Triton maintainers' advice for Python clients).
    input_sets = []
    for index in range(spec.concurrency):
        tensors = pool.payloads[index % len(pool.payloads)]
        items = []
        for name, array in tensors.items():
            item = module.InferInput(name, list(array.shape), "FP32")
            item.set_data_from_numpy(array)
            items.append(item)
        input_sets.append(items)
    loop = asyncio.get_running_loop()
    warm_end = loop.time() + spec.warmup_s
    end = warm_end + spec.window_s * spec.repeats
    completions: list[tuple[float, float]] = []
    errors = 0
    first_error = ""
    offset = time.perf_counter() - loop.time()  # record completions on the perf_counter clock

    async def one_client(inputs: list[Any]) -> None:
        nonlocal errors, first_error
        while loop.time() < end:
            began = time.perf_counter()
            try:
                await client.infer(spec.model, inputs)
            except Exception as exc:  # noqa: BLE001  (counted and reported; the point goes on)
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
                await asyncio.sleep(0.01)
                continue
            finished = time.perf_counter()
            completions.append((finished, finished - began))

    async def stats_at(moment: float) -> TritonStats | None:
        await asyncio.sleep(max(0.0, moment - loop.time()))
        if not spec.stats_url:
            return None
        return await asyncio.to_thread(read_triton_stats, spec.stats_url, spec.model)

    try:
        results = await asyncio.gather(
            stats_at(warm_end), stats_at(end), *(one_client(inputs) for inputs in input_sets)
        )
    finally:
        await client.close()
    before, after = results[0], results[1]
    server = after.minus(before) if before is not None and after is not None else None
    windows, latencies = _summarise(spec, warm_end + offset, completions)
    return _result(spec, windows, latencies, errors, first_error, server)


def measure_point(spec: PointSpec) -> PointResult:
    """Measure one point (the entry point run in the load-generator process)."""
    if spec.protocol == "onnxruntime":
        return _measure_onnxruntime(spec)
    if spec.protocol not in ("grpc", "http"):
        raise ValueError(f"bench: path {spec.path!r} has unknown protocol {spec.protocol!r}")
    return asyncio.run(_measure_served(spec))
