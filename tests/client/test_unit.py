"""Unit tests of the client logic on MockTransport (no server)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hepsonic_client as hc
from hepsonic_client import (
    AsyncClient,
    Batcher,
    BatchingOptions,
    Client,
    MockRequest,
    MockTransport,
    ModelMetadata,
    RetryPolicy,
    TensorMetadata,
)
from hepsonic_client.physics import jets
from hepsonic_client.physics.vertices import PeakFinder, VertexFit, toy_tracks

META = ModelMetadata(
    name="double",
    versions=("1", "2"),
    inputs=(TensorMetadata(name="x", datatype="FP32", shape=(-1, 3)),),
    outputs=(TensorMetadata(name="y", datatype="FP32", shape=(-1, 3)),),
)
FAST = RetryPolicy(attempts_per_server=3, backoff_base=0.001, backoff_max=0.002, circuit_open=60)


def double(request: MockRequest) -> dict[str, np.ndarray]:
    return {"y": 2 * request.inputs["x"]}


def make_client(handler=double, **kwargs) -> Client:
    return Client(transport=MockTransport(handler, models=[META], sha256="abc"), retry=FAST, **kwargs)


def test_infer_returns_outputs_and_provenance() -> None:
    client = make_client()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = client.infer("double", {"x": x}, version=2)
    np.testing.assert_array_equal(result["y"], 2 * x)
    assert dict(result).keys() == {"y"}
    assert result.provenance == hc.Provenance(model="double", version="2", sha256="abc", server="mock://")


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ({"x": np.zeros((2, 3), np.float64)}, "expected dtype float32"),
        ({"x": np.zeros((2, 4), np.float32)}, "expected shape ('batch', 3)"),
        ({"z": np.zeros((2, 3), np.float32)}, "missing ['x'], unknown ['z']"),
    ],
)
def test_bad_input_names_model_input_expected_and_got(inputs, fragment) -> None:
    transport = MockTransport(double, models=[META])
    client = Client(transport=transport)
    with pytest.raises(hc.InputError, match="model 'double'") as info:
        client.infer("double", inputs)
    assert fragment in str(info.value)
    assert transport.requests == []  # nothing was sent


def test_batch_size_disagreement_is_an_input_error() -> None:
    meta = ModelMetadata(
        name="two",
        versions=("1",),
        inputs=(
            TensorMetadata(name="a", datatype="FP32", shape=(-1, 1)),
            TensorMetadata(name="b", datatype="FP32", shape=(-1, 1)),
        ),
        outputs=(),
    )
    client = Client(transport=MockTransport(lambda r: {}, models=[meta]))
    with pytest.raises(hc.InputError, match="disagree on the batch size"):
        client.infer("two", {"a": np.zeros((2, 1), np.float32), "b": np.zeros((3, 1), np.float32)})


def test_overload_is_retried_after_the_servers_hint() -> None:
    calls: list[float] = []

    def handler(request: MockRequest) -> dict[str, np.ndarray]:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise hc.OverloadedError("busy", retry_after_s=0.05)
        return double(request)

    client = make_client(handler)
    client.infer("double", {"x": np.ones((1, 3), np.float32)})
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.05
    assert calls[2] - calls[1] >= 0.05
    assert client.stats()["retries"] == 2


def test_timeouts_and_refusals_are_not_retried() -> None:
    for error in (hc.RequestTimeoutError("slow"), hc.InferenceError("bad")):
        transport = MockTransport(lambda r, e=error: (_ for _ in ()).throw(e), models=[META])
        client = Client(transport=transport, retry=FAST)
        with pytest.raises(type(error)):
            client.infer("double", {"x": np.ones((1, 3), np.float32)})
        assert len(transport.requests) == 1


def test_failover_to_the_next_server_and_circuit_breaker() -> None:
    def down(request: MockRequest) -> dict[str, np.ndarray]:
        raise hc.ConnectError("refused")

    first = MockTransport(down, models=[META], address="mock://first")
    second = MockTransport(double, models=[META], address="mock://second")
    client = Client(transport=[first, second], retry=FAST)
    x = np.ones((1, 3), np.float32)
    assert client.infer("double", {"x": x}).provenance.server == "mock://second"
    assert len(first.requests) == FAST.attempts_per_server
    assert client.stats()["failovers"] == 1
    client.infer("double", {"x": x})  # the first server's circuit is open: not tried again
    assert len(first.requests) == FAST.attempts_per_server


def test_no_server_available_names_every_failure() -> None:
    client = make_client(lambda r: (_ for _ in ()).throw(hc.UnavailableError("gone")))
    with pytest.raises(hc.NoServerAvailableError, match="gone"):
        client.infer("double", {"x": np.ones((1, 3), np.float32)})


def test_local_onnxruntime_fallback_is_used_logged_and_counted(tmp_path: Path, caplog) -> None:
    from .tiny_repository import write_tiny_repository  # noqa: PLC0415

    repository = write_tiny_repository(tmp_path)
    down = MockTransport(lambda r: (_ for _ in ()).throw(hc.ConnectError("refused")))
    client = Client(
        transport=down,
        retry=FAST,
        fallback=hc.FallbackOptions(repository=repository, embedded_triton=False),
        validate_inputs=False,
    )
    x = np.ones((2, 16), np.float32)
    result = client.infer("tiny", {"x": x}, version=1)
    assert result.provenance.via == "onnxruntime"
    assert result.provenance.sha256 == hc.OnnxRuntimeTransport(repository).config_parameter(
        "tiny", "sha256/1", timeout=None
    )
    assert client.stats()["fallback_onnxruntime"] == 1
    assert any("FALLBACK" in record.message for record in caplog.records)


def test_batcher_never_mixes_results_between_32_threads() -> None:
    def tagged(request: MockRequest) -> dict[str, np.ndarray]:
        time.sleep(0.002)  # let batches grow
        return {"y": request.inputs["x"] * 10 + 1}

    client = make_client(tagged)
    results: dict[int, np.ndarray] = {}
    options = BatchingOptions(max_batch_size=16, max_latency=0.005, max_inflight=2)
    with Batcher(client, "double", options=options) as batcher:

        def caller(k: int) -> None:
            for j in range(10):
                ident = k * 100 + j
                x = np.full(3, ident, np.float32)
                results[ident] = batcher.infer({"x": x}, timeout=10)["y"]

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = batcher.stats()
    assert len(results) == 320
    for ident, y in results.items():
        np.testing.assert_array_equal(y, np.full(3, ident * 10 + 1, np.float32))
    assert stats["objects"] == 320
    assert stats["requests"] < 320 / 2  # really merged


def test_batcher_buckets_pad_to_the_edge_and_keep_sizes_apart() -> None:
    seen_shapes: list[tuple[int, ...]] = []

    def handler(request: MockRequest) -> dict[str, np.ndarray]:
        seen_shapes.append(request.inputs["hits"].shape)
        return {"n": request.inputs["hits"].sum(axis=1)}

    client = Client(transport=MockTransport(handler), retry=FAST)
    options = BatchingOptions(max_batch_size=8, max_latency=0.01, bucket_edges=(4, 8))
    with Batcher(client, "ragged", options=options) as batcher:
        futures = {n: batcher.submit({"hits": np.ones(n, np.float32)}) for n in (1, 3, 5, 7)}
        sums = {n: float(f.result(timeout=10)["n"]) for n, f in futures.items()}
        with pytest.raises(hc.InputError, match="exceeds the largest bucket edge 8"):
            batcher.submit({"hits": np.ones(9, np.float32)})
    assert sums == {1: 1.0, 3: 3.0, 5: 5.0, 7: 7.0}
    assert sorted(seen_shapes) == [(2, 4), (2, 8)]


def test_batcher_propagates_errors_to_every_caller() -> None:
    client = make_client(lambda r: (_ for _ in ()).throw(hc.InferenceError("model crashed")))
    with Batcher(client, "double", options=BatchingOptions(max_latency=0.001)) as batcher:
        futures = [batcher.submit({"x": np.ones(3, np.float32)}) for _ in range(5)]
        for future in futures:
            with pytest.raises(hc.InferenceError, match="model crashed"):
                future.result(timeout=10)


def test_async_client_has_the_same_methods() -> None:
    sync_methods = {"infer", "infer_many", "is_ready", "models", "metadata"}
    assert sync_methods <= set(dir(Client))
    assert sync_methods <= set(dir(AsyncClient))

    async def main() -> None:
        transport = MockTransport(double, models=[META])
        async with AsyncClient(transport=transport) as client:
            assert await client.is_ready()
            assert [m.version for m in await client.models()] == ["1", "2"]
            batches = [{"x": np.full((2, 3), i, np.float32)} for i in range(4)]
            results = await client.infer_many("double", batches)
            for i, result in enumerate(results):
                np.testing.assert_array_equal(result["y"], np.full((2, 3), 2 * i))

    asyncio.run(main())


def test_value_objects_are_keyword_only_and_validated() -> None:
    with pytest.raises(TypeError):
        hc.Timeouts(1.0)  # type: ignore[misc]
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        BatchingOptions(bucket_edges=(8, 4))
    with pytest.raises(ValueError, match="attempts_per_server"):
        RetryPolicy(attempts_per_server=0)
    assert 0 <= RetryPolicy(backoff_base=0.1, backoff_max=0.3).backoff(5, 0.999) <= 0.3


def test_write_provenance_into_metadata_and_file(tmp_path: Path) -> None:
    first = hc.Provenance(model="ringer", version="2", sha256="aa", server="s")
    metadata: dict[str, str] = {}
    record = hc.write_provenance(metadata, [first, first])
    assert json.loads(metadata["hepsonic_provenance"]) == [first.as_dict()]
    assert record["hepsonic_provenance"] == [first.as_dict()]
    hc.write_provenance(tmp_path / "p.json", {"a": first})
    assert json.loads((tmp_path / "p.json").read_text())["hepsonic_provenance"][0]["sha256"] == "aa"


def test_grpc_and_http_errors_are_converted_in_one_place() -> None:
    import grpc  # noqa: PLC0415

    from hepsonic_client._convert import HttpStatusError, converted_errors  # noqa: PLC0415

    class FakeRpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        def __init__(self, code, details, trailing=()):
            self._code, self._details, self._trailing = code, details, trailing

        def code(self):
            return self._code

        def details(self):
            return self._details

        def trailing_metadata(self):
            return self._trailing

        def initial_metadata(self): ...
        def is_active(self): ...
        def time_remaining(self): ...
        def cancel(self): ...
        def add_callback(self, callback): ...

    cases = [
        (
            FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "full", (("retry-after-ms", "250"),)),
            hc.OverloadedError,
        ),
        (FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"), hc.ConnectError),
        (FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "late"), hc.RequestTimeoutError),
        (FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "unknown model 'x'"), hc.ModelNotFoundError),
        (HttpStatusError(429, b'{"error": "busy"}', {"retry-after": "2"}), hc.OverloadedError),
        (HttpStatusError(503, b"", {}), hc.UnavailableError),
        (HttpStatusError(400, b'{"error": "bad shape"}', {}), hc.InferenceError),
        (ConnectionRefusedError("refused"), hc.ConnectError),
    ]
    for raw, expected in cases:
        with pytest.raises(expected) as info, converted_errors(server="srv", model="m"):
            raise raw
        assert info.value.__cause__ is raw
    with pytest.raises(hc.OverloadedError) as info, converted_errors(server="srv"):
        raise cases[0][0]
    assert info.value.retry_after_s == pytest.approx(0.25)
    with pytest.raises(hc.OverloadedError) as info, converted_errors(server="srv"):
        raise cases[4][0]
    assert info.value.retry_after_s == pytest.approx(2.0)


def test_sweeper_removes_only_regions_of_dead_processes(tmp_path: Path) -> None:
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"hepsonic_client_{dead_pid}_abc123_0"
    alive = tmp_path / f"hepsonic_client_{os.getpid()}_abc123_0"
    other = tmp_path / f"hepsonic_{dead_pid}_not_ours"
    for path in (stale, alive, other):
        path.write_bytes(b"x")
    assert hc.sweep_stale_regions(tmp_path) == [stale.name]
    assert not stale.exists()
    assert alive.exists()
    assert other.exists()


def test_helpers_build_inputs_and_return_typed_results() -> None:
    def handler(request: MockRequest) -> dict[str, np.ndarray]:
        n = next(iter(request.inputs.values())).shape[0]
        if request.model == "calo_gan":
            return {
                "layer_0": np.ones((n, 3, 96)),
                "layer_1": np.ones((n, 12, 12)),
                "layer_2": request.inputs["z"][:, :60].reshape(n, 10, 6),
            }
        if request.model == "particlenet_lite":
            assert set(request.inputs) == {"pf_points", "pf_features", "pf_mask"}
            return {"softmax": np.tile([[0.9, 0.1]], (n, 1))}
        return {"discriminant": np.full((n, 1), 0.5)}

    client = Client(transport=MockTransport(handler))
    a = hc.simulate_showers(client, [10.0, 50.0], seed=7)
    b = hc.simulate_showers(client, [10.0, 50.0], seed=7)
    np.testing.assert_array_equal(a.layer_2, b.layer_2)  # reproducible latents
    assert not np.array_equal(a.layer_2, hc.simulate_showers(client, [10.0, 50.0], seed=8).layer_2)
    constituents = np.abs(np.random.default_rng(1).normal(size=(3, 20, 4))) + 1.0
    tags = hc.tag_jets(client, constituents)
    np.testing.assert_allclose(tags.p_top, 0.9)
    np.testing.assert_allclose(tags.jet_mass, jets.jet_mass(constituents.sum(axis=1)))
    given = np.tile([[60.0, 0.0, 0.0, 100.0]], (3, 1))  # mass 80
    np.testing.assert_allclose(hc.tag_jets(client, constituents, jet_p4=given).jet_mass, 80.0)
    scores = hc.score_electrons(client, np.ones((4, 100)), np.full(4, 20.0), np.zeros(4))
    assert scores.discriminant.shape == (4,)
    with pytest.raises(ValueError, match=r"ringer: input 'rings' must be \(n, 100\)"):
        hc.score_electrons(client, np.ones((4, 99)), np.full(4, 20.0), np.zeros(4))


def test_local_transport_reads_published_parameters(tmp_path: Path) -> None:
    from .tiny_repository import write_tiny_repository  # noqa: PLC0415

    repository = write_tiny_repository(tmp_path)
    (repository / "tiny" / "1" / "parameters.json").write_text('{"cuts": "{\\"threshold\\": 0.7}"}')
    client = Client(transport=hc.OnnxRuntimeTransport(repository))
    assert client.model_parameter("tiny", "cuts", 1) == '{"threshold": 0.7}'
    assert client.model_parameter("tiny", "cuts", 2) is None
    assert client.model_parameter("tiny", "other", 1) is None


def test_vertices_use_the_published_cuts_or_warn(caplog) -> None:
    def bumps(request: MockRequest) -> dict[str, np.ndarray]:
        z = np.linspace(-100, 300, 4000, endpoint=False) + 0.05
        prob = 0.6 * np.exp(-0.5 * ((z - 50.0) / 0.2) ** 2) + 0.45 * np.exp(-0.5 * ((z - 120.0) / 0.2) ** 2)
        return {"pv_prob": np.tile(prob.astype(np.float32), (len(request.inputs["kde"]), 1))}

    tracks = [toy_tracks([50.0, 120.0], [3, 3], np.random.default_rng(0))]

    class Publishing(MockTransport):
        def config_parameter(self, model: str, key: str, *, timeout: float | None) -> str | None:
            return '{"threshold": 0.4}' if key == "peak_finder/1" else None

    published = Client(transport=Publishing(bumps, sha256="abc"), retry=FAST, validate_inputs=False)
    found = hc.find_primary_vertices(published, tracks)
    np.testing.assert_allclose(found.z[0], [50.0, 120.0], atol=0.05)  # 0.4 keeps the 0.45-high bump

    silent = Client(transport=MockTransport(bumps, sha256="abc"), retry=FAST, validate_inputs=False)
    hc._helpers._WARNED.clear()  # another test may have warned for this version already
    for _ in range(3):
        found = hc.find_primary_vertices(silent, tracks)
        np.testing.assert_allclose(found.z[0], [50.0], atol=0.05)  # the fallback's 0.5 does not
    # Warned once, not once per call (a reconstruction job asks for every event).
    assert sum("publishes no 'peak_finder'" in record.message for record in caplog.records) == 1
    explicit = hc.find_primary_vertices(published, tracks, peak_finder=PeakFinder(threshold=0.7))
    assert explicit.z[0].size == 0


def test_jets_use_the_published_mass_decorrelated_cut_or_say_what_is_missing() -> None:
    cut = jets.MassDecorrelatedCut(qcd_efficiency=0.01, mass_gev=(0.0, 300.0), logit_threshold=(0.0, 4.0))
    loose = jets.MassDecorrelatedCut(qcd_efficiency=0.05, mass_gev=(0.0,), logit_threshold=(-1.0,))

    def tagger(request: MockRequest) -> dict[str, np.ndarray]:
        return {"softmax": np.tile([[0.9, 0.1]], (len(request.inputs["pf_mask"]), 1))}

    class Publishing(MockTransport):
        def config_parameter(self, model: str, key: str, *, timeout: float | None) -> str | None:
            published = jets.mass_decorrelated_cuts_to_json([cut, loose])
            return published if key == f"{jets.MASS_DECORRELATED_PARAMETER}/1" else None

    constituents = np.zeros((2, 3, 4))
    constituents[0, :, 0] = constituents[0, :, 3] = [20.0, 30.0, 50.0]  # collinear, massless: mass 0, where
    # the cut is P(top) >= 0.5
    constituents[1, 0] = [100.0, 0.0, 0.0, np.hypot(100.0, 250.0)]  # mass 250: P(top) >= 0.966
    client = Client(transport=Publishing(tagger, sha256="abc"), retry=FAST, validate_inputs=False)
    tags = hc.tag_jets(client, constituents)
    served = hc.served_mass_decorrelated_cut(client, tags.provenance)
    assert served.qcd_efficiency == 0.01
    assert served.passes(tags.p_top, tags.jet_mass).tolist() == [True, False]
    assert (
        hc.served_mass_decorrelated_cut(client, tags.provenance, 0.05).passes(tags.p_top, tags.jet_mass).all()
    )
    with pytest.raises(
        LookupError, match=r"publishes mass-decorrelated cuts for QCD efficiencies 0\.01, 0\.05, not 0\.2"
    ):
        hc.served_mass_decorrelated_cut(client, tags.provenance, 0.2)
    silent = Client(transport=MockTransport(tagger, sha256="abc"), retry=FAST, validate_inputs=False)
    with pytest.raises(
        LookupError, match="particlenet_lite version '1' publishes no 'mass_decorrelated_cuts'"
    ):
        hc.served_mass_decorrelated_cut(silent, hc.tag_jets(silent, constituents).provenance)


def test_vertices_are_fitted_to_the_tracks_when_the_version_publishes_a_fit() -> None:
    rng = np.random.default_rng(4)
    tracks = [toy_tracks([50.0, 120.0], [40, 40], rng)]

    def offset_bumps(request: MockRequest) -> dict[str, np.ndarray]:
        # The network's peaks 0.3 mm off the vertices: the fit to the tracks brings them back.
        z = np.linspace(-100, 300, 4000, endpoint=False) + 0.05
        prob = np.exp(-0.5 * ((z - 50.3) / 0.2) ** 2) + np.exp(-0.5 * ((z - 119.7) / 0.2) ** 2)
        return {"pv_prob": np.tile(prob.astype(np.float32), (len(request.inputs["kde"]), 1))}

    published = {"peak_finder/1": '{"threshold": 0.5}', "vertex_fit/1": VertexFit(chi2_cut=9.0).to_json()}

    class Publishing(MockTransport):
        def config_parameter(self, model: str, key: str, *, timeout: float | None) -> str | None:
            return published.get(key)

    client = Client(transport=Publishing(offset_bumps, sha256="abc"), retry=FAST, validate_inputs=False)
    assert hc.served_vertex_fit(client, hc.find_primary_vertices(client, tracks).provenance) == VertexFit(
        chi2_cut=9.0
    )
    found = hc.find_primary_vertices(client, tracks)
    np.testing.assert_allclose(found.z[0], [50.0, 120.0], atol=0.1)
    assert found.fitted is not None
    np.testing.assert_allclose(found.fitted[0].n_tracks, [40, 40], atol=3)
    peaks = hc.find_primary_vertices(client, tracks, vertex_fit=False)  # the peaks as they are
    np.testing.assert_allclose(peaks.z[0], [50.3, 119.7], atol=0.05)
    assert peaks.fitted is None
    del published["vertex_fit/1"]  # a version published before fits: its peaks are its answer
    client = Client(transport=Publishing(offset_bumps, sha256="abc"), retry=FAST, validate_inputs=False)
    np.testing.assert_allclose(hc.find_primary_vertices(client, tracks).z[0], [50.3, 119.7], atol=0.05)
    with pytest.raises(ValueError, match="at least one event"):
        hc.find_primary_vertices(client, [])


def test_a_process_pool_starts_again_in_a_forked_child() -> None:
    from hepsonic_client._pool import ProcessPool  # noqa: PLC0415

    pool = ProcessPool("test-pool")
    parent = pool.get(2)
    assert parent.submit(lambda: 1).result(timeout=5) == 1
    read_end, write_end = os.pipe()
    child_pid = os.fork()
    if child_pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            mine = pool.get(2)
            ok = mine is not parent and mine.submit(lambda: 2).result(timeout=5) == 2
            pool.shutdown()  # the child's own pool
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    reported = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(child_pid, 0)
    assert reported == b"1"  # the inherited pool would never have run the child's work
    assert pool.get(2) is parent  # and the child's shutdown left the parent's pool alone
    assert parent.submit(lambda: 3).result(timeout=5) == 3
    pool.shutdown()
