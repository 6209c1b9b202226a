"""The gateway in front of two real Triton replicas: balancing, versions and splits, provenance, auth,
validation, deadlines, request ids, metrics and logs, over both protocols with stock clients."""

from __future__ import annotations

import collections
import concurrent.futures
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from .conftest import KEYS, Cluster, Gateway
from .helpers import bearer, infer_grpc, infer_http, toy_body, version_of_answer

pytestmark = pytest.mark.integration


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10.0) as c:
        yield c


def _parallel(fn: Callable[[int], Any], n: int, workers: int = 8) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, range(n)))


def test_load_spreads_across_both_replicas(gateway: Gateway, cluster: Cluster) -> None:
    def one(_: int) -> str:
        with httpx.Client(base_url=gateway.url) as c:
            response = infer_http(c, version="1")
            assert response.status_code == 200, response.text
            return response.headers["x-hepsonic-server"]

    counts = collections.Counter(_parallel(one, 48))
    replicas = {t.grpc_url for t in cluster.tritons}
    assert set(counts) == replicas, counts
    assert min(counts.values()) >= 10, f"one replica got almost nothing: {counts}"


def test_explicit_versions_and_aliases(client: httpx.Client, cluster: Cluster) -> None:
    for requested, expected in (("1", 1), ("2", 2), ("stable", 1), ("canary", 2), ("latest", 2)):
        response = infer_http(client, version=requested)
        assert response.status_code == 200, response.text
        assert version_of_answer(response) == expected, requested
        assert response.headers["x-hepsonic-model-version"] == str(expected)
        assert response.headers["x-hepsonic-model-sha256"] == cluster.digests[("toy", expected)]
        assert response.headers["x-hepsonic-server"] in {t.grpc_url for t in cluster.tritons}


def test_grpc_provenance_and_request_id(gateway: Gateway, cluster: Cluster) -> None:
    result = infer_grpc(gateway.grpc, version="canary")
    response = result.get_response()
    assert response.model_version == "2"
    np.testing.assert_array_equal(result.as_numpy("y"), [[3, 5, 7, 9]])
    assert response.parameters["hepsonic_model_sha256"].string_param == cluster.digests[("toy", 2)]
    assert response.parameters["hepsonic_server"].string_param in {t.grpc_url for t in cluster.tritons}
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", response.id), (
        "the gateway sets ModelInferRequest.id when empty"
    )
    again = infer_grpc(gateway.grpc, version="canary").get_response().id
    assert again != response.id, "request ids are unique"


def test_weighted_split_within_statistical_bounds(client: httpx.Client) -> None:
    n = 300
    versions = collections.Counter(version_of_answer(infer_http(client)) for _ in range(n))
    # 30 % canary: binomial sd = sqrt(n p (1-p)) ~ 7.9; accept 4 sd.
    assert abs(versions[2] - 0.3 * n) < 4 * (n * 0.3 * 0.7) ** 0.5, versions
    assert set(versions) == {1, 2}


def test_route_keys_are_sticky_and_split_by_weight(client: httpx.Client, gateway: Gateway) -> None:
    seen: dict[str, int] = {}
    for job in range(120):
        key = f"job-{job}"
        answers = {
            version_of_answer(infer_http(client, headers={"x-hepsonic-route-key": key})) for _ in range(3)
        }
        assert len(answers) == 1, f"route key {key} saw versions {answers}"
        seen[key] = answers.pop()
    canary = sum(v == 2 for v in seen.values())
    assert abs(canary - 36) < 4 * (120 * 0.3 * 0.7) ** 0.5, canary
    # The same key sticks over gRPC too (metadata).
    key = next(k for k, v in seen.items() if v == 2)
    result = infer_grpc(gateway.grpc, headers={"x-hepsonic-route-key": key})
    assert result.get_response().model_version == "2"


@pytest.mark.parametrize(
    ("key", "model", "status"),
    [
        (None, "toy", 401),
        ("wrong", "toy", 401),
        ("reader", "toyroll", 403),
        ("pinned", "toy", 200),
        ("admin", "toyroll", 200),
    ],
)
def test_auth_matrix_http(client: httpx.Client, key: str | None, model: str, status: int) -> None:
    headers = {"authorization": "Bearer not-a-key"} if key == "wrong" else bearer(key)
    response = client.post(f"/v2/models/{model}/infer", json=toy_body(), headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_auth_matrix_admin_and_open_endpoints(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/admin/routes").status_code == 401
    assert client.get("/admin/routes", headers=bearer("reader")).status_code == 403
    assert client.post("/admin/reload", headers=bearer("reader")).status_code == 403
    routes = client.get("/admin/routes", headers=bearer("admin"))
    assert routes.status_code == 200
    assert routes.json()["models"]["toy"]["aliases"] == {"stable": 1, "canary": 2}
    assert routes.json()["models"]["toy"]["limits"]["coalesce"] is True, "merging is on unless switched off"
    # A key sees only its models in the index.
    index = client.post("/v2/repository/index", headers=bearer("reader")).json()
    assert {m["name"] for m in index} == {"toy"}


def test_pinned_key_gets_stable_and_nothing_else(client: httpx.Client) -> None:
    for _ in range(10):  # the 70/30 split does not apply: the key is pinned to `stable`
        assert version_of_answer(infer_http(client, key="pinned")) == 1
    response = infer_http(client, version="canary", key="pinned")
    assert response.status_code == 403
    assert "'pinned'" in response.json()["error"]
    assert "canary" in response.json()["error"]


@pytest.mark.parametrize(
    ("key", "model", "code"),
    [
        (None, "toy", grpc.StatusCode.UNAUTHENTICATED),
        ("wrong", "toy", grpc.StatusCode.UNAUTHENTICATED),
        ("reader", "toyroll", grpc.StatusCode.PERMISSION_DENIED),
        ("admin", "toyroll", grpc.StatusCode.OK),
    ],
)
def test_auth_matrix_grpc(gateway: Gateway, key: str | None, model: str, code: grpc.StatusCode) -> None:
    metadata = [("authorization", "Bearer not-a-key")] if key == "wrong" else list(bearer(key).items())
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    del tensor
    request.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        if code == grpc.StatusCode.OK:
            assert stub.ModelInfer(request, metadata=metadata).model_version == "1"
        else:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, metadata=metadata)
            assert caught.value.code() == code
        # Health stays open on gRPC as well.
        assert stub.ServerLive(service_pb2.ServerLiveRequest()).live


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"inputs": [{"name": "x", "shape": [2, 5], "datatype": "FP32", "data": [0] * 10}]},
            ["'toy'", "'x'", "[-1, 4]", "[2, 5]"],
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [0] * 4}]},
            ["'toy'", "'x'", "FP32", "INT64"],
        ),
        (
            {"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]},
            ["'toy'", "'z'", "'x'"],
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 3}]},
            ["'toy'", "'x'", "4 values", "got 3"],
        ),
        (
            {"inputs": [{"name": "x", "shape": [65, 4], "datatype": "FP32", "data": [0] * 260}]},
            ["'toy'", "'x'", "65", "64"],
        ),
    ],
    ids=["shape", "dtype", "unknown-input", "count", "batch"],
)
def test_validation_names_model_input_expected_and_got(
    client: httpx.Client, body: dict[str, object], words: list[str]
) -> None:
    response = infer_http(client, version="1", body=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, (word, message)


def test_validation_of_binary_requests_and_unknown_models(client: httpx.Client) -> None:
    header = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":12}}]}'
    response = client.post(
        "/v2/models/toy/versions/1/infer",
        content=header + bytes(12),
        headers={"inference-header-content-length": str(len(header)), **bearer("reader")},
    )
    assert response.status_code == 400
    assert "needs 16 bytes, got 12" in response.json()["error"]
    response = client.post(
        "/v2/models/toy/versions/1/infer",
        content=header + bytes(16),
        headers={"inference-header-content-length": "-3", **bearer("reader")},
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length must be a byte count" in response.json()["error"]
    assert "got '-3'" in response.json()["error"]
    response = infer_http(client, "nosuchmodel", key="admin")
    assert response.status_code == 404
    assert "nosuchmodel" in response.json()["error"]
    response = infer_http(client, "toyy", key="admin")
    assert response.status_code == 404
    assert "did you mean 'toy'?" in response.json()["error"]
    response = infer_http(client, version="7")
    assert response.status_code == 404
    assert "version 7" in response.json()["error"]
    assert "served versions: 1, 2" in response.json()["error"]


def test_binary_requests_pass_through(gateway: Gateway) -> None:
    import tritonclient.http as httpclient  # noqa: PLC0415

    client = httpclient.InferenceServerClient(gateway.http)
    tensor = httpclient.InferInput("x", [3, 4], "FP32")
    tensor.set_data_from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4), binary_data=True)
    out = httpclient.InferRequestedOutput("y", binary_data=True)
    result = client.infer("toy", [tensor], model_version="2", outputs=[out], headers=bearer("reader"))
    client.close()
    np.testing.assert_array_equal(result.as_numpy("y"), np.arange(12, dtype=np.float32).reshape(3, 4) * 2 + 1)


def test_grpc_validation_errors(gateway: Gateway) -> None:
    request = service_pb2.ModelInferRequest(model_name="toy", model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(bytes(8))
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, metadata=list(bearer("reader").items()))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'toy'" in caught.value.details()
        assert "needs 16 bytes, got 8" in caught.value.details()
        request.model_version = "9"
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, metadata=list(bearer("reader").items()))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_deadline_is_honoured(client: httpx.Client, gateway: Gateway) -> None:
    response = infer_http(client, version="1", headers={"x-hepsonic-timeout": "0"})
    assert response.status_code == 504
    response = infer_http(client, version="1", headers={"x-hepsonic-timeout": "soon"})
    assert response.status_code == 400
    assert infer_http(client, version="1", headers={"x-hepsonic-timeout": "5"}).status_code == 200
    # gRPC: a generous client deadline still works (it is propagated to Triton, capped by the model's).
    client_grpc_result = infer_grpc(gateway.grpc, version="1")
    assert client_grpc_result.get_response().model_version == "1"


def test_request_id_is_echoed(client: httpx.Client) -> None:
    response = infer_http(client, version="1", headers={"x-request-id": "job-42-event-7"})
    assert response.headers["x-request-id"] == "job-42-event-7"


def test_metrics_are_fed(client: httpx.Client) -> None:
    infer_http(client, version="1")
    infer_http(client, version="1", key=None)
    text = client.get("/metrics").text
    # prometheus_client sorts the labels alphabetically in its exposition.
    assert re.search(
        r'^hepsonic_gateway_request_duration_seconds_count\{model="toy",protocol="http",status="200",version="1"\} '
        r"[1-9]",
        text,
        flags=re.MULTILINE,
    )
    assert (
        'hepsonic_gateway_request_duration_seconds_count{model="",protocol="http",status="401",version=""}'
        in text
    )
    for metric in (
        "hepsonic_gateway_upstream_duration_seconds_bucket",
        "hepsonic_gateway_request_batch_size_bucket",
        "hepsonic_gateway_inflight_requests",
        'hepsonic_gateway_rejected_requests_total{model="",reason="unauthenticated"}',
        "hepsonic_gateway_replica_healthy",
    ):
        assert metric in text, metric


def test_secrets_never_logged(client: httpx.Client, gateway: Gateway) -> None:
    infer_http(client, version="1", key="admin")
    client.post("/v2/models/toy/infer", json=toy_body(), headers={"authorization": "Bearer wrong-secret-123"})
    with pytest.raises(InferenceServerException):
        infer_grpc(gateway.grpc, headers={"authorization": "Bearer wrong-secret-456"}, key=None)
    infer_grpc(gateway.grpc, key="reader")
    log = gateway.log_text()
    assert '"message": "request served"' in log  # DEBUG logging is on: requests are logged...
    assert '"key": "admin"' in log  # ... by key *name*
    for secret in (*KEYS.values(), "wrong-secret-123", "wrong-secret-456"):
        assert secret not in log


def test_openapi_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v2/models/{model}/versions/{version}/infer" in spec["paths"]
    assert "/admin/models/{model}/rollout" in spec["paths"]
    assert client.get("/docs").status_code == 200


def _stream(
    url: str, requests: list[tuple[str, str, str, np.ndarray[Any, Any]]], key: str | None
) -> list[Any]:
    """Send (request id, model, version, x) over one ModelStreamInfer stream with the stock client; return
    what the callback received: (result, error) pairs, in arrival order."""
    received: list[tuple[Any, Any]] = []
    done = threading.Event()

    def callback(result: Any, error: Any) -> None:
        received.append((result, error))
        if len(received) >= len(requests) or (
            error is not None and result is None and "stream" in str(error)
        ):
            done.set()

    client = grpcclient.InferenceServerClient(url)
    try:
        client.start_stream(callback, headers=bearer(key))
        for request_id, model, version, x in requests:
            tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            try:
                client.async_stream_infer(model, [tensor], model_version=version, request_id=request_id)
            except InferenceServerException as exc:  # the stream was already refused (the key)
                received.append((None, exc))
                done.set()
                break
        done.wait(20.0)
        client.stop_stream()
    finally:
        client.close()
    return received


def test_stream_infer_serves_every_request_and_survives_refused_ones(gateway: Gateway) -> None:
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    requests = [(f"ok-{i}", "toy", "canary" if i % 2 else "1", x) for i in range(12)]
    requests.insert(3, ("unknown-model", "nope", "", x))
    requests.insert(7, ("bad-shape", "toy", "1", np.ones((1, 5), dtype=np.float32)))
    received = _stream(
        gateway.grpc, requests, "admin"
    )  # admin: may ask for any model, so 'nope' is NOT_FOUND
    assert len(received) == len(requests), received
    answers = {result.get_response().id: result for result, error in received if error is None}
    errors = [str(error) for result, error in received if error is not None]
    assert set(answers) == {f"ok-{i}" for i in range(12)}, (
        "every valid request is answered, also after errors"
    )
    for i in range(12):
        response = answers[f"ok-{i}"].get_response()
        version = 2 if i % 2 else 1
        assert response.model_version == str(version)
        np.testing.assert_array_equal(answers[f"ok-{i}"].as_numpy("y"), x * version + 1)
        assert response.parameters["hepsonic_model_sha256"].string_param, "provenance on streamed answers too"
    assert len(errors) == 2
    assert any("nope" in e and "NOT_FOUND" in e for e in errors), errors
    assert any("'x'" in e and "[1, 5]" in e and "INVALID_ARGUMENT" in e for e in errors), errors


def test_stream_infer_needs_a_key(gateway: Gateway) -> None:
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    received = _stream(gateway.grpc, [("r", "toy", "1", x)], None)
    assert received, "the refusal reaches the stream callback"
    result, error = received[0]
    assert result is None
    assert "UNAUTHENTICATED" in str(error) or "API key" in str(error), error


def test_stream_error_answers_carry_the_request_id(gateway: Gateway) -> None:
    good = service_pb2.ModelInferRequest(model_name="toy", model_version="1", id="good-1")
    tensor = good.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    good.raw_input_contents.append(np.array([[1, 2, 3, 4]], dtype=np.float32).tobytes())
    bad = service_pb2.ModelInferRequest(model_name="toy", model_version="7", id="bad-1")
    bad.inputs.add().CopyFrom(tensor)
    bad.raw_input_contents.append(good.raw_input_contents[0])
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        answers = list(
            stub.ModelStreamInfer(iter([bad, good]), metadata=tuple(bearer("reader").items()), timeout=20)
        )
    by_id = {a.infer_response.id: a for a in answers}
    assert set(by_id) == {"good-1", "bad-1"}
    assert not by_id["good-1"].error_message
    assert by_id["good-1"].infer_response.model_version == "1"
    assert "version 7" in by_id["bad-1"].error_message
    assert "NOT_FOUND" in by_id["bad-1"].error_message
    assert by_id["bad-1"].infer_response.model_name == "toy"


def test_parts_of_triton_it_does_not_forward_say_what_to_use_instead(
    client: httpx.Client, gateway: Gateway
) -> None:
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        register = service_pb2.SystemSharedMemoryRegisterRequest(name="r", key="/r", byte_size=64)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SystemSharedMemoryRegister(register, metadata=list(bearer("reader").items()))
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "send the tensors in the request" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="toy"))
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "rollout" in caught.value.details()
    shared = client.post("/v2/systemsharedmemory/region/r/register", json={"key": "/r", "byte_size": 64})
    assert shared.status_code == 501
    assert "send the tensors in the request" in shared.json()["error"]
    load = client.post("/v2/repository/models/toy/load", headers=bearer("admin"))
    assert load.status_code == 501
    assert "rollout" in load.json()["error"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_client_asking_for_shared_memory_still_gets_its_answer_through_the_gateway(
    gateway: Gateway, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway is on this machine, so the client tries shared memory; refused, it sends the tensors."""
    from hepsonic_client import Client  # noqa: PLC0415

    address = gateway.grpc if protocol == "grpc" else gateway.http
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with Client(f"{protocol}://{address}", shared_memory=True, api_key=KEYS["reader"]) as hepsonic:
        for _ in range(3):
            np.testing.assert_array_equal(hepsonic.infer("toy", {"x": x}, 2)["y"], x * 2 + 1)
        assert hepsonic._shm.region_names == []  # the refused region was freed at once
    refusals = [r for r in caplog.records if "no shared memory with" in r.getMessage()]
    assert len(refusals) == 1  # asked once, not on every request
