"""Typed helpers per served model, on top of :mod:`hepsonic_client.physics`.

Each helper builds the model's inputs from detector-level objects with the same physics code the trainers
use, calls the service, and returns named arrays with the provenance of the answer. They accept a
:class:`~hepsonic_client.Client` (or anything with its ``infer`` method, such as a client on a
``MockTransport`` or on local onnxruntime).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from ._result import InferResult, Provenance
from .physics import jets, showers, vertices

__all__ = [
    "ElectronScores",
    "JetTags",
    "PrimaryVertices",
    "Showers",
    "SupportsInfer",
    "find_primary_vertices",
    "score_electrons",
    "served_mass_decorrelated_cut",
    "served_peak_finder",
    "served_vertex_fit",
    "simulate_showers",
    "tag_jets",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
T = TypeVar("T")

log = logging.getLogger("hepsonic_client")

#: Cuts used when the server publishes no operating point (a repository exported before they were published).
FALLBACK_PEAK_FINDER = vertices.PeakFinder(threshold=0.5)
_WARNED: set[tuple[str, str]] = set()


class SupportsInfer(Protocol):
    """Anything with :meth:`Client.infer`'s signature."""

    def infer(
        self, model: str, inputs: Mapping[str, Any], version: int | str | None = None
    ) -> InferResult: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class ElectronScores:
    """``ringer`` output: one discriminant in [-1, 1] per candidate (higher = more electron-like)."""

    discriminant: F32
    provenance: Provenance


@dataclass(frozen=True, kw_only=True, slots=True)
class JetTags:
    """Jet-tagger output per jet: P(top) and P(QCD), and the jet mass a mass-decorrelated cut needs."""

    p_top: F32
    p_qcd: F32
    #: GeV, of ``jet_p4`` (by default the sum of the constituents given).
    jet_mass: F64
    provenance: Provenance


@dataclass(frozen=True, kw_only=True, slots=True)
class PrimaryVertices:
    """``pv_finder`` output per event: the probability histogram and the vertex z list (mm)."""

    pv_prob: F32
    #: Per event, the vertices' z (mm): fitted to the tracks when a vertex fit ran, else the peaks' z.
    z: list[npt.NDArray[np.float64]]
    provenance: Provenance
    #: Per event, the fitted vertices (x, y, z, sigma_z, tracks); None when no vertex fit ran.
    fitted: list[vertices.FittedVertices] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Showers:
    """``calo_gan`` output per particle: energy deposits of the three layers (GeV)."""

    energy: F32
    layer_0: F32
    layer_1: F32
    layer_2: F32
    provenance: Provenance


def score_electrons(
    client: SupportsInfer,
    rings: npt.ArrayLike,
    et: npt.ArrayLike,
    eta: npt.ArrayLike,
    *,
    version: int | None = None,
) -> ElectronScores:
    """Ringer discriminant from rings (``(n, 100)`` MeV, see ``physics.rings``), E_T (GeV) and eta."""
    ring_array = np.asarray(rings, dtype=np.float32)
    if ring_array.ndim != 2 or ring_array.shape[1] != 100:
        msg = f"ringer: input 'rings' must be (n, 100) ring energies in MeV, got shape {ring_array.shape}"
        raise ValueError(msg)
    et_array = np.asarray(et, dtype=np.float32).reshape(-1, 1)
    eta_array = np.asarray(eta, dtype=np.float32).reshape(-1, 1)
    if not len(ring_array) == len(et_array) == len(eta_array):
        msg = (
            f"ringer: rings, et and eta must have one entry per candidate, got "
            f"{len(ring_array)}, {len(et_array)}, {len(eta_array)}"
        )
        raise ValueError(msg)
    result = client.infer("ringer", {"rings": ring_array, "et": et_array, "eta": eta_array}, version)
    return ElectronScores(discriminant=result["discriminant"].reshape(-1), provenance=result.provenance)


def tag_jets(
    client: SupportsInfer,
    constituents: npt.ArrayLike,
    *,
    model: str = "particlenet_lite",
    jet_p4: npt.ArrayLike | None = None,
) -> JetTags:
    """Tagger probabilities from constituents ``(n_jets, n, 4)`` px, py, pz, E (GeV; E <= 0 = padding)."""
    tensors = jets.build_tagger_inputs(constituents, jet_p4=jet_p4)
    if model != "part_small":
        del tensors["pf_vectors"]
    softmax = client.infer(model, tensors)
    probabilities = softmax["softmax"]
    return JetTags(
        p_top=probabilities[:, 0],
        p_qcd=probabilities[:, 1],
        jet_mass=jets.jet_mass(jets.sum_constituents(constituents) if jet_p4 is None else jet_p4),
        provenance=softmax.provenance,
    )


@runtime_checkable
class SupportsParameters(Protocol):
    """Anything with :meth:`Client.model_parameter`'s signature."""

    def model_parameter(self, model: str, key: str, version: int | str) -> str | None: ...


@functools.lru_cache(maxsize=64)
def _parse(parse: Callable[[str], T], text: str) -> T:
    # A reconstruction job asks for every event: the published text is parsed once.
    return parse(text)


def _served(client: SupportsInfer, provenance: Provenance, key: str, parse: Callable[[str], T]) -> T | None:
    """The parameter ``key`` that the answering model version publishes, parsed; None when it publishes none
    (or the client cannot read model parameters)."""
    if not (isinstance(client, SupportsParameters) and provenance.version):
        return None
    text = client.model_parameter(provenance.model, key, provenance.version)
    return None if text is None else _parse(parse, text)


def served_peak_finder(client: SupportsInfer, provenance: Provenance) -> vertices.PeakFinder:
    """The peak-finder cuts published by the pv_finder version that answered (its operating point, chosen on
    validation crossings when it was built); :data:`FALLBACK_PEAK_FINDER`, with a warning, when it has none."""
    finder = _served(client, provenance, vertices.PEAK_FINDER_PARAMETER, vertices.PeakFinder.from_json)
    if finder is None:
        # Once per version: a reconstruction job asks for every event.
        if (provenance.model, provenance.version) not in _WARNED:
            _WARNED.add((provenance.model, provenance.version))
            log.warning(
                "hepsonic: %s version %r publishes no %r parameter; using %s",
                provenance.model,
                provenance.version,
                vertices.PEAK_FINDER_PARAMETER,
                FALLBACK_PEAK_FINDER,
            )
        return FALLBACK_PEAK_FINDER
    return finder


def served_mass_decorrelated_cut(
    client: SupportsInfer, provenance: Provenance, qcd_efficiency: float = 0.01
) -> jets.MassDecorrelatedCut:
    """The mass-decorrelated working point (:class:`~.jets.MassDecorrelatedCut`) that the tagger version which
    answered publishes for ``qcd_efficiency``; ``LookupError`` names the ones it has when it has no such cut::

        tags = tag_jets(client, constituents)
        top_like = served_mass_decorrelated_cut(client, tags.provenance).passes(tags.p_top, tags.jet_mass)
    """
    cuts = _served(
        client, provenance, jets.MASS_DECORRELATED_PARAMETER, jets.mass_decorrelated_cuts_from_json
    )
    if cuts is None:
        msg = (
            f"{provenance.model} version {provenance.version!r} publishes no "
            f"{jets.MASS_DECORRELATED_PARAMETER!r} parameter (or this client cannot read model parameters)"
        )
        raise LookupError(msg)
    for cut in cuts:
        if np.isclose(cut.qcd_efficiency, qcd_efficiency):
            return cut
    available = ", ".join(f"{cut.qcd_efficiency:g}" for cut in cuts)
    msg = (
        f"{provenance.model} version {provenance.version!r} publishes mass-decorrelated cuts for QCD "
        f"efficiencies {available}, not {qcd_efficiency:g}"
    )
    raise LookupError(msg)


def served_vertex_fit(client: SupportsInfer, provenance: Provenance) -> vertices.VertexFit | None:
    """The vertex fit that the pv_finder version which answered publishes (its peak-finder cuts were chosen
    for the fitted positions); None when it publishes none (a version whose cuts are for the peaks as they are)."""
    return _served(client, provenance, vertices.VERTEX_FIT_PARAMETER, vertices.VertexFit.from_json)


def find_primary_vertices(
    client: SupportsInfer,
    tracks: Sequence[vertices.Tracks],
    *,
    peak_finder: vertices.PeakFinder | None = None,
    vertex_fit: vertices.VertexFit | Literal[False] | None = None,
) -> PrimaryVertices:
    """PV positions (mm) per event from each event's reconstructed tracks (:class:`~.vertices.Tracks`).

    The peaks of ``pv_prob`` seed vertices that are fitted to the tracks. Without ``peak_finder`` the cuts,
    and without ``vertex_fit`` the fit, are the operating point that the answering version publishes
    (:func:`served_peak_finder`, :func:`served_vertex_fit`); ``vertex_fit=False`` keeps the peaks' z.
    """
    if len(tracks) == 0:
        raise ValueError("pv_finder: find_primary_vertices needs the tracks of at least one event")
    kde = np.stack([vertices.build_kde(event) for event in tracks])
    result = client.infer("pv_finder", {"kde": kde})
    finder = peak_finder or served_peak_finder(client, result.provenance)
    fit = served_vertex_fit(client, result.provenance) if vertex_fit is None else vertex_fit or None
    prob = result["pv_prob"]
    peaks = [finder(row) for row in prob]
    if fit is None:
        return PrimaryVertices(pv_prob=prob, z=peaks, provenance=result.provenance)
    fitted = [fit(event, seeds) for event, seeds in zip(tracks, peaks, strict=True)]
    return PrimaryVertices(pv_prob=prob, z=[f.z for f in fitted], provenance=result.provenance, fitted=fitted)


def simulate_showers(
    client: SupportsInfer, energy_gev: npt.ArrayLike, *, seed: int, stream: int = 0
) -> Showers:
    """Showers for incident energies (GeV, 1-100); the latents come from ``(seed, stream)``: reproducible."""
    inputs = showers.calo_gan_inputs(energy_gev, seed, stream=stream)
    result = client.infer("calo_gan", inputs)
    return Showers(
        energy=inputs["energy"].reshape(-1),
        layer_0=result["layer_0"],
        layer_1=result["layer_1"],
        layer_2=result["layer_2"],
        provenance=result.provenance,
    )
