"""hepsonic_triton: run the real NVIDIA Triton server on the hepsonic model repository.

``model_repository/`` is written for NVIDIA's image (native onnxruntime backend). Here the ``tritonserver``
binary of the nvidia-pytriton wheel serves a derived runtime repository in which one generic python-backend model
wraps each ONNX file with onnxruntime; Triton's own dynamic batcher, version policy, metrics and KServe v2
endpoints do the rest.
"""

from ._errors import PortInUseError, RepositoryError, TritonError, TritonStartError
from ._repository import ModelEntry, derive_runtime_repository, load_repository, sha256_of
from ._server import TritonConfig, TritonServer, check_port_free
from ._signals import stop_process_group, terminate_with_parent

__all__ = [
    "ModelEntry",
    "PortInUseError",
    "RepositoryError",
    "TritonConfig",
    "TritonError",
    "TritonServer",
    "TritonStartError",
    "check_port_free",
    "derive_runtime_repository",
    "load_repository",
    "sha256_of",
    "stop_process_group",
    "terminate_with_parent",
]
