"""hepsonic_client: the thin client for reconstruction jobs.

>>> from hepsonic_client import Client                                    # doctest: +SKIP
>>> client = Client("grpc://127.0.0.1:8081")           # the gateway, or a Triton directly
>>> result = client.infer("ringer", {"rings": rings, "et": et, "eta": eta})
>>> result["discriminant"], result.provenance

Installs with numpy + tritonclient only (no server dependencies). Everything public is listed in
``__all__``; modules starting with ``_`` are private.
"""

from __future__ import annotations

from ._async import AsyncClient
from ._batcher import Batcher
from ._client import Client
from ._exceptions import (
    ConnectError,
    FallbackError,
    HepsonicError,
    InferenceError,
    InputError,
    ModelNotFoundError,
    NoServerAvailableError,
    OverloadedError,
    RequestTimeoutError,
    TransportError,
    UnavailableError,
)
from ._fallback import EmbeddedTriton
from ._helpers import (
    ElectronScores,
    JetTags,
    PrimaryVertices,
    Showers,
    SupportsInfer,
    find_primary_vertices,
    score_electrons,
    served_mass_decorrelated_cut,
    served_peak_finder,
    served_vertex_fit,
    simulate_showers,
    tag_jets,
)
from ._local import OnnxRuntimeTransport
from ._options import BatchingOptions, FallbackOptions, RetryPolicy, Timeouts
from ._ports import free_port
from ._result import InferResult, Provenance, write_provenance
from ._shm import SharedMemory, sweep_stale_regions
from ._transport import (
    MockRequest,
    MockTransport,
    ModelInfo,
    ModelMetadata,
    Reply,
    TensorMetadata,
    Transport,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Batcher",
    "BatchingOptions",
    "Client",
    "ConnectError",
    "ElectronScores",
    "EmbeddedTriton",
    "FallbackError",
    "FallbackOptions",
    "HepsonicError",
    "InferResult",
    "InferenceError",
    "InputError",
    "JetTags",
    "MockRequest",
    "MockTransport",
    "ModelInfo",
    "ModelMetadata",
    "ModelNotFoundError",
    "NoServerAvailableError",
    "OnnxRuntimeTransport",
    "OverloadedError",
    "PrimaryVertices",
    "Provenance",
    "Reply",
    "RequestTimeoutError",
    "RetryPolicy",
    "SharedMemory",
    "Showers",
    "SupportsInfer",
    "TensorMetadata",
    "Timeouts",
    "Transport",
    "TransportError",
    "UnavailableError",
    "__version__",
    "find_primary_vertices",
    "free_port",
    "score_electrons",
    "served_mass_decorrelated_cut",
    "served_peak_finder",
    "served_vertex_fit",
    "simulate_showers",
    "sweep_stale_regions",
    "tag_jets",
    "write_provenance",
]
