"""Fuzzing: hypothesis on the tensor-header decoding of both protocols (only clean InvalidRequest errors),
schemathesis on the OpenAPI spec and hypothesis on inference bodies against a live gateway (no 5xx)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from tritonclient.grpc import service_pb2

from hepsonic_gateway import InvalidRequest, ModelSchema, check_request, parse_http_request
from hepsonic_gateway._grpc import tensor_headers

from .conftest import Cluster, Gateway
from .helpers import bearer

SCHEMA = ModelSchema.from_triton_config(
    "toy", 1, {"max_batch_size": 64, "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]}
)
DATATYPES = st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "UINT8", "fp32", "", "FP32 "])
SHAPES = st.lists(st.integers(min_value=-3, max_value=2**40), max_size=4) | st.just("x") | st.none()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)
INPUTS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["x", "y", ""]) | JSON_VALUES,
            "datatype": DATATYPES | JSON_VALUES,
            "shape": SHAPES,
        },
        optional={
            "data": st.lists(st.floats(allow_nan=False), max_size=10) | JSON_VALUES,
            "parameters": st.fixed_dictionaries({"binary_data_size": st.integers(-5, 64) | JSON_VALUES}),
        },
    ),
    max_size=3,
)
DOCUMENTS = st.fixed_dictionaries({"inputs": INPUTS}) | JSON_VALUES


def _error_of(action: Callable[[], object]) -> str | None:
    """Run ``action``: None when it passes, the message of the InvalidRequest it raised (anything else fails)."""
    try:
        action()
    except InvalidRequest as exc:
        return exc.message
    return None


@settings(max_examples=200, deadline=None)
@given(document=DOCUMENTS, binary=st.binary(max_size=64), declared=st.none() | st.integers(-4, 2000))
def test_http_header_decoding_fails_only_cleanly(document: Any, binary: bytes, declared: int | None) -> None:
    header = json.dumps(document).encode()
    body = header + binary if declared is not None else header
    length = len(header) if declared is not None and declared % 2 else declared
    message = _error_of(
        lambda: check_request(SCHEMA, parse_http_request(body, length, model="toy"), max_elements=10**6)
    )
    assert message is None or "'toy'" in message


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_http_decoder(raw: bytes) -> None:
    message = _error_of(lambda: parse_http_request(raw, None, model="toy"))
    assert message is None or "'toy'" in message


@settings(max_examples=300, deadline=None)
@given(
    tensors=st.lists(
        st.tuples(
            st.text(max_size=3),
            DATATYPES,
            st.lists(st.integers(0, 2**20), max_size=3),
            st.binary(max_size=40),
        ),
        max_size=3,
    ),
    drop_raw=st.booleans(),
)
def test_grpc_tensor_metadata_fails_only_cleanly(
    tensors: list[tuple[str, str, list[int], bytes]], drop_raw: bool
) -> None:
    request = service_pb2.ModelInferRequest(model_name="toy")
    for name, datatype, shape, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    if drop_raw and request.raw_input_contents:
        del request.raw_input_contents[-1]
    message = _error_of(lambda: check_request(SCHEMA, tensor_headers(request), max_elements=10**6))
    assert message is None or "'toy'" in message


# -- against a live gateway ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_gateway(cluster: Cluster) -> Iterator[Gateway]:
    """A gateway whose `fuzz` key may use every model but has no admin scope (fuzzing must not roll out)."""
    gateway = cluster.gateway("fuzz").start()
    yield gateway
    gateway.stop()


@pytest.mark.integration
def test_openapi_fuzz_finds_no_server_error(fuzz_gateway: Gateway) -> None:
    """Every operation of the OpenAPI spec, with schemathesis-generated cases: never a 5xx."""
    schema = schemathesis.openapi.from_url(f"{fuzz_gateway.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    # The reader key: every toy route is reachable, admin routes answer 403 (a fuzzed rollout would unload
    # versions the other tests use).
    statuses: list[int] = []
    with requests.Session() as session:
        for operation in operations:

            @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                headers = {**bearer("reader"), **(case.headers or {})}
                response = case.call_and_validate(
                    base_url=fuzz_gateway.url, session=session, headers=headers, checks=[not_a_server_error]
                )
                statuses.append(response.status_code)

            check()
    assert any(200 <= s < 300 for s in statuses), "the fuzzer never reached a working route"
    assert any(400 <= s < 500 for s in statuses), "the fuzzer never sent a bad request"


@pytest.mark.integration
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=DOCUMENTS)
def test_inference_body_fuzz_finds_no_server_error(fuzz_gateway: Gateway, document: Any) -> None:
    response = httpx.post(
        f"{fuzz_gateway.url}/v2/models/toy/versions/1/infer",
        content=json.dumps(document),
        headers=bearer("reader"),
        timeout=10,
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert "error" in response.json()
