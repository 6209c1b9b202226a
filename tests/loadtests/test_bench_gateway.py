"""The gateway-tax benchmark (issue 4): core placement, and a tiny run against a real Triton and gateway."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hepsonic_client import free_port
from loadtests import bench_gateway

REPO_ROOT = Path(__file__).resolve().parents[2]
linux_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")


def test_isolated_placement_gives_the_gateway_its_own_cores() -> None:
    server, gateway = bench_gateway.placement_cores("isolated", [0, 1])
    assert (server, gateway) == ({0}, {1})
    server, gateway = bench_gateway.placement_cores("isolated", list(range(16)))
    assert gateway == {12, 13, 14, 15}
    assert not server & gateway
    assert server | gateway == set(range(16))


def test_shared_placement_and_one_core_share_everything() -> None:
    assert bench_gateway.placement_cores("shared", [0, 1, 2]) == ({0, 1, 2}, {0, 1, 2})
    assert bench_gateway.placement_cores("isolated", [3]) == ({3}, {3})


def test_a_failing_load_point_comes_back_as_a_clear_picklable_error() -> None:
    """tritonclient's exceptions do not unpickle; before this, a failing point hung the run in ``pool.apply``."""
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    arrays = {"rings": np.zeros((1, 100), dtype=np.float32)}
    with pytest.raises(RuntimeError, match=rf"grpc load on ringer at {closed} failed") as caught:
        bench_gateway._point(("grpc", closed, "ringer", arrays, 1, 0.2))
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value)


@linux_affinity
def test_pin_tree_reaches_threads_and_children_but_skips_one_subtree() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    script = (
        "import subprocess, sys, threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        time.sleep(0.2)  # let the thread start
        bench_gateway.pin_tree(parent.pid, {cpus[0]})
        tids = [int(t.name) for t in Path(f"/proc/{parent.pid}/task").iterdir()]
        assert len(tids) >= 2
        assert all(os.sched_getaffinity(tid) == {cpus[0]} for tid in tids)
        assert os.sched_getaffinity(child) == {cpus[0]}
        bench_gateway.pin_tree(parent.pid, {cpus[1]}, skip={child})
        assert os.sched_getaffinity(parent.pid) == {cpus[1]}
        assert os.sched_getaffinity(child) == {cpus[0]}, "the skipped subtree keeps its cores"
    finally:
        os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
        parent.stdout.close()


@pytest.mark.integration
def test_tiny_gateway_tax_run_measures_both_paths_and_placements(tmp_path: Path) -> None:
    command = [
        sys.executable, str(REPO_ROOT / "loadtests" / "bench_gateway.py"),
        "--duration", "0.4", "--concurrency", "2", "--batches", "4", "--protocols", "grpc,http",
        "--repeats", "2", "--output", str(tmp_path), "--tag", "tiny",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "bench_gateway_tiny.json").read_text())
    assert {(r["placement"], r["path"], r["protocol"], r["repeat"]) for r in report["results"]} == {
        (placement, path, protocol, repeat)
        for placement in ("isolated", "shared")
        for path, protocol in (
            ("direct", "grpc"),
            ("direct", "http"),
            ("gateway", "grpc"),
            ("gateway", "http"),
            ("passthrough", "grpc"),
        )  # the reference proxy speaks gRPC only
        for repeat in (0, 1)
    }
    assert all(r["requests"] > 0 for r in report["results"])
    assert len(report["comparisons"]) == 4
    for comparison in report["comparisons"]:
        assert 0 < comparison["throughput_ratio"] < 10
        assert comparison["repeats"] == 2
        assert comparison["gateway_cpu_ms_per_request"] > 0
        if comparison["protocol"] == "grpc":
            assert 0 < comparison["passthrough_ratio"] < 10
            assert comparison["passthrough_cpu_ms_per_request"] > 0
        else:
            assert "passthrough_ratio" not in comparison
    assert (tmp_path / "bench_gateway_tiny.png").stat().st_size > 10_000
    markdown = (tmp_path / "bench_gateway_tiny.md").read_text()
    assert "| isolated | grpc | 4 | 2 |" in markdown
    if hasattr(os, "sched_getaffinity"):  # the report says how the cores were split
        cpus = sorted(os.sched_getaffinity(0))
        gateway_cores = len(bench_gateway.placement_cores("isolated", cpus)[1])
        assert report["machine"]["isolated_gateway_cores"] == gateway_cores
        assert f"the gateway on cores of its own ({gateway_cores} of {len(cpus)})" in markdown
