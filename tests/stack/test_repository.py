"""The source repository is validated and the runtime repository derived from it faithfully."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hepsonic_triton import RepositoryError, derive_runtime_repository, load_repository, sha256_of

ToyRepository = Callable[..., Path]


def test_valid_repository_lists_models_and_versions(toy_repository: ToyRepository) -> None:
    (model,) = load_repository(toy_repository((1, 2)))
    assert model.name == "toy"
    assert model.versions == (1, 2)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda root, config: (root / "toy" / "config.pbtxt").write_text(
                config.replace("onnxruntime_onnx", "tensorflow")
            ),
            "platform must be 'onnxruntime_onnx'",
        ),
        (
            lambda root, _config: (root / "toy" / "config.pbtxt").write_text(
                "name: 'toy'\nmax_batch_size: [oops"
            ),
            "not a valid Triton ModelConfig",
        ),
        (lambda root, _config: (root / "toy" / "1" / "model.onnx").unlink(), "model.onnx is missing"),
        (
            lambda root, config: (root / "toy" / "config.pbtxt").write_text(
                config.replace('"toy"', '"other"', 1)
            ),
            "config.pbtxt names it 'other'",
        ),
        (
            lambda root, config: (root / "toy" / "config.pbtxt").write_text(
                config + 'parameters { key: "sha256/1" value { string_value: "00ff" } }\n'
            ),
            "config.pbtxt expects 00ff",
        ),
        (lambda root, _config: (root / "toy" / "1").rename(root / "toy" / "v1"), "no numeric version folder"),
    ],
    ids=["platform", "syntax", "missing-onnx", "name", "sha256", "no-version"],
)
def test_invalid_repository_is_refused_with_the_reason(
    toy_repository: ToyRepository, toy_config: str, mutate: Callable[[Path, str], object], message: str
) -> None:
    root = toy_repository()
    mutate(root, toy_config)
    with pytest.raises(RepositoryError, match=message):
        load_repository(root)


def test_missing_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        load_repository(tmp_path / "nowhere")


def test_runtime_repository_wraps_each_version_with_the_same_onnx(
    toy_repository: ToyRepository, tmp_path: Path
) -> None:
    source = toy_repository((1, 2))
    runtime = derive_runtime_repository(load_repository(source), tmp_path / "rt", instances=2, threads=3)
    config = text_format.Parse((runtime / "toy" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.backend == "python"
    assert config.platform == ""
    assert config.max_batch_size == 64
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000
    assert config.version_policy.HasField("all")
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 2)
    ]
    assert config.parameters["onnxruntime_intra_op_threads"].string_value == "3"
    for version in (1, 2):
        served = runtime / "toy" / str(version) / "model.onnx"
        assert sha256_of(served) == sha256_of(source / "toy" / str(version) / "model.onnx")
        assert (runtime / "toy" / str(version) / "model.py").read_text().startswith('"""Generic Triton')


def test_runtime_repository_can_switch_batching_off_or_retune_it(
    toy_repository: ToyRepository, tmp_path: Path
) -> None:
    models = load_repository(toy_repository())
    off = derive_runtime_repository(models, tmp_path / "off", dynamic_batching=False)
    retuned = derive_runtime_repository(models, tmp_path / "retuned", queue_delay_us=2500)

    def parse(root: Path) -> model_config_pb2.ModelConfig:
        return text_format.Parse((root / "toy" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())

    assert not parse(off).HasField("dynamic_batching")
    assert parse(retuned).dynamic_batching.max_queue_delay_microseconds == 2500
