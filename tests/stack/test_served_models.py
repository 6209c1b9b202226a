"""Every model and version of model_repository/, served by the real Triton, answers exactly like onnxruntime.

Each path a user can take is checked against in-process onnxruntime on the same ONNX file: Triton gRPC directly,
and the gateway over HTTP (JSON tensors and binary tensors) and over gRPC, with stock tritonclient.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import re
import time
import urllib.request
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from hepsonic_client import Client, find_primary_vertices
from hepsonic_client.physics.vertices import (
    PEAK_FINDER_PARAMETER,
    VERTEX_FIT_PARAMETER,
    PeakFinder,
    VertexFit,
    toy_tracks,
)
from hepsonic_models.export import VERSION_PARAMETERS_FILE
from hepsonic_triton import ModelEntry, TritonServer, load_repository

from ..conftest import MODEL_REPOSITORY, Stack

pytestmark = pytest.mark.integration

MODELS = (
    load_repository(MODEL_REPOSITORY) if MODEL_REPOSITORY.is_dir() and any(MODEL_REPOSITORY.iterdir()) else []
)
CASES = [(entry, version) for entry in MODELS for version in TritonServer.served_versions(entry)]
BATCH = 5
ATOL = 1e-5
#: calo_gan cells reach ~30 GeV, where float32 spacing alone is ~2e-6: allow one part in a million too.
RTOL = 1e-6


def _inputs(entry: ModelEntry, batch: int, seed: int) -> dict[str, np.ndarray[Any, Any]]:
    """Positive, plausible-scale random inputs (energies in GeV, masks of 0/1) for every input of the config."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for item in entry.config.input:
        shape = (batch, *item.dims)
        if "mask" in item.name:
            arrays[item.name] = (rng.random(shape) < 0.7).astype(np.float32)
        elif item.name in {"et", "energy"}:
            arrays[item.name] = rng.uniform(5.0, 90.0, shape).astype(np.float32)
        elif item.name == "eta":
            arrays[item.name] = rng.uniform(-2.4, 2.4, shape).astype(np.float32)
        else:
            arrays[item.name] = rng.normal(0.5, 0.5, shape).astype(np.float32)
    return arrays


def _reference(entry: ModelEntry, version: int, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    session = ort.InferenceSession(str(entry.onnx_path(version)), providers=["CPUExecutionProvider"])
    names = [o.name for o in entry.config.output]
    return dict(zip(names, session.run(names, inputs), strict=True))


def _grpc(url: str, entry: ModelEntry, version: int, inputs: dict[str, Any]) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(url)
    try:
        return _infer_grpc(client, entry, version, inputs)
    finally:
        client.close()


def _infer_grpc(client: Any, entry: ModelEntry, version: int, inputs: dict[str, Any]) -> dict[str, Any]:
    request = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        request.append(tensor)
    result = client.infer(entry.name, request, model_version=str(version))
    return {o.name: result.as_numpy(o.name) for o in entry.config.output}


def _http(
    url: str, entry: ModelEntry, version: int, inputs: dict[str, Any], *, binary: bool
) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(url)
    request = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        request.append(tensor)
    outputs = [httpclient.InferRequestedOutput(o.name, binary_data=binary) for o in entry.config.output]
    result = client.infer(entry.name, request, model_version=str(version), outputs=outputs)
    client.close()
    return {o.name: result.as_numpy(o.name) for o in entry.config.output}


def test_repository_holds_every_specified_model() -> None:
    served = {(entry.name, v) for entry, v in CASES}
    expected = {
        ("ringer", 1),
        ("ringer", 2),
        ("particlenet_lite", 1),
        ("part_small", 1),
        ("pv_finder", 1),
        ("calo_gan", 1),
    }
    assert expected <= served, f"missing from model_repository/: {sorted(expected - served)}"


@pytest.mark.parametrize(("entry", "version"), CASES, ids=[f"{e.name}-v{v}" for e, v in CASES])
def test_every_path_matches_onnxruntime(stack: Stack, entry: ModelEntry, version: int) -> None:
    inputs = _inputs(entry, BATCH, seed=version)
    expected = _reference(entry, version, inputs)
    paths = {
        "triton-grpc": _grpc(stack.triton_grpc, entry, version, inputs),
        "gateway-http-json": _http(stack.gateway_http, entry, version, inputs, binary=False),
        "gateway-http-binary": _http(stack.gateway_http, entry, version, inputs, binary=True),
        "gateway-grpc": _grpc(stack.gateway_grpc, entry, version, inputs),
    }
    for path, outputs in paths.items():
        for name, reference in expected.items():
            assert outputs[name].shape == reference.shape, (path, name)
            np.testing.assert_allclose(
                outputs[name], reference, rtol=RTOL, atol=ATOL, err_msg=f"{path} {name}"
            )


def test_gateway_and_triton_give_identical_bytes(stack: Stack) -> None:
    """A stock client pointed at the gateway gets the same answer as pointed at Triton, bit for bit."""
    entry = next(e for e in MODELS if e.name == "ringer")
    inputs = _inputs(entry, 16, seed=7)
    direct = _grpc(stack.triton_grpc, entry, 2, inputs)
    via_gateway = _grpc(stack.gateway_grpc, entry, 2, inputs)
    for name in direct:
        assert direct[name].tobytes() == via_gateway[name].tobytes()


def _exec_and_request_counts(metrics_url: str, model: str) -> tuple[float, float]:
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()

    def total(metric: str) -> float:
        pattern = rf'^{metric}{{[^}}]*model="{model}"[^}}]*}} ([0-9.e+]+)$'
        return sum(float(v) for v in re.findall(pattern, text, flags=re.MULTILINE))

    return total("nv_inference_exec_count"), total("nv_inference_request_success")


def test_concurrent_requests_are_merged_by_the_dynamic_batcher(stack: Stack) -> None:
    entry = next(e for e in MODELS if e.name == "particlenet_lite")
    execs_before, requests_before = _exec_and_request_counts(stack.triton_metrics, entry.name)
    one_jet = _inputs(entry, 1, seed=3)
    n_requests = 256
    client = grpcclient.InferenceServerClient(stack.triton_grpc)
    tensors = []
    for name, array in one_jet.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        results = list(
            pool.map(lambda _: client.infer(entry.name, tensors).as_numpy("softmax"), range(n_requests))
        )
    client.close()
    assert all(np.array_equal(r, results[0]) for r in results)
    # Triton counts a request a moment after answering it (seen: 252 of 256 right after the last answer).
    deadline = time.monotonic() + 5.0
    while True:
        execs_after, requests_after = _exec_and_request_counts(stack.triton_metrics, entry.name)
        if requests_after - requests_before >= n_requests or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert requests_after - requests_before == n_requests
    executions = execs_after - execs_before
    assert executions < n_requests / 2, f"{n_requests} requests ran in {executions} executions: no batching"


def _merged(gateway_http: str, model: str) -> tuple[float, float]:
    """(client requests, upstream calls) the gateway counted for ``model`` (its coalescing histogram)."""
    with urllib.request.urlopen(f"http://{gateway_http}/metrics", timeout=5) as response:
        text = response.read().decode()

    def value(suffix: str) -> float:
        pattern = rf'^hepsonic_gateway_requests_per_upstream_call_{suffix}{{model="{model}"}} ([0-9.e+]+)$'
        found = re.search(pattern, text, flags=re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return value("sum"), value("count")


@pytest.mark.parametrize(("entry", "version"), CASES, ids=[f"{e.name}-v{v}" for e, v in CASES])
def test_concurrent_grpc_requests_through_the_gateway_each_get_their_own_rows(
    stack: Stack, entry: ModelEntry, version: int
) -> None:
    """The gateway merges concurrent gRPC requests of a dynamically batched model into one call to Triton and
    slices the answer back: every request, whatever its batch size, gets exactly its own rows of every output."""
    requests = [_inputs(entry, 1 + index % 4, seed=100 + index) for index in range(24)]
    # Whether requests overlap at the gateway depends on the machine's timing (a busy one may serialise the
    # client threads): up to three rounds, each checked in full, and at least one of them must merge.
    merged_in: list[float] = []
    for _round in range(3):
        before = _merged(stack.gateway_http, entry.name)
        client = grpcclient.InferenceServerClient(stack.gateway_grpc)  # one connection, shared by the threads
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(functools.partial(_infer_grpc, client, entry, version), requests))
        client.close()
        for index, (inputs, outputs) in enumerate(zip(requests, answers, strict=True)):
            for name, reference in _reference(entry, version, inputs).items():
                assert outputs[name].shape == reference.shape, (index, name)
                np.testing.assert_allclose(
                    outputs[name], reference, rtol=RTOL, atol=ATOL, err_msg=f"request {index} {name}"
                )
        after = _merged(stack.gateway_http, entry.name)
        if not entry.config.HasField("dynamic_batching"):
            return
        assert after[0] - before[0] == len(requests), "each request went upstream once"
        merged_in.append(after[1] - before[1])
        if merged_in[-1] < len(requests):
            return
    raise AssertionError(f"{len(requests)} concurrent requests in {merged_in} upstream calls: none merged")


@pytest.mark.parametrize("front", ["triton-grpc", "gateway-http", "gateway-grpc"])
def test_pv_finder_operating_point_is_served_with_the_model(stack: Stack, front: str) -> None:
    """The peak-finder cuts and the vertex fit chosen for pv_finder v1 at build time reach a client from the
    server that answered, and find_primary_vertices applies them by default."""
    published = json.loads((MODEL_REPOSITORY / "pv_finder" / "1" / VERSION_PARAMETERS_FILE).read_text())
    finder = PeakFinder.from_json(published[PEAK_FINDER_PARAMETER])
    fit = VertexFit.from_json(published[VERTEX_FIT_PARAMETER])
    url = {
        "triton-grpc": f"grpc://{stack.triton_grpc}",
        "gateway-http": f"http://{stack.gateway_http}",
        "gateway-grpc": f"grpc://{stack.gateway_grpc}",
    }[front]
    # Two crossings of three vertices near the beam spot's centre, 30 tracks each.
    rng = np.random.default_rng(3)
    tracks = [toy_tracks([80.0, 100.0, 130.0], [30, 30, 30], rng) for _ in range(2)]
    with Client(url) as client:
        assert (
            client.model_parameter("pv_finder", PEAK_FINDER_PARAMETER, 1) == published[PEAK_FINDER_PARAMETER]
        )
        assert client.model_parameter("pv_finder", "no_such_parameter", 1) is None
        found = find_primary_vertices(client, tracks)
    assert found.provenance.version == "1"
    for prob, event, z in zip(found.pv_prob, tracks, found.z, strict=True):
        np.testing.assert_array_equal(z, fit(event, finder(prob)).z)
    for z in found.z:
        np.testing.assert_allclose(z, [80.0, 100.0, 130.0], atol=0.5)
