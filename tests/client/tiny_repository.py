"""A tiny model repository (two small ONNX models) for the client's integration tests.

The client's behaviour (batching, failover, fallback, shared memory, provenance) does not depend on
which network is served, and these load in a fraction of a second, which keeps the tests fast and
independent of the (slow to build) physics models.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

IN_FEATURES = 16
OUT_FEATURES = 4


def _mlp_model(seed: int) -> bytes:
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(IN_FEATURES, 32)).astype(np.float32)
    b1 = rng.normal(size=(32,)).astype(np.float32)
    w2 = rng.normal(size=(32, OUT_FEATURES)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN_FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT_FEATURES])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_tiny_repository(root: Path) -> Path:
    """Write ``root/tiny/{1,2}/model.onnx`` + config.pbtxt (versions 1 and 2, policy all)."""
    folder = root / "tiny"
    shas = {}
    for version in (1, 2):
        (folder / str(version)).mkdir(parents=True, exist_ok=True)
        data = _mlp_model(seed=version)
        (folder / str(version) / "model.onnx").write_bytes(data)
        shas[version] = hashlib.sha256(data).hexdigest()
    parameters = "\n".join(
        f'parameters {{ key: "sha256/{v}" value {{ string_value: "{sha}" }} }}' for v, sha in shas.items()
    )
    (folder / "config.pbtxt").write_text(
        f"""name: "tiny"
platform: "onnxruntime_onnx"
max_batch_size: 512
version_policy: {{ all {{ }} }}
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {IN_FEATURES} ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {OUT_FEATURES} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 200 }}
{parameters}
"""
    )
    return root
