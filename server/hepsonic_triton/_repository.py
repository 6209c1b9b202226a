"""The model repository: validate ``model_repository/`` and derive the runtime repository Triton serves here.

``model_repository/`` is a standard Triton repository for the native onnxruntime backend (what NVIDIA's image
loads unchanged). The ``tritonserver`` of the nvidia-pytriton wheel only has the python backend, so we derive a
*runtime repository*: the same configs with ``backend: "python"`` and a CPU (or GPU) instance group, and in every
version folder the generic :mod:`hepsonic_triton.onnx_model` plus a link to the very same ``model.onnx``.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2

from ._errors import RepositoryError

__all__ = ["ModelEntry", "derive_runtime_repository", "load_repository", "sha256_of"]

ONNX_PLATFORM = "onnxruntime_onnx"
SHA256_PARAMETER = "sha256/{version}"
_GENERIC_MODEL = Path(__file__).with_name("onnx_model.py")


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One model of the source repository."""

    name: str
    path: Path
    config: model_config_pb2.ModelConfig
    #: Version folders holding a model.onnx, ascending.
    versions: tuple[int, ...]

    def onnx_path(self, version: int) -> Path:
        """The ONNX file of one version."""
        return self.path / str(version) / "model.onnx"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (the provenance fingerprint of a served model version)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_config(path: Path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except text_format.ParseError as exc:
        raise RepositoryError(f"{path}: not a valid Triton ModelConfig: {exc}") from exc
    return config


def _load_model(path: Path) -> ModelEntry:
    config_path = path / "config.pbtxt"
    if not config_path.is_file():
        raise RepositoryError(f"model {path.name!r}: {config_path} is missing")
    config = _parse_config(config_path)
    if config.name and config.name != path.name:
        raise RepositoryError(f"model {path.name!r}: config.pbtxt names it {config.name!r}")
    if config.platform != ONNX_PLATFORM:
        raise RepositoryError(
            f"model {path.name!r}: platform must be {ONNX_PLATFORM!r} (got {config.platform or config.backend!r})"
        )
    versions = sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise RepositoryError(f"model {path.name!r}: no numeric version folder in {path}")
    for version in versions:
        onnx = path / str(version) / "model.onnx"
        if not onnx.is_file():
            raise RepositoryError(f"model {path.name!r} version {version}: {onnx} is missing")
        expected = config.parameters.get(SHA256_PARAMETER.format(version=version))
        if expected is not None and expected.string_value != sha256_of(onnx):
            raise RepositoryError(
                f"model {path.name!r} version {version}: model.onnx has sha256 {sha256_of(onnx)}, "
                f"config.pbtxt expects {expected.string_value} (rebuild with hepsonic-build-models)"
            )
    return ModelEntry(name=path.name, path=path, config=config, versions=tuple(versions))


def load_repository(root: Path) -> list[ModelEntry]:
    """Validate a source repository and list its models; raises :class:`RepositoryError` with the reason."""
    if not root.is_dir():
        raise RepositoryError(f"model repository {root} does not exist")
    models = [_load_model(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if not models:
        raise RepositoryError(f"model repository {root} holds no model")
    return models


def _runtime_config(
    entry: ModelEntry,
    *,
    device: Literal["cpu", "gpu"],
    instances: int,
    threads: int,
    dynamic_batching: bool,
    queue_delay_us: int | None,
) -> Message:
    config = model_config_pb2.ModelConfig()
    config.CopyFrom(entry.config)
    config.name = entry.name
    config.ClearField("platform")
    config.backend = "python"
    config.ClearField("instance_group")
    group = config.instance_group.add()
    group.kind = (
        model_config_pb2.ModelInstanceGroup.KIND_GPU
        if device == "gpu"
        else model_config_pb2.ModelInstanceGroup.KIND_CPU
    )
    group.count = instances
    config.parameters["onnxruntime_intra_op_threads"].string_value = str(threads)
    if not dynamic_batching:
        config.ClearField("dynamic_batching")
    elif queue_delay_us is not None:
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    return config


def derive_runtime_repository(
    models: list[ModelEntry],
    target: Path,
    *,
    device: Literal["cpu", "gpu"] = "cpu",
    instances: int = 1,
    threads: int = 1,
    dynamic_batching: bool = True,
    queue_delay_us: int | None = None,
) -> Path:
    """Write the python-backend runtime repository for ``models`` into ``target`` (replaced if present).

    ``dynamic_batching=False`` and ``queue_delay_us`` override the repository's batching, for benchmarks
    that compare server configurations on the same files.
    """
    if target.exists():
        shutil.rmtree(target)
    for entry in models:
        model_dir = target / entry.name
        model_dir.mkdir(parents=True)
        config = _runtime_config(
            entry,
            device=device,
            instances=instances,
            threads=threads,
            dynamic_batching=dynamic_batching,
            queue_delay_us=queue_delay_us,
        )
        (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
        for version in entry.versions:
            version_dir = model_dir / str(version)
            version_dir.mkdir()
            shutil.copy2(_GENERIC_MODEL, version_dir / "model.py")
            # A link, not a copy: the served bytes are exactly the repository's (same sha256).
            (version_dir / "model.onnx").symlink_to(entry.onnx_path(version).resolve())
    return target
