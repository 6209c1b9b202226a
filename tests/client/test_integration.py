"""Integration tests against real Triton processes (``hepsonic-triton`` on a tiny repository).

The tiny repository loads in about a second, so failover and fallback can start and kill servers freely.
The gateway and the physics models are covered at the end through the lead's ``stack`` fixture.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import hepsonic_client as hc
from hepsonic_client import Batcher, BatchingOptions, Client, EmbeddedTriton, FallbackOptions, RetryPolicy

from .tiny_repository import IN_FEATURES, write_tiny_repository

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("hepsonic-triton") is None, reason="hepsonic-triton is not on PATH"),
]

FAST = RetryPolicy(attempts_per_server=2, backoff_base=0.01, backoff_max=0.05, circuit_open=60)


@pytest.fixture(scope="module")
def tiny_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_repository(tmp_path_factory.mktemp("tiny_repository"))


@contextlib.contextmanager
def triton(repository: Path) -> Iterator[EmbeddedTriton]:
    server = EmbeddedTriton(repository, start_timeout=120).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tiny_repository: Path) -> Iterator[EmbeddedTriton]:
    with triton(tiny_repository) as running:
        yield running


def reference(repository: Path, x: np.ndarray, version: int = 2) -> np.ndarray:
    return Client(transport=hc.OnnxRuntimeTransport(repository)).infer("tiny", {"x": x}, version)["y"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_infer_models_metadata_and_provenance(
    server: EmbeddedTriton, tiny_repository: Path, protocol: str
) -> None:
    address = server.grpc_address if protocol == "grpc" else server.http_address
    with Client(f"{protocol}://{address}") as client:
        assert client.is_ready()
        assert {(m.name, m.version) for m in client.models()} == {("tiny", "1"), ("tiny", "2")}
        assert [t.name for t in client.metadata("tiny").inputs] == ["x"]
        x = np.random.default_rng(0).normal(size=(7, IN_FEATURES)).astype(np.float32)
        for version in (1, 2):
            result = client.infer("tiny", {"x": x}, version)
            np.testing.assert_allclose(result["y"], reference(tiny_repository, x, version), atol=1e-5)
            expected_sha = hc.OnnxRuntimeTransport(tiny_repository).config_parameter(
                "tiny", f"sha256/{version}", timeout=None
            )
            assert result.provenance == hc.Provenance(
                model="tiny", version=str(version), sha256=expected_sha, server=f"{protocol}://{address}"
            )
        with pytest.raises(hc.InputError, match="input 'x': expected shape"):
            client.infer("tiny", {"x": x[:, :3]})
        with pytest.raises(hc.ModelNotFoundError):
            client.infer("nope", {"x": x})


def test_batcher_32_concurrent_callers_match_onnxruntime(
    server: EmbeddedTriton, tiny_repository: Path
) -> None:
    x = np.random.default_rng(1).normal(size=(32 * 8, IN_FEATURES)).astype(np.float32)
    expected = reference(tiny_repository, x)
    got: dict[int, np.ndarray] = {}
    with Client(f"grpc://{server.grpc_address}") as client:
        options = BatchingOptions(max_batch_size=64, max_latency=0.005)
        with Batcher(client, "tiny", 2, options=options) as batcher:

            def caller(k: int) -> None:
                for i in range(k, len(x), 32):
                    got[i] = batcher.infer({"x": x[i]}, timeout=30)["y"]

            threads = [threading.Thread(target=caller, args=(k,)) for k in range(32)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            stats = batcher.stats()
    assert len(got) == len(x)
    np.testing.assert_allclose(np.stack([got[i] for i in range(len(x))]), expected, atol=1e-5)
    assert stats["requests"] < len(x) / 4


def test_failover_to_second_server_when_first_is_killed(
    tiny_repository: Path, server: EmbeddedTriton
) -> None:
    x = np.ones((2, IN_FEATURES), np.float32)
    with triton(tiny_repository) as first:
        client = Client([f"grpc://{first.grpc_address}", f"grpc://{server.grpc_address}"], retry=FAST)
        assert client.infer("tiny", {"x": x}).provenance.server == f"grpc://{first.grpc_address}"
        first.stop()  # SIGTERM: hepsonic-triton takes Triton down with it (SIGKILL would orphan Triton)
        result = client.infer("tiny", {"x": x})
        assert result.provenance.server == f"grpc://{server.grpc_address}"
        np.testing.assert_allclose(result["y"], reference(tiny_repository, x), atol=1e-5)
        assert client.stats()["failovers"] == 1
        client.close()


def test_fallback_starts_embedded_triton_and_stops_it(
    tiny_repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"grpc://127.0.0.1:{hc._fallback.free_port()}"  # nothing listens there
    client = Client(
        dead, retry=FAST, fallback=FallbackOptions(repository=tiny_repository, local_onnxruntime=False)
    )
    x = np.ones((3, IN_FEATURES), np.float32)
    result = client.infer("tiny", {"x": x})
    assert result.provenance.via == "embedded_triton"
    np.testing.assert_allclose(result["y"], reference(tiny_repository, x), atol=1e-5)
    assert client.stats()["fallback_embedded_triton"] >= 1  # counted per request that fell back
    assert any("FALLBACK" in r.message for r in caplog.records)
    embedded = client._embedded
    pid = embedded.process.pid
    client.close()
    assert embedded.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the launcher's process group is gone...
    assert not Client(f"grpc://{embedded.grpc_address}").is_ready()  # ...and so is Triton itself


def test_a_killed_job_takes_its_fallback_down_even_when_a_worker_thread_started_it(
    tiny_repository: Path,
) -> None:
    """Reconstruction jobs are multi-threaded and die by SIGKILL (batch systems): the embedded Triton a
    worker thread started must not outlive the job, nor hang its start (nothing runs between fork and exec)."""
    script = f"""
import threading
from hepsonic_client import EmbeddedTriton
started = []
worker = threading.Thread(target=lambda: started.append(EmbeddedTriton({str(tiny_repository)!r}).start()))
worker.start()
worker.join()
print(started[0].process.pid, flush=True)
threading.Event().wait()
"""
    job = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    family: list[psutil.Process] = []
    try:
        assert job.stdout is not None
        launcher = psutil.Process(int(job.stdout.readline()))
        family = [launcher, *launcher.children(recursive=True)]
        assert any("tritonserver" in " ".join(p.cmdline()) for p in family)
        job.kill()
        job.wait(timeout=10)
        _, alive = psutil.wait_procs(family, timeout=30)
        assert alive == [], f"outlived the job: {alive}"
    finally:
        job.kill()
        job.wait(timeout=10)
        if job.stdout is not None:
            job.stdout.close()
        for process in family:  # whatever the assertion found alive
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


#: What a job built before forking its worker processes (read by _forked_worker in the children).
_JOB: dict[str, Any] = {}


def _job_inputs(i: int) -> np.ndarray:
    return np.random.default_rng(100 + i).normal(size=(5, IN_FEATURES)).astype(np.float32)


def _forked_worker(worker: int, workers: int, answers: Any) -> None:
    client, batcher = _JOB["client"], _JOB["batcher"]
    try:
        for i in range(worker, 24, workers):
            x = _job_inputs(i)
            alone = client.infer("tiny", {"x": x})["y"]
            many = client.infer_many("tiny", [{"x": x}, {"x": 2 * x}])
            row = batcher.infer({"x": x[0]}, timeout=30)["y"]
            answers.put((i, alone, many[0]["y"], many[1]["y"], row))
    finally:
        batcher.close()
        client.close()  # this process's own connections and regions: the parent's stay the parent's


@pytest.mark.parametrize(("protocol", "shared_memory"), [("grpc", True), ("http", True), ("http", False)])
def test_forked_worker_processes_get_their_own_answers(
    server: EmbeddedTriton, tiny_repository: Path, protocol: str, shared_memory: bool
) -> None:
    """A job that used the client, then forks workers (multiprocessing's default on Linux): each worker gets
    the answers to its own inputs. Inherited, the HTTP connection hung and shared-memory regions mixed up the
    processes' tensors (91 of 128 answers wrong); infer_many and the Batcher waited for threads that a fork
    does not copy."""
    import multiprocessing  # noqa: PLC0415

    address = server.grpc_address if protocol == "grpc" else server.http_address
    client = Client(f"{protocol}://{address}", shared_memory=shared_memory)
    batcher = Batcher(client, "tiny", options=BatchingOptions(max_batch_size=8, max_latency=0.001))
    expected = reference(tiny_repository, np.concatenate([_job_inputs(i) for i in range(24)]))
    client.infer_many("tiny", [{"x": _job_inputs(0)}, {"x": _job_inputs(1)}])  # the pool's threads exist
    batcher.infer({"x": _job_inputs(0)[0]}, timeout=30)  # and the batcher's
    _JOB.update(client=client, batcher=batcher)
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    workers = [context.Process(target=_forked_worker, args=(w, 3, answers)) for w in range(3)]
    try:
        for worker in workers:
            worker.start()
        got = [answers.get(timeout=60) for _ in range(24)]
        for worker in workers:
            worker.join(timeout=30)
        assert [worker.exitcode for worker in workers] == [0, 0, 0]
        for i, alone, first, second, row in got:
            mine = expected[5 * i : 5 * i + 5]
            np.testing.assert_allclose(alone, mine, atol=1e-5)
            np.testing.assert_allclose(first, mine, atol=1e-5)
            np.testing.assert_allclose(second, reference(tiny_repository, 2 * _job_inputs(i)), atol=1e-5)
            np.testing.assert_allclose(row, mine[0], atol=1e-5)
        # The parent's client, batcher and regions still work after its workers closed theirs.
        np.testing.assert_allclose(
            client.infer("tiny", {"x": _job_inputs(3)})["y"], expected[15:20], atol=1e-5
        )
        np.testing.assert_allclose(
            batcher.infer({"x": _job_inputs(4)[0]}, timeout=30)["y"], expected[20], atol=1e-5
        )
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
        answers.close()
        _JOB.clear()
        batcher.close()
        client.close()


def _regions() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("hepsonic_client_*")}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shared_memory_round_trip_and_clean_up(
    server: EmbeddedTriton, tiny_repository: Path, protocol: str
) -> None:
    before = _regions()
    address = server.grpc_address if protocol == "grpc" else server.http_address
    x = np.random.default_rng(2).normal(size=(9, IN_FEATURES)).astype(np.float32)
    with Client(f"{protocol}://{address}", shared_memory=True) as client:
        result = client.infer("tiny", {"x": x})
        assert _regions() - before  # really went through shared memory
    np.testing.assert_allclose(result["y"], reference(tiny_repository, x), atol=1e-5)
    assert _regions() == before


def test_shared_memory_of_a_crashed_job_is_swept(server: EmbeddedTriton) -> None:
    script = f"""
import os, numpy as np
from hepsonic_client import Client
c = Client("grpc://{server.grpc_address}", shared_memory=True)
c.infer("tiny", {{"x": np.ones((2, {IN_FEATURES}), np.float32)}})
print(os.getpid(), flush=True)
os.killpg(0, 9)  # the whole job dies at once, Python's resource tracker included
"""
    crashed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, start_new_session=True
    )
    pid = crashed.stdout.strip()
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    leftovers = {r for r in _regions() if r.startswith(f"hepsonic_client_{pid}_")}
    assert leftovers  # the crash left its region behind...
    removed = hc.sweep_stale_regions()
    assert leftovers <= set(removed)  # ...and the sweeper removed it
    assert not {r for r in _regions() if r.startswith(f"hepsonic_client_{pid}_")}


def test_requests_through_the_gateway_carry_its_provenance(stack) -> None:
    models = {p.name for p in stack.repository.iterdir() if (p / "config.pbtxt").is_file()}
    if "particlenet_lite" not in models:
        pytest.skip("particlenet_lite is not in the model repository yet")
    local = Client(transport=hc.OnnxRuntimeTransport(stack.repository))
    constituents = np.abs(np.random.default_rng(3).normal(size=(5, 30, 4))) * 50 + 1
    expected = hc.tag_jets(local, constituents)
    for url in (
        f"grpc://{stack.gateway_grpc}",
        f"http://{stack.gateway_http}",
        f"grpc://{stack.triton_grpc}",
    ):
        with Client(url) as client:
            tags = hc.tag_jets(client, constituents)
        np.testing.assert_allclose(tags.p_top, expected.p_top, atol=1e-5)
        assert tags.provenance.sha256 == expected.provenance.sha256, url
        assert tags.provenance.version == expected.provenance.version
        # The version's mass-decorrelated working point reaches the job through every front.
        with Client(url) as client:
            cut = hc.served_mass_decorrelated_cut(client, tags.provenance)
        assert cut == hc.served_mass_decorrelated_cut(local, expected.provenance), url


def test_reco_job_service_and_local_outputs_agree(stack, tmp_path: Path) -> None:
    pytest.importorskip("uproot")
    import pyarrow.parquet as pq  # noqa: PLC0415

    from hepsonic_client import reco  # noqa: PLC0415

    served = {p.name for p in stack.repository.iterdir() if (p / "config.pbtxt").is_file()}
    tasks = [task for task, model in reco.TASKS.items() if model in served]
    if not tasks:
        pytest.skip("none of the reconstruction models is in the model repository yet")
    sample = reco.write_sample(tmp_path / "events.root", events=12, seed=3)
    outputs = {}
    for mode, client in (
        ("service", Client(f"grpc://{stack.gateway_grpc}")),
        ("local", Client(transport=hc.OnnxRuntimeTransport(stack.repository))),
    ):
        with client:
            summary = reco.run(
                sample, tmp_path / f"{mode}.parquet", client=client, tasks=tasks, progress=False
            )
        assert summary["events"] == 12
        outputs[mode] = pq.read_table(tmp_path / f"{mode}.parquet")
        assert b"hepsonic_provenance" in outputs[mode].schema.metadata
    service, local = (outputs[m].to_pydict() for m in ("service", "local"))
    assert service.keys() == local.keys()
    if "vertices" in tasks:
        # The served version publishes its vertex fit: every vertex has its fitted transverse position.
        x = np.concatenate([np.asarray(v, float) for v in service["pv_x"]])
        assert x.size == np.concatenate([np.asarray(v, float) for v in service["pv_z"]]).size > 0
        assert np.isfinite(x).all()
        assert (np.abs(x) < 0.5).all()  # mm: within a few beam-spot sigma
    if "jets" in tasks:
        # Every jet gets its mass and the served mass-decorrelated cut at that mass.
        masses = np.concatenate([np.asarray(m, float) for m in service["jet_mass"]])
        cuts = np.concatenate([np.asarray(c, float) for c in service["jet_md_cut"]])
        assert masses.size == cuts.size > 0
        assert (masses > 0).all()
        assert ((cuts > 0) & (cuts < 1)).all()
    for column in service:
        for got, want in zip(service[column], local[column], strict=True):
            np.testing.assert_allclose(
                np.asarray(got, float), np.asarray(want, float), atol=1e-5, err_msg=column
            )
