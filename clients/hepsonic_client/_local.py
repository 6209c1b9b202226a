"""In-process execution of the served ONNX files with onnxruntime (extra ``local``).

Used by ``hepsonic-reco --local`` and as the last fallback. It reads the same
``model_repository/<model>/<version>/model.onnx`` that Triton serves, so results agree with the service.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._exceptions import FallbackError, InputError, ModelNotFoundError
from ._transport import Array, ModelInfo, ModelMetadata, Reply, ShmBinding, TensorMetadata, Transport

__all__ = ["OnnxRuntimeTransport", "file_sha256"]

_ORT_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class OnnxRuntimeTransport(Transport):
    """Runs ``<repository>/<model>/<version>/model.onnx`` in this process (CPU execution provider)."""

    def __init__(self, repository: str | Path, *, threads: int = 1) -> None:
        try:
            import onnxruntime  # noqa: PLC0415
        except ImportError as exc:
            msg = "local execution needs onnxruntime: pip install 'hepsonic-client[local]'"
            raise FallbackError(msg) from exc
        self._ort = onnxruntime
        self.repository = Path(repository)
        if not self.repository.is_dir():
            msg = f"model repository {self.repository} does not exist"
            raise FallbackError(msg)
        self.address = f"onnxruntime://{self.repository.resolve()}"
        self.is_local = False  # no shared memory with ourselves
        self.kind = "onnxruntime"
        self._threads = threads
        self._sessions: dict[tuple[str, str], tuple[Any, str]] = {}
        self._lock = threading.Lock()

    def _versions(self, model: str) -> list[str]:
        folder = self.repository / model
        if not folder.is_dir():
            msg = f"model {model!r} is not in {self.repository}"
            raise ModelNotFoundError(msg, server=self.address, model=model)
        return sorted(
            (p.name for p in folder.iterdir() if p.name.isdigit() and (p / "model.onnx").is_file()), key=int
        )

    def _session(self, model: str, version: str) -> tuple[Any, str, str]:
        versions = self._versions(model)
        chosen = version or (versions[-1] if versions else "")
        if chosen not in versions:
            msg = f"model {model!r} has no version {chosen!r} in {self.repository} (found {versions})"
            raise ModelNotFoundError(msg, server=self.address, model=model)
        with self._lock:
            entry = self._sessions.get((model, chosen))
            if entry is None:
                path = self.repository / model / chosen / "model.onnx"
                options = self._ort.SessionOptions()
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
                session = self._ort.InferenceSession(
                    str(path), sess_options=options, providers=["CPUExecutionProvider"]
                )
                entry = self._sessions[(model, chosen)] = (session, file_sha256(path))
        return entry[0], chosen, entry[1]

    def infer(
        self,
        model: str,
        inputs: Mapping[str, Array],
        *,
        version: str,
        outputs: Sequence[str] | None,
        timeout: float | None,  # noqa: ARG002
        shm: ShmBinding | None = None,  # noqa: ARG002
    ) -> Reply:
        session, chosen, sha256 = self._session(model, version)
        try:
            values = session.run(list(outputs) if outputs is not None else None, dict(inputs))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
            msg = f"onnxruntime, model {model!r} version {chosen}: {exc}"
            raise InputError(msg, server=self.address, model=model) from exc
        names = list(outputs) if outputs is not None else [o.name for o in session.get_outputs()]
        return Reply(
            outputs=dict(zip(names, values, strict=True)),
            model_version=chosen,
            sha256=sha256,
            server=self.address,
        )

    def is_ready(self, *, timeout: float | None) -> bool:  # noqa: ARG002
        return True

    def models(self, *, timeout: float | None) -> list[ModelInfo]:  # noqa: ARG002
        return [
            ModelInfo(name=folder.name, version=version)
            for folder in sorted(self.repository.iterdir())
            if folder.is_dir()
            for version in self._versions(folder.name)
        ]

    def metadata(self, model: str, *, version: str, timeout: float | None) -> ModelMetadata:  # noqa: ARG002
        session, _, _ = self._session(model, version)

        def describe(args: Sequence[Any]) -> tuple[TensorMetadata, ...]:
            return tuple(
                TensorMetadata(
                    name=arg.name,
                    datatype=_ORT_TYPES.get(arg.type, arg.type),
                    shape=tuple(d if isinstance(d, int) else -1 for d in arg.shape),
                )
                for arg in args
            )

        return ModelMetadata(
            name=model,
            versions=tuple(self._versions(model)),
            inputs=describe(session.get_inputs()),
            outputs=describe(session.get_outputs()),
        )

    def config_parameter(self, model: str, key: str, *, timeout: float | None) -> str | None:  # noqa: ARG002
        name, _, version = key.rpartition("/")
        if name == "sha256":
            return self._session(model, version)[2]
        # What the exporter publishes in config.pbtxt, read from its source next to the model
        # (hepsonic_models.export.VERSION_PARAMETERS_FILE).
        path = self.repository / model / version / "parameters.json"
        if not name or not version.isdigit() or not path.is_file():
            return None
        value = json.loads(path.read_text(encoding="utf-8")).get(name)
        return value if isinstance(value, str) else None
