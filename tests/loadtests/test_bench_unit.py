"""Benchmark harness logic without servers: the plan fits the budget, targets and capacity plan are computed
right, the report is written with its plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from loadtests.bench import (
    PATHS,
    BenchOptions,
    TritonStats,
    best_configurations,
    capacity_plan,
    plan_sweep,
    target_ratios,
    write_report,
)
from loadtests.bench._harness import _PHASE_START_S
from loadtests.payloads import RECO_EVENT_MIX

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


def _planned_cost(options: BenchOptions, points: list[Any]) -> float:
    phases = {p.phase_key: p.phase for p in points}
    return len(points) * options.point_cost_s() + sum(_PHASE_START_S[phase] for phase in phases.values())


@pytest.mark.parametrize("budget", [20.0, 60.0, 200.0, 2000.0])
def test_plan_fits_the_budget_and_keeps_the_target_points_first(budget: float) -> None:
    options = BenchOptions(repository=REPOSITORY, budget_s=budget, window_s=1.0, repeats=2, warmup_s=0.5)
    kept, dropped = plan_sweep(options)
    assert _planned_cost(options, kept) <= 0.9 * budget
    assert len(kept) + len(dropped) > 0
    if budget >= 60:
        # the target points (priority 0) always fit a minute
        assert not [p for p in dropped if p.priority == 0]
    keys = [p.phase_key for p in kept]
    # every server configuration is started once: its points are contiguous
    assert len(set(keys)) == len([k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k])
    if budget >= 60:
        targets = {(p.path, p.batch_size, p.concurrency) for p in kept}
        for path in ("triton-grpc", "triton-grpc-nobatch", "naive-http"):
            assert (path, 1, 32) in targets


def test_big_budget_plans_every_path_and_the_config_search() -> None:
    kept, dropped = plan_sweep(BenchOptions(repository=REPOSITORY, budget_s=10_000))
    assert not dropped
    assert {p.path for p in kept} == set(PATHS)
    assert {p.setup.queue_delay_us for p in kept if p.phase == "config"} >= {0, 2000}
    assert {p.setup.instances for p in kept if p.phase == "config"} == {1, 2}


def test_triton_stats_difference() -> None:
    before = TritonStats(
        success_count=10, inference_count=40, execution_count=5, queue_ns=1000, compute_ns=5000
    )
    after = TritonStats(
        success_count=30, inference_count=100, execution_count=10, queue_ns=3000, compute_ns=9000
    )
    delta = after.minus(before)
    assert (delta.success_count, delta.inference_count, delta.execution_count) == (20, 60, 5)
    assert (delta.queue_ns, delta.compute_ns) == (2000, 4000)


def _point(path: str, batch: int, concurrency: int, throughput: float, **labels: Any) -> dict[str, Any]:
    phase = {"triton-grpc-nobatch": "nobatch", "naive-http": "naive", "limit": "limit"}.get(path, "dynamic")
    return {
        "path": path, "model": "particlenet_lite", "batch_size": batch, "concurrency": concurrency,
        "protocol": "grpc", "labels": {"phase": phase, "queue_delay_us": 500, "instances": 1, **labels},
        "throughput": throughput, "throughput_windows": [throughput * 0.9, throughput * 1.1],
        "p50_ms": 5.0, "p90_ms": 8.0, "p99_ms": 12.0, "requests": 100, "errors": 0, "first_error": "",
        "queue_us": 100.0 if path.startswith("triton") else None,
        "compute_us": 900.0 if path.startswith("triton") else None,
        "server_batch": 4.0 if path.startswith("triton") else None,
    }  # fmt: skip


def _raw() -> dict[str, Any]:
    results = [
        _point("limit", 1, 1, 300.0),
        _point("limit", 16, 1, 600.0),
        _point("triton-grpc", 1, 32, 1200.0),
        _point("triton-grpc", 16, 4, 480.0),
        _point("gateway-grpc", 16, 4, 450.0),
        _point("triton-grpc-nobatch", 1, 32, 200.0),
        _point("naive-http", 1, 32, 150.0),
        _point("triton-grpc", 1, 32, 1500.0, phase="config", queue_delay_us=2000),
    ]
    return {
        "options": {"models": ["particlenet_lite"], "concurrencies": [1, 4, 32], "batch_sizes": [1, 16],
                    "warmup_s": 1, "window_s": 2, "repeats": 2, "threads": 2, "budget_s": 60, "device": "cpu"},
        "machine": {"cpu": "test cpu", "cores": 2, "load_average_at_start": [1.0, 1, 1],
                    "load_average_at_end": [1.0, 1, 1]},
        "wall_s": 42.0, "default_queue_delay_us": {"particlenet_lite": 500},
        "paths": {name: info.label for name, info in PATHS.items()}, "results": results, "skipped": [],
    }  # fmt: skip


def test_target_ratios_compare_points_of_the_same_run() -> None:
    targets = {t.name: t for t in target_ratios(_raw())}
    assert targets["dynamic batching pays"].ratio == pytest.approx(6.0)  # 1200 / 200, default config only
    assert targets["dynamic batching pays"].met is True
    assert "runs 2.00x faster per object at batch 16" in targets["dynamic batching pays"].detail
    assert targets["ahead of the naive peer"].ratio == pytest.approx(8.0)
    # close to the limit: best served at the largest batch (16): 480 / 600
    assert targets["close to the limit"].ratio == pytest.approx(0.8)
    assert "triton-grpc" in targets["close to the limit"].detail


def test_missing_points_are_reported_as_not_measured() -> None:
    raw = _raw()
    raw["results"] = [r for r in raw["results"] if r["path"] != "naive-http"]
    targets = {t.name: t for t in target_ratios(raw)}
    assert targets["ahead of the naive peer"].ratio is None
    assert targets["ahead of the naive peer"].met is None


def test_best_configuration_and_capacity_plan() -> None:
    raw = _raw()
    best = best_configurations(raw)["particlenet_lite"]
    assert best["throughput"] == 1500.0
    assert best["labels"]["queue_delay_us"] == 2000
    plan = capacity_plan(raw, event_rate_per_core=0.5, cores=(100, 1000))
    per_event = RECO_EVENT_MIX["particlenet_lite"].objects_per_event
    assert plan.per_model["particlenet_lite"] == (per_event, 1500.0)
    assert plan.servers[1000] == math.ceil(1000 * 0.5 * per_event / 1500.0)
    assert "ringer" in plan.unmeasured


def test_report_has_targets_capacity_plan_and_plots(tmp_path: Path) -> None:
    report = write_report(_raw(), tmp_path, event_rate_per_core=0.5)
    text = report.read_text()
    for heading in ("## Targets", "## Best server configuration", "## Capacity plan", "## All points"):
        assert heading in text
    assert "6.00x" in text
    assert "met" in text
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == [
        "particlenet_lite_latency_vs_throughput.png",
        "particlenet_lite_queue_vs_compute.png",
        "particlenet_lite_throughput_vs_concurrency.png",
    ]
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    html = (tmp_path / "report.html").read_text()
    assert "<table>" in html
    assert "particlenet_lite_throughput_vs_concurrency.png" in html
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["analysis"]["best"]["particlenet_lite"]["throughput"] == 1500.0


def test_public_api_is_curated() -> None:
    from loadtests import bench  # noqa: PLC0415

    public = {name for name in vars(bench) if not name.startswith("_")}
    assert set(bench.__all__) == public
    assert {"run_sweep", "plan_sweep", "write_report", "BenchOptions", "measure_point"} <= public


def test_cli_refuses_unknown_models_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    from loadtests.bench._cli import main  # noqa: PLC0415

    assert main(["--models", "particlenet_lite", "no_such_model", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "no_such_model" in error
    assert "particlenet_lite" in error  # names what the repository holds
