"""model_repository/ in the form NVIDIA's tritonserver image loads unchanged: every config.pbtxt parses
as Triton's ModelConfig, uses the native onnxruntime platform and matches its ONNX files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO_ROOT

MODEL_REPOSITORY = REPO_ROOT / "model_repository"
CONFIGS = sorted(MODEL_REPOSITORY.glob("*/config.pbtxt"))

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")
onnx = pytest.importorskip("onnx")

pytestmark = pytest.mark.skipif(
    not CONFIGS, reason="model_repository/ is still empty (the model builders fill it)"
)

# ONNX TensorProto element types -> Triton data types.
ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
}


def load_config(path: Path) -> Any:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


def served_versions(config: Any, model_dir: Path) -> list[int]:
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    policy = config.version_policy.WhichOneof("policy_choice")
    if policy == "all":
        return versions
    if policy == "specific":
        return sorted(config.version_policy.specific.versions)
    count = config.version_policy.latest.num_versions or 1
    return versions[-count:]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_config_is_native_onnxruntime_and_matches_onnx(path: Path) -> None:
    model_dir = path.parent
    config = load_config(path)
    assert config.name == model_dir.name, "Triton requires name == directory"
    assert config.platform == "onnxruntime_onnx", (
        f"{config.name}: the NVIDIA image serves it natively only as ONNX"
    )
    assert config.max_batch_size > 0
    assert config.HasField("dynamic_batching")

    versions = served_versions(config, model_dir)
    assert versions, f"{config.name}: no numeric version directory"
    for version in versions:
        onnx_file = model_dir / str(version) / "model.onnx"
        assert onnx_file.is_file(), f"{config.name} v{version}: {onnx_file} missing"
        digest = config.parameters[f"sha256/{version}"].string_value
        assert digest == hashlib.sha256(onnx_file.read_bytes()).hexdigest(), (
            f"{config.name} v{version}: sha256"
        )

        graph = onnx.load(str(onnx_file), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        onnx_inputs = {i.name: i for i in graph.input if i.name not in initializers}
        onnx_outputs = {o.name: o for o in graph.output}
        for tensors, onnx_tensors, role in (
            (config.input, onnx_inputs, "input"),
            (config.output, onnx_outputs, "output"),
        ):
            assert {t.name for t in tensors} == set(onnx_tensors), f"{config.name} v{version}: {role} names"
            for tensor in tensors:
                onnx_type = onnx_tensors[tensor.name].type.tensor_type
                triton_type = model_config_pb2.DataType.Name(tensor.data_type)
                assert ONNX_TO_TRITON.get(onnx_type.elem_type) == triton_type, (
                    f"{config.name} v{version} {role} {tensor.name}: config {triton_type}, ONNX elem {onnx_type.elem_type}"
                )
                # ONNX carries the batch dimension first; Triton's dims exclude it when max_batch_size > 0.
                onnx_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in onnx_type.shape.dim][1:]
                assert len(onnx_dims) == len(tensor.dims), (
                    f"{config.name} v{version} {role} {tensor.name}: rank"
                )
                for declared, actual in zip(tensor.dims, onnx_dims, strict=True):
                    assert actual in (-1, declared) or declared == -1, (
                        f"{config.name} v{version} {role} {tensor.name}: dims {list(tensor.dims)} vs ONNX {onnx_dims}"
                    )


def test_a_wrong_platform_would_be_caught(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "x"\nplatform: "pytorch_libtorch"\nmax_batch_size: 1\n')
    assert load_config(bad).platform != "onnxruntime_onnx"
    bad.write_text('name: "x"\nplatfrom: "onnxruntime_onnx"\n')
    with pytest.raises(text_format.ParseError):
        load_config(bad)
