"""Request coalescing: concurrent gRPC requests merged into fewer upstream calls, each answered with its own rows."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as aiogrpc
import yaml
from tritonclient.grpc import service_pb2

from hepsonic_gateway._coalesce import Coalescer
from hepsonic_gateway._dataplane import DataPlane
from hepsonic_gateway._errors import UpstreamError
from hepsonic_gateway._grpc import _answer_part, _row_bytes, _signature, tensor_headers
from hepsonic_gateway._routing import load_routing
from hepsonic_gateway._validation import InputSpec, ModelSchema

from .conftest import Cluster, Gateway
from .helpers import bearer


class _Upstream:
    """A fake upstream: records every call's items and answers when released (or fails when told)."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail: set[int] = set()  # calls (by index) that raise

    async def send(self, items: list[int]) -> list[int]:
        index = len(self.calls)
        self.calls.append(items)
        await self.release.wait()
        if index in self.fail:
            raise UpstreamError(f"call {index} failed", http_status=500)
        return [item * 10 for item in items]


def _coalescer(upstream: _Upstream, *, max_calls: int = 1, max_rows: int = 64) -> Coalescer[int, int]:
    return Coalescer(upstream.send, max_calls=max_calls, max_rows=max_rows, max_bytes=1 << 20)


def test_at_low_load_requests_leave_at_once_under_load_they_wait_and_leave_as_one_call() -> None:
    async def scenario() -> None:
        upstream = _Upstream()
        coalescer = _coalescer(upstream, max_calls=1)
        first = asyncio.ensure_future(coalescer.submit(1, rows=4, nbytes=16))
        await asyncio.sleep(0)
        assert upstream.calls == [[1]], "a free call slot: the request leaves at once, alone"
        second = asyncio.ensure_future(coalescer.submit(2, rows=4, nbytes=16))
        await asyncio.sleep(0)
        assert upstream.calls == [[1], [2]], (
            "the call in flight carries one request: a second one does not wait"
        )
        later = [asyncio.ensure_future(coalescer.submit(i, rows=4, nbytes=16)) for i in range(3, 7)]
        await asyncio.sleep(0)
        assert len(upstream.calls) == 2, "two calls in flight for one slot: the others wait"
        upstream.release.set()
        assert list(await asyncio.gather(first, second)) == [10, 20]
        assert await asyncio.gather(*later) == [30, 40, 50, 60], "each request gets its own answer"
        assert upstream.calls == [[1], [2], [3, 4, 5, 6]], "the waiting requests left as one call"
        assert coalescer.idle

    asyncio.run(scenario())


def test_a_merged_call_never_exceeds_the_row_limit() -> None:
    async def scenario() -> None:
        upstream = _Upstream()
        coalescer = _coalescer(upstream, max_calls=1, max_rows=10)
        tasks = [asyncio.ensure_future(coalescer.submit(i, rows=4, nbytes=16)) for i in range(7)]
        await asyncio.sleep(0)
        upstream.release.set()
        assert await asyncio.gather(*tasks) == [0, 10, 20, 30, 40, 50, 60]
        assert upstream.calls == [[0], [1], [2, 3], [4, 5], [6]], "4 + 4 rows fit in 10, a third request not"

    asyncio.run(scenario())


def test_a_failed_call_fails_its_own_requests_only_and_a_cancelled_request_is_not_sent() -> None:
    async def scenario() -> None:
        upstream = _Upstream()
        upstream.fail = {2}
        coalescer = _coalescer(upstream, max_calls=1)
        alone = [asyncio.ensure_future(coalescer.submit(i, rows=1, nbytes=4)) for i in (0, 1)]
        await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(coalescer.submit(i, rows=1, nbytes=4)) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        waiting[1].cancel()  # its client's deadline passed while it waited
        upstream.release.set()
        assert await asyncio.gather(*alone) == [0, 10]
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert isinstance(outcomes[0], UpstreamError)
        assert isinstance(outcomes[2], UpstreamError)
        assert isinstance(outcomes[1], asyncio.CancelledError)
        assert upstream.calls == [[0], [1], [2, 4]], "the cancelled request was left out of the merged call"
        assert await coalescer.submit(7, rows=1, nbytes=4) == 70, "the next call is unaffected"
        assert coalescer.idle

    asyncio.run(scenario())


def test_after_a_reload_requests_merge_apart_from_those_bound_for_the_replaced_pool(tmp_path: Path) -> None:
    """Under steady load a coalescer never goes idle; a reload that replaces the pool must not leave new
    requests merging into calls on the old pool (which closes once its own requests are answered)."""
    routing_file = tmp_path / "routing.yaml"

    def write(port: int) -> None:
        endpoints = [{"http": f"127.0.0.1:{port}", "grpc": f"127.0.0.1:{port + 1}"}]
        routing_file.write_text(
            yaml.safe_dump({"pools": {"default": {"endpoints": endpoints}}}), encoding="utf-8"
        )

    def serving(plane: DataPlane) -> Any:
        replica = plane.pools["default"].replicas[0]
        replica.healthy = True
        replica.ready_versions = {"toy": {1}}
        return replica

    async def check() -> None:
        write(10)
        plane = DataPlane(load_routing(routing_file), routing_file=routing_file)
        old = serving(plane)
        release = asyncio.Event()
        sent: list[tuple[str, list[int]]] = []

        async def call(replica: Any, items: list[int]) -> list[int]:
            sent.append((replica.name, list(items)))
            await release.wait()
            return [item * 10 for item in items]

        def forward(item: int) -> asyncio.Future[int]:
            target = plane.resolve("toy", "1")
            return asyncio.ensure_future(
                plane.forward_coalesced(target, _schema(), "signature", item, rows=1, nbytes=4, call=call)
            )

        before = [forward(1), forward(2), forward(3)]  # two calls in flight, one request waiting
        await asyncio.sleep(0.01)
        assert sent == [(old.name, [1]), (old.name, [2])]
        write(30)
        await plane.reload()
        new = serving(plane)
        after = forward(4)
        await asyncio.sleep(0.01)
        assert sent[-1] == (new.name, [4]), "the new pool's first request leaves at once, to the new pool"
        release.set()
        assert await asyncio.gather(*before, after) == [10, 20, 30, 40]
        assert (old.name, [3]) in sent
        await plane.close()

    asyncio.run(check())


def _schema(**changes: Any) -> ModelSchema:
    fields: dict[str, Any] = {
        "model": "toy",
        "version": 1,
        "max_batch_size": 64,
        "inputs": {"x": InputSpec("x", "FP32", (4,))},
        "sha256": None,
        "mergeable": True,
    }
    return ModelSchema(**{**fields, **changes})


def _request(rows: int = 2) -> Any:
    request = service_pb2.ModelInferRequest(model_name="toy")
    request.inputs.add(name="x", datatype="FP32", shape=[rows, 4])
    request.raw_input_contents.append(np.zeros((rows, 4), np.float32).tobytes())
    request.outputs.add(name="y")
    return request


def _config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "max_batch_size": 64,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["4"]}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": ["4"]}],
        "dynamic_batching": {"max_queue_delay_microseconds": "100"},
        "instance_group": [{"kind": "KIND_CPU", "count": 2}],
    }
    return {key: value for key, value in {**config, **changes}.items() if value is not None}


def test_a_model_is_mergeable_when_triton_batches_it_dynamically_and_its_rows_have_a_fixed_size() -> None:
    def mergeable(**changes: Any) -> bool:
        return ModelSchema.from_triton_config("toy", 1, _config(**changes)).mergeable

    assert mergeable()
    assert not mergeable(dynamic_batching=None)
    assert not mergeable(max_batch_size=0)
    assert not mergeable(output=[{"name": "label", "data_type": "TYPE_STRING", "dims": ["1"]}]), "BYTES vary"
    assert ModelSchema.from_triton_config("toy", 1, _config()).instances == 2
    gpus = [{"kind": "KIND_GPU", "count": 1, "gpus": [0, 1]}, {"kind": "KIND_CPU", "count": 1}]
    assert ModelSchema.from_triton_config("toy", 1, _config(instance_group=gpus)).instances == 3
    assert ModelSchema.from_triton_config("toy", 1, _config(instance_group=None)).instances == 1


def test_only_plain_requests_to_mergeable_models_are_merged() -> None:
    def signature(request: Any, schema: ModelSchema | None) -> Any:
        return _signature(request, tensor_headers(request), schema)

    assert signature(_request(2), _schema()) == signature(_request(5), _schema()), "rows may differ"
    assert signature(_request(2), _schema()) is not None
    assert signature(_request(), _schema(mergeable=False)) is None
    assert signature(_request(), None) is None, "no schema: nothing is known about the model"
    with_priority = _request()
    with_priority.parameters["priority"].uint64_param = 1
    assert signature(with_priority, _schema()) is None
    shared_memory = _request()
    shared_memory.inputs[0].parameters["shared_memory_region"].string_param = "region"
    assert signature(shared_memory, _schema()) is None
    classification = _request()
    classification.outputs[0].parameters["classification"].int64_param = 3
    assert signature(classification, _schema()) is None
    typed = _request()
    typed.ClearField("raw_input_contents")
    typed.inputs[0].contents.fp32_contents.extend([0.0] * 8)
    assert signature(typed, _schema()) is None
    other_output = _request()
    other_output.outputs[0].name = "z"
    assert signature(other_output, _schema()) != signature(_request(), _schema())


def test_a_merged_answer_is_sliced_by_rows_and_checked() -> None:
    response = service_pb2.ModelInferResponse(model_name="toy", model_version="1", id="a,b")
    response.outputs.add(name="y", datatype="FP32", shape=[5, 2])
    response.raw_output_contents.append(np.arange(10, dtype=np.float32).tobytes())
    sizes = _row_bytes(response, 5)
    part = service_pb2.ModelInferResponse.FromString(_answer_part(response, sizes, 2, 3, "b"))
    assert part.id == "b"
    assert list(part.outputs[0].shape) == [3, 2]
    np.testing.assert_array_equal(np.frombuffer(part.raw_output_contents[0], np.float32), np.arange(4, 10))
    with pytest.raises(UpstreamError, match=r"model 'toy': Triton answered 4 merged rows with output 'y'"):
        _row_bytes(response, 4)


@pytest.mark.integration
def test_concurrent_grpc_requests_are_merged_and_each_gets_its_own_rows(
    gateway: Gateway, cluster: Cluster
) -> None:
    """Against two real Tritons: many concurrent requests of 1-40 rows (the toy model batches at most 64)."""
    rng = np.random.default_rng(7)
    inputs = [rng.normal(size=(int(rng.integers(1, 41)), 4)).astype(np.float32) for _ in range(96)]

    def merged_calls() -> tuple[float, float]:
        text = httpx.get(f"{gateway.url}/metrics", timeout=10).text

        def value(suffix: str) -> float:
            pattern = rf'^hepsonic_gateway_requests_per_upstream_call_{suffix}{{model="toy"}} ([0-9.e+]+)$'
            found = re.search(pattern, text, flags=re.MULTILINE)
            return float(found.group(1)) if found else 0.0

        return value("sum"), value("count")

    async def run() -> list[Any]:
        client = aiogrpc.InferenceServerClient(gateway.grpc)
        try:

            async def one(x: np.ndarray[Any, Any], index: int) -> Any:
                tensor = aiogrpc.InferInput("x", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x)
                return await client.infer(
                    "toy", [tensor], model_version="2", request_id=f"job-{index}", headers=bearer("reader")
                )

            return list(await asyncio.gather(*(one(x, i) for i, x in enumerate(inputs))))
        finally:
            await client.close()

    requests_before, calls_before = merged_calls()
    results = asyncio.run(run())
    requests_after, calls_after = merged_calls()
    for index, (x, result) in enumerate(zip(inputs, results, strict=True)):
        response = result.get_response()
        assert response.id == f"job-{index}", "each answer carries its own request id"
        assert response.model_version == "2"
        assert response.parameters["hepsonic_model_sha256"].string_param == cluster.digests[("toy", 2)]
        np.testing.assert_array_equal(result.as_numpy("y"), x * 2 + 1, err_msg=f"request {index}")
    requests, calls = requests_after - requests_before, calls_after - calls_before
    assert requests == len(inputs), "every request went upstream once"
    # How much merges depends on timing (and on the 64-row cap); that some does, does not.
    assert calls < requests, f"{requests} requests in {calls} upstream calls: nothing was merged"
