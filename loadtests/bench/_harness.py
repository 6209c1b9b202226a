"""Plan a sweep that fits the time budget, start each server configuration once, measure, collect."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hepsonic_triton import load_repository

from ._loadgen import PointSpec, measure_point
from ._servers import Endpoints, ServerSetup, naive_peer, triton_stack

__all__ = ["PATHS", "BenchOptions", "PathInfo", "PlannedPoint", "plan_sweep", "run_sweep"]


@dataclass(frozen=True)
class PathInfo:
    """One way of getting an inference done."""

    label: str
    phase: str
    protocol: str
    #: Attribute of :class:`Endpoints` to call ("" for the in-process limit).
    endpoint: str = ""


#: Every path the harness measures, in plotting order.
PATHS: dict[str, PathInfo] = {
    "limit": PathInfo("onnxruntime in-process (the limit)", "limit", "onnxruntime"),
    "triton-grpc": PathInfo("Triton direct, gRPC", "dynamic", "grpc", "triton_grpc"),
    "triton-http": PathInfo("Triton direct, HTTP", "dynamic", "http", "triton_http"),
    "gateway-grpc": PathInfo("through the gateway, gRPC", "dynamic", "grpc", "gateway_grpc"),
    "gateway-http": PathInfo("through the gateway, HTTP", "dynamic", "http", "gateway_http"),
    "triton-grpc-nobatch": PathInfo("Triton gRPC, dynamic batching off", "nobatch", "grpc", "triton_grpc"),
    "naive-http": PathInfo("naive FastAPI + onnxruntime peer (baseline)", "naive", "http", "naive_http"),
}

#: Rough start-up cost of each phase (s), used only to plan within the budget.
_PHASE_START_S = {"limit": 1.0, "dynamic": 8.0, "nobatch": 5.0, "naive": 3.0, "config": 5.0, "limit-end": 0.5}


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """Everything a sweep needs; the CLI fills it."""

    repository: Path
    models: tuple[str, ...] = ("particlenet_lite",)
    concurrencies: tuple[int, ...] = (1, 8, 32)
    batch_sizes: tuple[int, ...] = (1, 32)
    paths: tuple[str, ...] = tuple(PATHS)
    warmup_s: float = 1.0
    window_s: float = 1.5
    repeats: int = 3
    budget_s: float = 600.0
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    device: str = "cpu"
    #: Extra server configurations tried for the best one: queue delays (µs) and instance counts.
    queue_delays_us: tuple[int, ...] = (0, 2000)
    instances: tuple[int, ...] = (1, 2)
    config_search: bool = True

    def point_cost_s(self) -> float:
        """Planned wall time of one point."""
        return self.warmup_s + self.window_s * self.repeats + 0.8


@dataclass(frozen=True, kw_only=True)
class PlannedPoint:
    """A point of the plan, before it runs."""

    model: str
    phase: str
    setup: ServerSetup
    path: str
    batch_size: int
    concurrency: int
    priority: int

    @property
    def phase_key(self) -> tuple[str, str, ServerSetup]:
        """Points sharing this key share one server start."""
        return (self.model, self.phase, self.setup)


def _model_points(options: BenchOptions, model: str, rank: int) -> list[PlannedPoint]:
    """Every point of one model with its priority (lower = measured first when the budget is short).

    Base priorities: 0 = the target points and the best-configuration candidates, 1 = the highest
    concurrency, 2 = the rest of the sweep, 3 = the configuration search. The first model (rank 0) keeps them;
    the others get ``10 * (base + 1) + rank``: the first model is swept in full, then every other model gets
    its key points before any of them gets more.
    """
    base = ServerSetup(threads=options.threads, device=options.device)
    setups = {
        "limit": base,
        "limit-end": base,
        "dynamic": base,
        "nobatch": replace(base, dynamic_batching=False),
        "naive": base,
    }
    top_c = max(options.concurrencies)
    top_b = max(options.batch_sizes)
    small_c = min(options.concurrencies, key=lambda c: abs(c - 4))
    points = []
    for path in options.paths:
        info = PATHS[path]
        concurrencies = (1,) if path == "limit" else options.concurrencies
        for batch in options.batch_sizes:
            for concurrency in concurrencies:
                key_point = (concurrency == top_c and batch == 1 and path != "triton-http") or (
                    path in ("limit", "triton-grpc") and concurrency in (1, small_c) and batch == top_b
                )
                if key_point and not path.startswith("gateway"):
                    priority = 0
                elif concurrency == top_c or path == "limit":
                    priority = 1
                else:
                    priority = 2
                points.append(
                    PlannedPoint(
                        model=model,
                        phase=info.phase,
                        setup=setups[info.phase],
                        path=path,
                        batch_size=batch,
                        concurrency=concurrency,
                        priority=priority if rank == 0 else 10 * (priority + 1) + rank,
                    )
                )
    # The limit again after the served paths: on a shared machine the best of the two is the fairer reference.
    points += [replace(p, phase="limit-end") for p in points if p.path == "limit"]
    if options.config_search and "triton-grpc" in options.paths:
        variants = {replace(base, queue_delay_us=d) for d in options.queue_delays_us}
        variants |= {replace(base, instances=n) for n in options.instances if n != base.instances}
        for setup in sorted(variants, key=lambda s: (s.instances, s.queue_delay_us or 0)):
            points.extend(
                PlannedPoint(
                    model=model,
                    phase="config",
                    setup=setup,
                    path="triton-grpc",
                    batch_size=batch,
                    concurrency=top_c,
                    priority=3 if rank == 0 else 40 + rank,
                )
                for batch in options.batch_sizes
            )
    # keep the second limit measurement last for the model (after the configuration search)
    return sorted(points, key=lambda p: p.phase == "limit-end")


def plan_sweep(options: BenchOptions) -> tuple[list[PlannedPoint], list[PlannedPoint]]:
    """(points to run, points left out) so that the planned time stays within ``options.budget_s``.

    Points are taken by priority; a server configuration's start-up is charged when its first point is taken.
    The kept points are returned grouped by server configuration (one start each).
    """
    candidates = [p for rank, model in enumerate(options.models) for p in _model_points(options, model, rank)]
    order = {key: index for index, key in enumerate(dict.fromkeys(p.phase_key for p in candidates))}
    budget = options.budget_s * 0.9  # leave room for reports and slow starts
    spent = 0.0
    started: set[tuple[str, str, ServerSetup]] = set()
    kept, dropped = [], []
    for point in sorted(candidates, key=lambda p: p.priority):
        cost = options.point_cost_s() + (0.0 if point.phase_key in started else _PHASE_START_S[point.phase])
        if spent + cost <= budget:
            spent += cost
            started.add(point.phase_key)
            kept.append(point)
        else:
            dropped.append(point)
    kept.sort(key=lambda p: (order[p.phase_key], p.path, p.batch_size, p.concurrency))
    return kept, dropped


def _skip(point: PlannedPoint, reason: str) -> dict[str, Any]:
    return {
        "model": point.model,
        "path": point.path,
        "batch_size": point.batch_size,
        "concurrency": point.concurrency,
        "phase": point.phase,
        "reason": reason,
    }


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _default_delay_us(repository: Path, model: str) -> int:
    for entry in load_repository(repository):
        if entry.name == model:
            return int(entry.config.dynamic_batching.max_queue_delay_microseconds)
    raise ValueError(f"bench: model {model!r} is not in {repository}")


@contextlib.contextmanager
def _phase_servers(options: BenchOptions, model: str, phase: str, setup: ServerSetup) -> Iterator[Endpoints]:
    if phase.startswith("limit"):
        yield Endpoints()
    elif phase == "naive":
        with naive_peer(_onnx_file(options.repository, model), model, setup) as endpoints:
            yield endpoints
    else:
        with triton_stack(options.repository, model, setup, with_gateway=phase == "dynamic") as endpoints:
            yield endpoints


def _onnx_file(repository: Path, model: str) -> Path:
    entry = next(e for e in load_repository(repository) if e.name == model)
    return entry.onnx_path(entry.versions[-1])


def run_sweep(options: BenchOptions, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the planned sweep and return the raw results (JSON-ready)."""
    served = {entry.name for entry in load_repository(options.repository)}
    missing = [m for m in options.models if m not in served]
    if missing:
        raise ValueError(f"bench: model(s) {missing} not in {options.repository} (it holds {sorted(served)})")
    unknown = [p for p in options.paths if p not in PATHS]
    if unknown:
        raise ValueError(f"bench: unknown path(s) {unknown}; expected some of {list(PATHS)}")
    started = time.monotonic()
    deadline = started + options.budget_s
    kept, dropped = plan_sweep(options)
    results: list[dict[str, Any]] = []
    skipped = [_skip(p, "left out of the plan to fit the budget") for p in dropped]
    delays = {model: _default_delay_us(options.repository, model) for model in options.models}
    groups: dict[tuple[str, str, ServerSetup], list[PlannedPoint]] = {}
    for point in kept:
        groups.setdefault(point.phase_key, []).append(point)
    # A separate process generates the load: the measuring process never competes with it for the GIL.
    context = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(kept), desc="bench", unit="point", dynamic_ncols=True)
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as loadgen:
        for (model, phase, setup), points in groups.items():
            remaining = deadline - time.monotonic()
            if remaining < _PHASE_START_S[phase] + options.point_cost_s():
                skipped.extend(_skip(p, "out of time") for p in points)
                bar.update(len(points))
                continue
            bar.set_description(f"{model} {phase}: starting servers")
            phase_started = time.monotonic()
            with _phase_servers(options, model, phase, setup) as endpoints:
                startup_s = time.monotonic() - phase_started
                if progress:
                    progress(f"{model} {phase} servers up in {startup_s:.1f} s")
                for point in points:
                    if deadline - time.monotonic() < options.point_cost_s():
                        skipped.append(_skip(point, "out of time"))
                        bar.update(1)
                        continue
                    info = PATHS[point.path]
                    bar.set_description(f"{model} {point.path} b={point.batch_size} c={point.concurrency}")
                    labels = setup.label(delays[model])
                    labels["phase"] = phase
                    spec = PointSpec(
                        path=point.path,
                        model=model,
                        batch_size=point.batch_size,
                        concurrency=point.concurrency,
                        protocol=info.protocol,
                        url=getattr(endpoints, info.endpoint) if info.endpoint else "",
                        stats_url=endpoints.triton_http if phase != "naive" else "",
                        onnx_file=str(_onnx_file(options.repository, model)),
                        threads=options.threads,
                        device=options.device,
                        warmup_s=options.warmup_s,
                        window_s=options.window_s,
                        repeats=options.repeats,
                        labels=labels,
                    )
                    result = loadgen.submit(measure_point, spec).result()
                    results.append(result.as_dict())
                    bar.set_postfix_str(f"{result.throughput:.0f}/s p99 {result.p99_ms:.0f} ms")
                    bar.update(1)
    bar.close()
    machine = _machine()
    machine["load_average_at_end"] = list(os.getloadavg())
    return {
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "machine": machine,
        "wall_s": time.monotonic() - started,
        "default_queue_delay_us": delays,
        "paths": {name: info.label for name, info in PATHS.items()},
        "results": results,
        "skipped": skipped,
    }
