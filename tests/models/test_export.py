"""The export API: spec-checked ONNX, parity with PyTorch, config.pbtxt that Triton's parser accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hepsonic_models.export import (
    ExportError,
    check_onnx_against_spec,
    export_version,
    publish_parameters,
    render_config,
    sha256_file,
    write_model_card,
)
from hepsonic_models.specs import ModelSpec, TensorSpec

SPEC = ModelSpec(
    name="toy",
    inputs=(TensorSpec(name="x", dims=(4,)), TensorSpec(name="y", dims=(2, 3))),
    outputs=(TensorSpec(name="a", dims=(1,)), TensorSpec(name="b", dims=(2, 3))),
    max_batch_size=8,
    max_queue_delay_us=100,
    version_policy="all",
    versions=(1, 2),
)


class Toy(torch.nn.Module):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
        self.scale = scale

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(self.linear(x)), torch.relu(y) * self.scale


def _inputs(batch: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "x": rng.normal(size=(batch, 4)).astype(np.float32),
        "y": rng.normal(size=(batch, 2, 3)).astype(np.float32),
    }


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_export_writes_checked_graph_and_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    info1 = export_version(SPEC, Toy(), 1, tmp_path, _inputs())
    info2 = export_version(SPEC, Toy(2.0), 2, tmp_path, _inputs())
    assert info1.path == tmp_path / "toy" / "1" / "model.onnx"
    assert info1.sha256 == sha256_file(info1.path)
    assert info1.max_abs_diff <= 1e-5
    assert info1.opset >= 13
    check_onnx_against_spec(SPEC, info2.path)

    # The batch axis is dynamic: another batch size runs.
    session = ort.InferenceSession(str(info2.path), providers=["CPUExecutionProvider"])
    a, b = session.run(None, _inputs(batch=11))
    assert a.shape == (11, 1)
    np.testing.assert_allclose(b, 2.0 * np.maximum(_inputs(11)["y"], 0), atol=1e-6)

    config = _parse((tmp_path / "toy" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.version_policy.WhichOneof("policy_choice") == "all"
    assert [i.name for i in config.input] == ["x", "y"]
    assert list(config.output[1].dims) == [2, 3]
    assert config.parameters["sha256/1"].string_value == info1.sha256
    assert config.parameters["sha256/2"].string_value == info2.sha256


def test_published_parameters_are_per_version_and_survive_a_later_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    info1 = export_version(SPEC, Toy(), 1, tmp_path, _inputs())
    cuts = '{"threshold": 0.5, "note": "a \\"quoted\\" word"}'
    publish_parameters(SPEC, tmp_path, 1, {"cuts": cuts})
    export_version(SPEC, Toy(2.0), 2, tmp_path, _inputs())  # rewrites config.pbtxt
    config = _parse((tmp_path / "toy" / "config.pbtxt").read_text())
    assert config.parameters["cuts/1"].string_value == cuts
    assert "cuts/2" not in config.parameters
    assert config.parameters["sha256/1"].string_value == info1.sha256
    # Publishing again replaces the version's parameters.
    publish_parameters(SPEC, tmp_path, 1, {"other": "x"})
    config = _parse((tmp_path / "toy" / "config.pbtxt").read_text())
    assert "cuts/1" not in config.parameters
    assert config.parameters["other/1"].string_value == "x"
    for key in ("sha256", "a/b", ""):
        with pytest.raises(ExportError, match="reserved or contains"):
            publish_parameters(SPEC, tmp_path, 1, {key: "x"})
    with pytest.raises(ExportError, match=r"version 3: no model\.onnx"):
        publish_parameters(SPEC, tmp_path, 3, {"cuts": "x"})


def test_latest_policy_renders() -> None:
    spec = ModelSpec(
        name="one", inputs=SPEC.inputs, outputs=SPEC.outputs, max_batch_size=4, max_queue_delay_us=1
    )
    config = _parse(render_config(spec, {3: "ab" * 32}))
    assert config.version_policy.latest.num_versions == 1
    assert config.parameters["sha256/3"].string_value == "ab" * 32


def test_wrong_example_input_is_a_clear_error(tmp_path: Path) -> None:
    inputs = _inputs()
    inputs["x"] = inputs["x"][:, :3]
    with pytest.raises(ExportError, match=r"'toy'.*'x'.*float32\[5, 3\].*expected float32\[batch, 4\]"):
        export_version(SPEC, Toy(), 1, tmp_path, inputs)
    with pytest.raises(ExportError, match="example inputs"):
        export_version(SPEC, Toy(), 1, tmp_path, {"x": _inputs()["x"]})


class _Diverging(Toy):
    """Differs between tracing and later calls, so the exported graph cannot match PyTorch."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = super().forward(x, y)
        self.scale += 1.0
        return a, b


def test_parity_failure_names_model_and_output_and_keeps_old_file(tmp_path: Path) -> None:
    good = export_version(SPEC, Toy(), 1, tmp_path, _inputs())
    with pytest.raises(ExportError, match=r"'toy' version 1: output 'b'.*max abs diff"):
        export_version(SPEC, _Diverging(), 1, tmp_path, _inputs())
    assert sha256_file(good.path) == good.sha256
    assert sorted(p.name for p in good.path.parent.iterdir()) == ["model.onnx"]


def test_graph_not_matching_spec_is_rejected(tmp_path: Path) -> None:
    info = export_version(SPEC, Toy(), 1, tmp_path, _inputs())
    other = ModelSpec(
        name="toy",
        inputs=(TensorSpec(name="x", dims=(5,)), SPEC.inputs[1]),
        outputs=SPEC.outputs,
        max_batch_size=8,
        max_queue_delay_us=100,
    )
    with pytest.raises(ExportError, match=r"input 'x' has shape \['batch', 4\]"):
        check_onnx_against_spec(other, info.path)


def test_model_card(tmp_path: Path) -> None:
    path = write_model_card(tmp_path, "toy", "# Toy")
    assert path == tmp_path / "toy" / "MODEL_CARD.md"
    assert path.read_text() == "# Toy\n"
