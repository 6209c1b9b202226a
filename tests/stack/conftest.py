"""Fixtures of the launcher/stack tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

CONFIG = """name: "toy"
platform: "onnxruntime_onnx"
max_batch_size: 64
version_policy { all { } }
input [ { name: "x" data_type: TYPE_FP32 dims: [4] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [4] } ]
dynamic_batching { max_queue_delay_microseconds: 1000 }
"""


def write_toy_repository(root: Path, versions: tuple[int, ...] = (1,)) -> Path:
    """``toy``: y = x * version + 1, one folder per version."""
    for version in versions:
        folder = root / "toy" / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
        scale = helper.make_tensor("scale", TensorProto.FLOAT, [1], [float(version)])
        one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
        graph = helper.make_graph(
            [helper.make_node("Mul", ["x", "scale"], ["xs"]), helper.make_node("Add", ["xs", "one"], ["y"])],
            "toy",
            [x],
            [y],
            [scale, one],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, folder / "model.onnx")
    (root / "toy" / "config.pbtxt").write_text(CONFIG)
    return root


@pytest.fixture
def toy_repository(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write the toy repository (given versions) under a fresh folder and return its root."""

    def make(versions: tuple[int, ...] = (1,)) -> Path:
        return write_toy_repository(tmp_path / "toy_repository", versions)

    return make


@pytest.fixture
def toy_config() -> str:
    """The toy model's config.pbtxt text (for tests that break it on purpose)."""
    return CONFIG
