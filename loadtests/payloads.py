"""Realistic request payloads for every served model, built with the project's physics helpers.

The load tests (locust) and the benchmark harness send the same tensors: toy physics objects turned into model
inputs by :mod:`hepsonic_client.physics`, exactly as a reconstruction job would build them. Generating a pool
of objects once and cycling through it keeps the load generator cheap:

* ``particlenet_lite`` / ``part_small``: boosted jets (pT 500-700 GeV, 20-60 constituents, one to three prongs)
  -> :func:`hepsonic_client.physics.jets.build_tagger_inputs`;
* ``ringer``: electron-like and jet-like calorimeter deposits on per-layer grids
  -> :func:`hepsonic_client.physics.rings.rings_from_grids`;
* ``pv_finder``: bunch crossings with Poisson(7.6) primary vertices and their tracks
  -> :func:`hepsonic_client.physics.vertices.build_kde`;
* ``calo_gan``: incident energies 1-100 GeV -> :func:`hepsonic_client.physics.showers.calo_gan_inputs`.

A model without a helper here falls back to spec-shaped random data (:data:`hepsonic_models.specs.SPECS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hepsonic_client.physics.jets import build_tagger_inputs
from hepsonic_client.physics.rings import RING_LAYERS, rings_from_grids
from hepsonic_client.physics.showers import calo_gan_inputs
from hepsonic_client.physics.vertices import build_kde, toy_tracks

__all__ = ["MODEL_INPUTS", "RECO_EVENT_MIX", "EventMix", "PayloadPool", "make_payload", "payload_source"]

Tensors = dict[str, npt.NDArray[np.float32]]

#: Input names each model takes (the served contract, see hepsonic_models/specs.py).
MODEL_INPUTS: dict[str, tuple[str, ...]] = {
    "particlenet_lite": ("pf_points", "pf_features", "pf_mask"),
    "part_small": ("pf_points", "pf_features", "pf_vectors", "pf_mask"),
    "ringer": ("rings", "et", "eta"),
    "pv_finder": ("kde",),
    "calo_gan": ("z", "energy"),
}


@dataclass(frozen=True, kw_only=True)
class EventMix:
    """How often a reconstruction event calls one model, and with how many objects (one request per event)."""

    #: Fraction of events that call the model.
    probability: float
    #: Mean number of objects (jets, candidates, crossings, showers) per request; Poisson, at least 1.
    objects_per_request: float
    #: Cap on objects per request.
    max_objects: int

    @property
    def objects_per_event(self) -> float:
        """Mean inferences per event (ignoring the cap)."""
        return self.probability * max(1.0, self.objects_per_request)


#: The event loop of a reconstruction job, per event: a few boosted jets tagged, a few electron candidates
#: scored, one primary-vertex KDE, and now and then a batch of fast-simulated showers. The locust
#: reconstruction user sends this mix and the capacity plan of the benchmark report assumes it.
RECO_EVENT_MIX: dict[str, EventMix] = {
    "particlenet_lite": EventMix(probability=1.0, objects_per_request=4.0, max_objects=8),
    "ringer": EventMix(probability=1.0, objects_per_request=2.0, max_objects=8),
    "pv_finder": EventMix(probability=1.0, objects_per_request=1.0, max_objects=1),
    "calo_gan": EventMix(probability=0.1, objects_per_request=20.0, max_objects=64),
}


def _jets(n: int, rng: np.random.Generator) -> Tensors:
    """Boosted jets: constituents spread around one to three prong axes inside R = 0.8."""
    n_max = 80
    constituents = np.zeros((n, n_max, 4))
    for jet in range(n):
        pt_jet = rng.uniform(500.0, 700.0)
        eta_jet, phi_jet = rng.uniform(-2.0, 2.0), rng.uniform(-np.pi, np.pi)
        n_part = int(rng.integers(20, 61))
        n_prongs = int(rng.integers(1, 4))
        prong_offsets = rng.normal(0.0, 0.25, size=(n_prongs, 2))
        prong = rng.integers(0, n_prongs, size=n_part)
        deta = prong_offsets[prong, 0] + rng.normal(0.0, 0.06, n_part)
        dphi = prong_offsets[prong, 1] + rng.normal(0.0, 0.06, n_part)
        fractions = rng.dirichlet(np.full(n_part, 0.6))
        pt = pt_jet * fractions
        eta = eta_jet + deta
        phi = phi_jet + dphi
        constituents[jet, :n_part] = np.stack(
            [pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], axis=1
        )
    return build_tagger_inputs(constituents)


def _electron_candidates(n: int, rng: np.random.Generator) -> Tensors:
    """Half electron-like (narrow, EM-only) and half jet-like (wide, hadronic) deposits."""
    et = rng.uniform(4.0, 100.0, size=n)
    eta = rng.uniform(-2.4, 2.4, size=n)
    electron = rng.random(n) < 0.5
    # Fraction of the energy per layer (PS, EM1, EM2, EM3, HAD1-3) and the lateral spread in cells.
    em_fractions = np.array([0.05, 0.25, 0.6, 0.07, 0.02, 0.005, 0.005])
    jet_fractions = np.array([0.05, 0.15, 0.3, 0.1, 0.25, 0.1, 0.05])
    grids = []
    for index, layer in enumerate(RING_LAYERS):
        size = 2 * layer.n_rings + 1
        offsets = np.abs(np.arange(size) - size // 2)
        distance = np.maximum(offsets[:, None], offsets[None, :])
        width = np.where(electron, 0.8, 2.5)[:, None, None]
        profile = np.exp(-distance[None] / width)
        profile /= profile.sum(axis=(1, 2), keepdims=True)
        fraction = np.where(electron, em_fractions[index], jet_fractions[index])
        energy_mev = (et * np.cosh(eta) * 1000.0 * fraction)[:, None, None]
        noise = rng.normal(0.0, 20.0, size=(n, size, size))
        grids.append(np.clip(energy_mev * profile + noise, 0.0, None))
    return {
        "rings": rings_from_grids(grids, eta),
        "et": et.astype(np.float32).reshape(-1, 1),
        "eta": eta.astype(np.float32).reshape(-1, 1),
    }


def _bunch_crossings(n: int, rng: np.random.Generator) -> Tensors:
    """KDEs of crossings with Poisson(7.6) vertices (z ~ N(100, 63) mm) and 5-60 tracks each."""
    kdes = []
    for _ in range(n):
        n_pv = max(1, int(rng.poisson(7.6)))
        vertex_z = rng.normal(100.0, 63.0, size=n_pv)
        kdes.append(build_kde(toy_tracks(vertex_z, rng.integers(5, 61, size=n_pv), rng)))
    return {"kde": np.stack(kdes)}


def _showers(n: int, rng: np.random.Generator) -> Tensors:
    return calo_gan_inputs(rng.uniform(1.0, 100.0, size=n), seed=int(rng.integers(1 << 31)))


_BUILDERS: dict[str, Callable[[int, np.random.Generator], Tensors]] = {
    "particlenet_lite": lambda n, rng: {
        k: v for k, v in _jets(n, rng).items() if k in MODEL_INPUTS["particlenet_lite"]
    },
    "part_small": _jets,
    "ringer": _electron_candidates,
    "pv_finder": _bunch_crossings,
    "calo_gan": _showers,
}


def payload_source(model: str) -> str:
    """How :func:`make_payload` builds inputs for ``model`` (shown in reports)."""
    return "physics helpers" if model in _BUILDERS else "spec-shaped random data (no helper for this model)"


def _random_from_spec(model: str, n: int, rng: np.random.Generator) -> Tensors:
    from hepsonic_models.specs import SPECS  # noqa: PLC0415  (only needed for models without a helper)

    if model not in SPECS:
        raise ValueError(f"payloads: unknown model {model!r}; expected one of {sorted(SPECS)}")
    return {
        tensor.name: rng.standard_normal((n, *tensor.dims)).astype(np.float32)
        for tensor in SPECS[model].inputs
    }


def make_payload(model: str, batch_size: int, *, seed: int = 0) -> Tensors:
    """``batch_size`` realistic inputs of ``model`` (float32, batch first, C-contiguous)."""
    if batch_size < 1:
        raise ValueError(f"payloads: batch_size for {model!r} must be >= 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    builder = _BUILDERS.get(model)
    tensors = builder(batch_size, rng) if builder else _random_from_spec(model, batch_size, rng)
    return {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in tensors.items()}


@dataclass
class PayloadPool:
    """A few pre-built payloads of one model and batch size, handed out in turn (cheap for load generators)."""

    model: str
    batch_size: int
    size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        self._payloads = [
            make_payload(self.model, self.batch_size, seed=self.seed + i) for i in range(self.size)
        ]
        self._next = 0

    @property
    def payloads(self) -> list[Tensors]:
        """Every payload of the pool."""
        return list(self._payloads)

    def next(self) -> Tensors:
        """The next payload of the pool (round robin)."""
        payload = self._payloads[self._next]
        self._next = (self._next + 1) % len(self._payloads)
        return payload
