"""The public surface of hepsonic_client is exactly what __all__ lists, and it is typed."""

from __future__ import annotations

from pathlib import Path

import hepsonic_client

EXPECTED = {
    "AsyncClient", "BatchingOptions", "Batcher", "Client", "ConnectError", "ElectronScores", "EmbeddedTriton",
    "FallbackError", "FallbackOptions", "HepsonicError", "InferResult", "InferenceError", "InputError",
    "JetTags", "MockRequest", "MockTransport", "ModelInfo", "ModelMetadata", "ModelNotFoundError",
    "NoServerAvailableError", "OnnxRuntimeTransport", "OverloadedError", "PrimaryVertices", "Provenance",
    "Reply", "RequestTimeoutError", "RetryPolicy", "SharedMemory", "Showers", "SupportsInfer",
    "TensorMetadata", "Timeouts", "Transport", "TransportError", "UnavailableError", "__version__",
    "find_primary_vertices", "free_port", "score_electrons", "served_mass_decorrelated_cut", "served_peak_finder", "served_vertex_fit", "simulate_showers", "sweep_stale_regions", "tag_jets",
    "write_provenance",
}  # fmt: skip


def test_public_names_are_exactly_the_curated_set() -> None:
    assert set(hepsonic_client.__all__) == EXPECTED
    assert len(hepsonic_client.__all__) == len(EXPECTED)  # no duplicates
    for name in hepsonic_client.__all__:
        assert hasattr(hepsonic_client, name), name


def test_every_public_class_lives_in_a_private_module_and_has_a_docstring() -> None:
    for name in hepsonic_client.__all__:
        obj = getattr(hepsonic_client, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__.startswith("hepsonic_client._"), name
            assert obj.__doc__, f"{name} has no docstring"


def test_exception_tree_has_one_root() -> None:
    for name in hepsonic_client.__all__:
        obj = getattr(hepsonic_client, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, hepsonic_client.HepsonicError), name


def test_package_is_marked_typed() -> None:
    assert (Path(hepsonic_client.__file__).parent / "py.typed").is_file()
