"""Inputs of the jet taggers (``particlenet_lite``, ``part_small``) from jet constituents, with numpy only.

The generator/trainer in ``hepsonic_models.jets`` and reconstruction jobs call the same function,
:func:`build_tagger_inputs`, so the served and the offline inputs cannot drift apart.

Per jet, the constituents are sorted by decreasing pT, the first :data:`MAX_PARTICLES` kept, and zero-padded:

* ``pf_points``   [2, P]: Δη, Δφ to the jet axis (the kNN / attention coordinates);
* ``pf_features`` [7, P]: Δη, Δφ, log pT, log E, log pT/pT_jet, log E/E_jet, ΔR, the last five standardised
  as ``(x - a) * b`` (:data:`FEATURE_STANDARDISATION`) and clipped to ±5;
* ``pf_vectors``  [4, P]: px, py, pz, E in GeV (``part_small`` only);
* ``pf_mask``     [1, P]: 1 for a real constituent, 0 for padding.

Padded slots are exactly zero in every tensor.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_STANDARDISATION",
    "MAX_PARTICLES",
    "build_tagger_inputs",
    "pad_constituents",
]

#: Constituents per jet seen by the taggers (weaver/CMS convention).
MAX_PARTICLES = 64

#: Row order of ``pf_features``.
FEATURE_NAMES: tuple[str, ...] = (
    "deta",
    "dphi",
    "log_pt",
    "log_e",
    "log_pt_rel",
    "log_e_rel",
    "delta_r",
)

#: ``(a, b)`` of the standardisation ``(x - a) * b`` per feature; Δη and Δφ are left as they are.
FEATURE_STANDARDISATION: dict[str, tuple[float, float]] = {
    "log_pt": (1.7, 0.7),
    "log_e": (2.0, 0.7),
    "log_pt_rel": (-4.7, 0.7),
    "log_e_rel": (-4.7, 0.7),
    "delta_r": (0.2, 4.0),
}

_CLIP = 5.0

FloatArray = npt.NDArray[np.float32]


def pad_constituents(
    flat_p4: npt.ArrayLike, counts: npt.ArrayLike, max_particles: int | None = None
) -> FloatArray:
    """Turn ragged constituents into a zero-padded ``(n_jets, n_max, 4)`` float32 array.

    ``flat_p4`` is ``(sum(counts), 4)`` (px, py, pz, E in GeV) with jet ``i`` owning the next ``counts[i]``
    rows. ``n_max`` is ``max(counts)`` unless ``max_particles`` is given (then longer jets keep their first
    ``max_particles`` rows: sort first if that matters, or pass everything to :func:`build_tagger_inputs`).
    """
    p4 = np.asarray(flat_p4, dtype=np.float64)
    n_per_jet = np.asarray(counts, dtype=np.int64)
    if p4.ndim != 2 or p4.shape[1] != 4:
        raise ValueError(f"jet constituents: expected flat (n, 4) px, py, pz, E, got shape {p4.shape}")
    if n_per_jet.ndim != 1 or (n_per_jet < 0).any() or int(n_per_jet.sum()) != p4.shape[0]:
        raise ValueError(
            f"jet constituents: counts must be non-negative and sum to {p4.shape[0]} rows, "
            f"got {int(n_per_jet.sum())}"
        )
    width = int(n_per_jet.max(initial=0)) if max_particles is None else max_particles
    out = np.zeros((n_per_jet.size, width, 4), dtype=np.float32)
    starts = np.concatenate(([0], np.cumsum(n_per_jet)[:-1]))
    slot = np.arange(p4.shape[0]) - np.repeat(starts, n_per_jet)
    jet = np.repeat(np.arange(n_per_jet.size), n_per_jet)
    keep = slot < width
    out[jet[keep], slot[keep]] = p4[keep]
    return out


def _pt_eta_phi(
    px: npt.NDArray[np.float64], py: npt.NDArray[np.float64], pz: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    return pt, eta, np.arctan2(py, px)


def build_tagger_inputs(
    constituents: npt.ArrayLike,
    *,
    jet_p4: npt.ArrayLike | None = None,
    max_particles: int = MAX_PARTICLES,
) -> dict[str, FloatArray]:
    """The tagger input tensors of a batch of jets.

    ``constituents`` is ``(n_jets, n, 4)``: px, py, pz, E in GeV, any order, rows with E <= 0 are padding
    (use :func:`pad_constituents` for ragged input). ``jet_p4`` ``(n_jets, 4)`` is the jet four-momentum
    (the axis and the pT/E reference); by default the sum of all given constituents.

    Returns ``pf_points``, ``pf_features``, ``pf_vectors``, ``pf_mask`` (float32, batch first, particles
    last). ``particlenet_lite`` takes all but ``pf_vectors``.
    """
    p4 = np.asarray(constituents, dtype=np.float64)
    if p4.ndim != 3 or p4.shape[2] != 4:
        raise ValueError(
            f"jet taggers: input 'constituents' must be (n_jets, n_particles, 4) px, py, pz, E; "
            f"got shape {p4.shape}"
        )
    if not np.isfinite(p4).all():
        raise ValueError("jet taggers: input 'constituents' contains NaN or infinite values")
    n_jets = p4.shape[0]
    real = p4[..., 3] > 0
    p4 = np.where(real[..., None], p4, 0.0)

    if jet_p4 is None:
        jet = p4.sum(axis=1)
    else:
        jet = np.asarray(jet_p4, dtype=np.float64)
        if jet.shape != (n_jets, 4):
            raise ValueError(f"jet taggers: input 'jet_p4' must be ({n_jets}, 4), got shape {jet.shape}")

    # Sort by decreasing pT (padding last), keep the leading max_particles.
    pt_all = np.where(real, np.hypot(p4[..., 0], p4[..., 1]), -1.0)
    order = np.argsort(-pt_all, axis=1, kind="stable")[:, :max_particles]
    p4 = np.take_along_axis(p4, order[..., None], axis=1)
    real = np.take_along_axis(real, order, axis=1)
    if p4.shape[1] < max_particles:
        pad = max_particles - p4.shape[1]
        p4 = np.pad(p4, ((0, 0), (0, pad), (0, 0)))
        real = np.pad(real, ((0, 0), (0, pad)))

    px, py, pz, energy = (p4[..., i] for i in range(4))
    pt, eta, phi = _pt_eta_phi(px, py, pz)
    jet_pt, jet_eta, jet_phi = _pt_eta_phi(jet[:, 0], jet[:, 1], jet[:, 2])
    jet_energy = jet[:, 3]
    if ((jet_pt <= 0) | (jet_energy <= 0)).any():
        raise ValueError("jet taggers: a jet has no constituent with E > 0 (or a jet_p4 with pT or E <= 0)")

    deta = eta - jet_eta[:, None]
    dphi = (phi - jet_phi[:, None] + np.pi) % (2 * np.pi) - np.pi
    tiny = np.finfo(np.float64).tiny
    raw = {
        "deta": deta,
        "dphi": dphi,
        "log_pt": np.log(np.maximum(pt, tiny)),
        "log_e": np.log(np.maximum(energy, tiny)),
        "log_pt_rel": np.log(np.maximum(pt, tiny) / jet_pt[:, None]),
        "log_e_rel": np.log(np.maximum(energy, tiny) / jet_energy[:, None]),
        "delta_r": np.hypot(deta, dphi),
    }
    for name, (shift, scale) in FEATURE_STANDARDISATION.items():
        raw[name] = np.clip((raw[name] - shift) * scale, -_CLIP, _CLIP)

    mask = real.astype(np.float32)
    features = np.stack([raw[name] for name in FEATURE_NAMES], axis=1) * mask[:, None, :]
    points = np.stack([deta, dphi], axis=1) * mask[:, None, :]
    vectors = np.transpose(p4, (0, 2, 1)) * mask[:, None, :]
    return {
        "pf_points": points.astype(np.float32),
        "pf_features": features.astype(np.float32),
        "pf_vectors": vectors.astype(np.float32),
        "pf_mask": mask[:, None, :],
    }
