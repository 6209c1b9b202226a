"""The transport interface: one server, one protocol, no retries (the client adds those).

A transport moves numpy arrays to one server and back, and describes what that server serves. The
client owns everything else (validation, retries, failover, fallbacks, provenance). Implementations:
gRPC (:mod:`._grpc`), HTTP (:mod:`._http`), in-process onnxruntime (:mod:`._local`) and the public
:class:`MockTransport` for tests without a server.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MockRequest",
    "ModelInfo",
    "ModelMetadata",
    "Reply",
    "ShmBinding",
    "TensorMetadata",
    "Transport",
]

Array = npt.NDArray[Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class TensorMetadata:
    """One input or output as the server describes it (KServe v2 ``datatype``; ``-1`` = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelMetadata:
    """A model's interface as served (KServe v2 model metadata)."""

    name: str
    versions: tuple[str, ...]
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelInfo:
    """One entry of a server's model list."""

    name: str
    version: str
    state: str = "READY"


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """What a transport brings back from one inference."""

    outputs: dict[str, Array]
    model_version: str
    sha256: str | None = None
    server: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ShmBinding:
    """Where a request's tensors live in one registered system shared-memory region.

    Entries are ``(tensor name, byte offset, byte size)``; hashable, so transports can cache by it.
    """

    region: str
    inputs: tuple[tuple[str, int, int], ...] = ()
    outputs: tuple[tuple[str, int, int], ...] = ()

    def input_at(self, name: str) -> tuple[int, int] | None:
        """(offset, size) of input ``name`` in the region, or None."""
        return next(((o, n) for t, o, n in self.inputs if t == name), None)

    def output_at(self, name: str) -> tuple[int, int] | None:
        """(offset, size) of output ``name`` in the region, or None."""
        return next(((o, n) for t, o, n in self.outputs if t == name), None)


class Transport(abc.ABC):
    """Talks to one server. Raises only :mod:`hepsonic_client` exceptions."""

    #: Where requests go, e.g. ``"grpc://127.0.0.1:8001"``; recorded in provenance.
    address: str
    #: True when the server runs on this machine (shared memory is possible).
    is_local: bool = False
    #: Recorded as ``Provenance.via``: ``"server"`` or ``"onnxruntime"`` (in-process).
    kind: str = "server"

    @abc.abstractmethod
    def infer(
        self,
        model: str,
        inputs: Mapping[str, Array],
        *,
        version: str,
        outputs: Sequence[str] | None,
        timeout: float | None,
        shm: ShmBinding | None = None,
    ) -> Reply:
        """Run one inference; ``version=""`` lets the server choose."""

    @abc.abstractmethod
    def is_ready(self, *, timeout: float | None) -> bool:
        """Whether the server is ready; False (never an exception) when it cannot be reached."""

    @abc.abstractmethod
    def models(self, *, timeout: float | None) -> list[ModelInfo]:
        """The models (and versions) the server serves."""

    @abc.abstractmethod
    def metadata(self, model: str, *, version: str, timeout: float | None) -> ModelMetadata:
        """A model's inputs and outputs."""

    def config_parameter(self, model: str, key: str, *, timeout: float | None) -> str | None:  # noqa: ARG002
        """A string parameter of the model's configuration (``sha256/<version>``), or None."""
        return None

    def register_shared_memory(self, name: str, key: str, byte_size: int, *, timeout: float | None) -> None:
        """Register a system shared-memory region with the server."""
        msg = f"{type(self).__name__} does not support shared memory"
        raise NotImplementedError(msg)

    def unregister_shared_memory(self, name: str, *, timeout: float | None) -> None:
        """Unregister a system shared-memory region."""
        msg = f"{type(self).__name__} does not support shared memory"
        raise NotImplementedError(msg)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MockRequest:
    """What a :class:`MockTransport` handler receives."""

    model: str
    version: str
    inputs: dict[str, Array]
    outputs: tuple[str, ...] | None


MockHandler = Callable[[MockRequest], "Mapping[str, Array] | Reply"]


class MockTransport(Transport):
    """A transport that calls ``handler(request)`` instead of a server: for unit tests.

    The handler gets a :class:`MockRequest` and returns the outputs (``dict[str, np.ndarray]``) or a
    full :class:`Reply`; it may raise any :mod:`hepsonic_client` exception (e.g.
    ``OverloadedError(retry_after_s=0.1)``) to exercise the client's error handling. Pass it as
    ``Client(transport=MockTransport(handler))``. ``models`` optionally describes the served models,
    which turns on the client's input validation.

    >>> import numpy as np
    >>> from hepsonic_client import Client, MockTransport
    >>> client = Client(transport=MockTransport(lambda r: {"y": 2 * r.inputs["x"]}))
    >>> client.infer("double", {"x": np.ones((2, 1), np.float32)})["y"].tolist()
    [[2.0], [2.0]]
    """

    def __init__(
        self,
        handler: MockHandler,
        *,
        models: Sequence[ModelMetadata] = (),
        address: str = "mock://",
        sha256: str | None = None,
    ) -> None:
        self._handler = handler
        self._models = {meta.name: meta for meta in models}
        self.address = address
        self._sha256 = sha256
        #: Every request the handler saw, in order.
        self.requests: list[MockRequest] = []

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
        request = MockRequest(
            model=model,
            version=version,
            inputs={name: np.asarray(array) for name, array in inputs.items()},
            outputs=tuple(outputs) if outputs is not None else None,
        )
        self.requests.append(request)
        answer = self._handler(request)
        if isinstance(answer, Reply):
            return answer
        served = self._models.get(model)
        default_version = version or (served.versions[-1] if served and served.versions else "1")
        return Reply(
            outputs={name: np.asarray(array) for name, array in answer.items()},
            model_version=default_version,
            sha256=self._sha256,
        )

    def is_ready(self, *, timeout: float | None) -> bool:  # noqa: ARG002
        return True

    def models(self, *, timeout: float | None) -> list[ModelInfo]:  # noqa: ARG002
        return [
            ModelInfo(name=meta.name, version=version)
            for meta in self._models.values()
            for version in meta.versions
        ]

    def metadata(self, model: str, *, version: str, timeout: float | None) -> ModelMetadata:  # noqa: ARG002
        from ._exceptions import InferenceError, ModelNotFoundError  # noqa: PLC0415

        if not self._models:  # nothing described: the client skips input validation
            msg = "this MockTransport describes no models (pass models=[ModelMetadata(...)])"
            raise InferenceError(msg, server=self.address, model=model)
        try:
            return self._models[model]
        except KeyError:
            msg = f"model {model!r} is not described by this MockTransport"
            raise ModelNotFoundError(msg, server=self.address, model=model) from None
