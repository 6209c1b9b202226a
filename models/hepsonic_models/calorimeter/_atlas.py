"""A toy ATLAS-like sampling calorimeter: 7 layers (PS, EM1-3, HAD1-3) with the ringer's granularity.

Particles arrive at the calorimeter face at (η, φ) (charged ones already bent by the solenoid). Electrons and
photons shower GFlash-style (material in front, a depth-dependent longitudinal profile, core + tail lateral
profile); hadrons travel as MIPs to an exponentially distributed interaction point, then shower with a
Gamma profile in interaction lengths, a wide lateral profile and a non-compensating response (e/h); muons are
MIPs. Every cell gets Gaussian electronic noise and compound-Poisson in-time pile-up (μ interactions) with the
average subtracted, as the LAr baseline correction does.

Each candidate is read out on per-layer grids of cells centred on the cell that contains the candidate's
position, from which :func:`hepsonic_client.physics.rings.rings_from_grids` builds the rings and
:func:`candidate_observables` the T2Calo-like shower shapes of the cut-based reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import gammainc

from hepsonic_client.physics.rings import RING_LAYERS, rings_from_grids

from ._gflash import EmMedium, sample_em_profiles, sample_radii, slice_fractions, spots_from_slices

__all__ = [
    "ATLAS_GRIDS",
    "ATLAS_MEDIUM",
    "KIND_EM",
    "KIND_HADRON",
    "KIND_MUON",
    "CalorimeterParticles",
    "GridShape",
    "candidate_observables",
    "rings_and_observables",
    "simulate_candidates",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

KIND_EM = 0
KIND_HADRON = 1
KIND_MUON = 2


@dataclass(frozen=True, kw_only=True)
class GridShape:
    """Readout window of one layer around a candidate (cells; odd numbers), noise and pile-up density."""

    n_eta: int
    n_phi: int
    #: Electronic noise per cell (MeV).
    noise_mev: float
    #: Pile-up hits per interaction per 0.1 x 0.1 in η-φ.
    pileup_density: float


ATLAS_GRIDS: tuple[GridShape, ...] = (
    GridShape(n_eta=15, n_phi=5, noise_mev=40.0, pileup_density=0.002),  # PS
    GridShape(n_eta=127, n_phi=5, noise_mev=15.0, pileup_density=0.004),  # EM1 strips
    GridShape(n_eta=15, n_phi=15, noise_mev=30.0, pileup_density=0.008),  # EM2
    GridShape(n_eta=15, n_phi=15, noise_mev=25.0, pileup_density=0.001),  # EM3
    GridShape(n_eta=7, n_phi=7, noise_mev=40.0, pileup_density=0.005),  # HAD1
    GridShape(n_eta=7, n_phi=7, noise_mev=40.0, pileup_density=0.003),  # HAD2
    GridShape(n_eta=7, n_phi=7, noise_mev=50.0, pileup_density=0.001),  # HAD3
)

ATLAS_MEDIUM = EmMedium(z_eff=60.0, critical_energy_gev=0.011, sampling_term=0.10)

#: Molière radius in η-φ units at the EM calorimeter (~3 cm at r ≈ 1.5 m).
_MOLIERE_ETA = 0.02
#: Hadronic lateral profile (η-φ units): core, tail and core probability.
_HAD_CORE, _HAD_TAIL, _HAD_P_CORE = 0.02, 0.07, 0.55
#: Non-compensation: visible fraction of a hadron's energy, and the hadronic stochastic term.
_HAD_RESPONSE, _HAD_SAMPLING = 0.7, 0.5
#: MIP energy per layer (GeV) for a particle crossing the whole layer.
_MIP_GEV = np.array([0.01, 0.06, 0.20, 0.03, 0.5, 1.3, 0.6])
#: Interaction lengths of PS, EM1, EM2, EM3, HAD1, HAD2, HAD3 (after ~0.1 λ of material in front).
_LAMBDA = np.array([0.03, 0.15, 0.55, 0.1, 1.5, 4.1, 1.8])
_LAMBDA_FRONT = 0.1
#: Depth slices of the EM profile: (layer index or -1 for dead material, thickness in X0).
_EM_SLICES: tuple[tuple[int, float], ...] = (
    (0, 0.5),
    (1, 2.2),
    (1, 2.3),
    (2, 4.0),
    (2, 4.0),
    (2, 4.0),
    (2, 4.0),
    (3, 2.0),
    (4, 15.0),
    (5, 40.0),
    (6, 40.0),
)
_EM_SLICE_LAYER = np.array([layer for layer, _ in _EM_SLICES])
_SPOT_GEV_EM, _MAX_SPOTS_EM = 0.1, 60
_SPOT_GEV_HAD, _MAX_SPOTS_HAD = 0.25, 25
#: Energy of one pile-up hit, E_T in MeV (exponentially distributed).
_PILEUP_HIT_ET_MEV = 300.0


@dataclass(frozen=True)
class CalorimeterParticles:
    """Particles at the calorimeter face, flattened over candidates (``candidate`` says whose window)."""

    candidate: IntArray
    eta: FloatArray
    phi: FloatArray
    energy_gev: FloatArray
    kind: IntArray


def _dead_material_x0(abs_eta: FloatArray) -> FloatArray:
    """Radiation lengths in front of the presampler: grows with |η|, worst in the barrel-endcap crack."""
    crack = (abs_eta > 1.37) & (abs_eta < 1.54)
    return np.asarray(1.8 + 1.2 * abs_eta + 2.5 * crack)


def _wrap(dphi: FloatArray) -> FloatArray:
    return np.asarray((dphi + np.pi) % (2 * np.pi) - np.pi)


class _Readout:
    """Per-layer cell grids of a batch of candidates, centred on the cell containing each candidate."""

    def __init__(self, eta0: FloatArray, phi0: FloatArray) -> None:
        self.n = eta0.size
        self.centre_eta = np.stack(
            [(np.floor(eta0 / layer.deta) + 0.5) * layer.deta for layer in RING_LAYERS], axis=1
        )
        self.centre_phi = np.stack(
            [(np.floor(phi0 / layer.dphi) + 0.5) * layer.dphi for layer in RING_LAYERS], axis=1
        )
        self.flat = [np.zeros(self.n * g.n_eta * g.n_phi) for g in ATLAS_GRIDS]

    def half_width(self, layer: int) -> tuple[float, float]:
        grid, ring = ATLAS_GRIDS[layer], RING_LAYERS[layer]
        return (grid.n_eta / 2) * ring.deta, (grid.n_phi / 2) * ring.dphi

    def add(
        self, layer: IntArray, candidate: IntArray, eta: FloatArray, phi: FloatArray, mev: FloatArray
    ) -> None:
        for index, (grid, ring) in enumerate(zip(ATLAS_GRIDS, RING_LAYERS, strict=True)):
            mine = layer == index
            if not mine.any():
                continue
            cand = candidate[mine]
            i_eta = np.floor((eta[mine] - self.centre_eta[cand, index]) / ring.deta + 0.5).astype(np.int64)
            i_phi = np.floor(_wrap(phi[mine] - self.centre_phi[cand, index]) / ring.dphi + 0.5).astype(
                np.int64
            )
            i_eta += grid.n_eta // 2
            i_phi += grid.n_phi // 2
            inside = (i_eta >= 0) & (i_eta < grid.n_eta) & (i_phi >= 0) & (i_phi < grid.n_phi)
            cell = (cand[inside] * grid.n_eta + i_eta[inside]) * grid.n_phi + i_phi[inside]
            self.flat[index] += np.bincount(cell, weights=mev[mine][inside], minlength=self.flat[index].size)

    def grids(self) -> list[FloatArray]:
        return [
            flat.reshape(self.n, g.n_eta, g.n_phi) for flat, g in zip(self.flat, ATLAS_GRIDS, strict=True)
        ]


def _near_layer(
    readout: _Readout, particles: CalorimeterParticles, layer: int, margin: float
) -> npt.NDArray[np.bool_]:
    """Whether a particle can deposit inside the layer's window (saves spots that would fall outside)."""
    half_eta, half_phi = readout.half_width(layer)
    deta = np.abs(particles.eta - readout.centre_eta[particles.candidate, layer])
    dphi = np.abs(_wrap(particles.phi - readout.centre_phi[particles.candidate, layer]))
    return np.asarray((deta < half_eta + margin) & (dphi < half_phi + margin))


def _deposit_em(readout: _Readout, p: CalorimeterParticles, rng: np.random.Generator) -> None:
    if p.energy_gev.size == 0:
        return
    profiles = sample_em_profiles(p.energy_gev, ATLAS_MEDIUM, rng)
    thickness = np.array([t for _, t in _EM_SLICES])
    depth = _dead_material_x0(np.abs(p.eta))[:, None] + np.concatenate([[0.0], np.cumsum(thickness)])[None, :]
    bounds = np.concatenate([np.zeros((p.eta.size, 1)), depth], axis=1)
    fractions = slice_fractions(profiles, bounds)[:, 1:]  # the first slice is the dead material: lost
    near = np.stack(
        [_near_layer(readout, p, int(layer), 4 * _MOLIERE_ETA) for layer in _EM_SLICE_LAYER], axis=1
    ).astype(np.float64)
    centres = 0.5 * (bounds[:, 2:] + bounds[:, 1:-1])
    spots = spots_from_slices(
        p.energy_gev[:, None] * fractions * near,
        centres / profiles.t_max[:, None],
        p.energy_gev,
        medium=ATLAS_MEDIUM,
        spot_energy_gev=_SPOT_GEV_EM,
        max_spots_per_slice=_MAX_SPOTS_EM,
        rng=rng,
    )
    radius = spots.radius * _MOLIERE_ETA
    readout.add(
        _EM_SLICE_LAYER[spots.slice],
        p.candidate[spots.shower],
        p.eta[spots.shower] + radius * np.cos(spots.angle),
        p.phi[spots.shower] + radius * np.sin(spots.angle),
        1000.0 * spots.energy,
    )


def _deposit_hadrons(readout: _Readout, p: CalorimeterParticles, rng: np.random.Generator) -> None:
    n = p.energy_gev.size
    if n == 0:
        return
    edges = _LAMBDA_FRONT + np.concatenate([[0.0], np.cumsum(_LAMBDA)])
    start = rng.exponential(1.0, size=n)
    hadronic = p.kind == KIND_HADRON
    start[~hadronic] = np.inf  # muons never shower
    # MIP deposits in the layers crossed before the interaction.
    crossed = np.clip((start[:, None] - edges[None, :-1]) / _LAMBDA[None, :], 0.0, 1.0)
    mip = _MIP_GEV[None, :] * crossed
    mip = np.minimum(mip, p.energy_gev[:, None] / len(_LAMBDA))
    layers = np.tile(np.arange(len(_LAMBDA)), n)
    owners = np.repeat(np.arange(n), len(_LAMBDA))
    readout.add(layers, p.candidate[owners], p.eta[owners], p.phi[owners], 1000.0 * mip.ravel())
    # The hadronic shower: Gamma profile in λ after the interaction point, non-compensating response.
    showering = np.flatnonzero(hadronic & (start < edges[-1]))
    if showering.size == 0:
        return
    energy = np.maximum(p.energy_gev[showering] - mip[showering].sum(axis=1), 0.0)
    mean = _HAD_RESPONSE * energy
    visible = rng.gamma(np.maximum(mean, 1e-6) / _HAD_SAMPLING**2, _HAD_SAMPLING**2)
    depth = np.clip(edges[None, :] - start[showering, None], 0.0, None)
    fractions = np.diff(gammainc(2.0, 1.4 * depth), axis=1)
    sub = CalorimeterParticles(
        candidate=p.candidate[showering],
        eta=p.eta[showering],
        phi=p.phi[showering],
        energy_gev=visible,
        kind=p.kind[showering],
    )
    near = np.stack(
        [_near_layer(readout, sub, layer, 3 * _HAD_TAIL) for layer in range(len(_LAMBDA))], axis=1
    )
    layer_energy = visible[:, None] * fractions * near
    counts = np.clip(np.ceil(layer_energy / _SPOT_GEV_HAD), 0, _MAX_SPOTS_HAD).astype(np.int64)
    flat = np.repeat(np.arange(layer_energy.size), counts.ravel())
    shower, layer = flat // len(_LAMBDA), flat % len(_LAMBDA)
    shape = flat.shape
    radius = sample_radii(
        np.full(shape, _HAD_CORE), np.full(shape, _HAD_TAIL), np.full(shape, _HAD_P_CORE), rng
    )
    angle = rng.uniform(0.0, 2 * np.pi, size=flat.size)
    readout.add(
        layer,
        sub.candidate[shower],
        sub.eta[shower] + radius * np.cos(angle),
        sub.phi[shower] + radius * np.sin(angle),
        1000.0 * layer_energy.ravel()[flat] / counts.ravel()[flat],
    )


def _add_noise_and_pileup(
    grids: list[FloatArray], centre_eta: FloatArray, mu: FloatArray, rng: np.random.Generator
) -> None:
    for index, (grid, shape, ring) in enumerate(zip(grids, ATLAS_GRIDS, RING_LAYERS, strict=True)):
        area = ring.deta * ring.dphi / 0.01
        expected_hits = (mu * shape.pileup_density * area)[:, None, None] * np.ones(grid.shape)
        hits = rng.poisson(expected_hits)
        cell_eta = (
            centre_eta[:, index, None, None]
            + (np.arange(shape.n_eta) - shape.n_eta // 2)[None, :, None] * ring.deta
        )
        mean_hit = _PILEUP_HIT_ET_MEV * np.cosh(cell_eta)
        # Sum of k exponential hits is Gamma(k); the baseline correction removes the average.
        pileup = np.where(hits > 0, rng.gamma(np.maximum(hits, 1), 1.0) * mean_hit, 0.0)
        grid[...] += pileup - expected_hits * mean_hit + rng.normal(0.0, shape.noise_mev, size=grid.shape)


def simulate_candidates(
    eta0: FloatArray,
    phi0: FloatArray,
    particles: CalorimeterParticles,
    mu: FloatArray,
    rng: np.random.Generator,
) -> tuple[list[FloatArray], FloatArray]:
    """Cell grids (MeV) of every candidate at (``eta0``, ``phi0``) and the η of each layer's central cell."""
    readout = _Readout(np.asarray(eta0, dtype=np.float64), np.asarray(phi0, dtype=np.float64))
    em = particles.kind == KIND_EM

    def select(mask: npt.NDArray[np.bool_]) -> CalorimeterParticles:
        return CalorimeterParticles(
            candidate=particles.candidate[mask],
            eta=particles.eta[mask],
            phi=particles.phi[mask],
            energy_gev=particles.energy_gev[mask],
            kind=particles.kind[mask],
        )

    _deposit_em(readout, select(em), rng)
    _deposit_hadrons(readout, select(~em), rng)
    grids = readout.grids()
    _add_noise_and_pileup(grids, readout.centre_eta, np.asarray(mu, dtype=np.float64), rng)
    return grids, readout.centre_eta


#: Cluster calibration: median reconstructed/true E_T of single electrons (20k, seed 1) per |η| region
#: (dead material in front grows with |η|; the crack at 1.37-1.54 loses most).
_EM_SCALE_EDGES = np.array([0.8, 1.37, 1.54, 2.0])
_EM_SCALE = np.array([0.945, 0.923, 0.739, 0.906, 0.884])


def _em_scale(abs_eta: FloatArray) -> FloatArray:
    return np.asarray(_EM_SCALE[np.searchsorted(_EM_SCALE_EDGES, abs_eta, side="right")])


def _window_sum(
    grid: FloatArray, centre_eta: IntArray, centre_phi: IntArray, half_eta: int, half_phi: int
) -> FloatArray:
    n, n_eta, n_phi = grid.shape
    ie = centre_eta[:, None] + np.arange(-half_eta, half_eta + 1)[None, :]
    ip = centre_phi[:, None] + np.arange(-half_phi, half_phi + 1)[None, :]
    valid_e = (ie >= 0) & (ie < n_eta)
    valid_p = (ip >= 0) & (ip < n_phi)
    block = grid[
        np.arange(n)[:, None, None],
        np.clip(ie, 0, n_eta - 1)[:, :, None],
        np.clip(ip, 0, n_phi - 1)[:, None, :],
    ]
    return np.asarray((block * valid_e[:, :, None] * valid_p[:, None, :]).sum(axis=(1, 2)))


def candidate_observables(grids: list[FloatArray], centre_eta: FloatArray) -> dict[str, FloatArray]:
    """Cluster E_T (GeV) and the T2Calo shower shapes R_η, E_ratio, R_had of every candidate.

    Cluster: EM2 3x7 cells around the hottest EM2 cell of the seed window plus the matching PS, EM1 and EM3
    cells, as E_T. R_η = E(3x7)/E(7x7) in EM2; E_ratio = (E1 - E2)/(E1 + E2) of the two highest strip maxima
    in EM1; R_had = E_T in HAD1 (3x3 cells) / cluster E_T.
    """
    n = grids[0].shape[0]
    em2 = grids[2]
    ce, cp = em2.shape[1] // 2, em2.shape[2] // 2
    window = em2[:, ce - 2 : ce + 3, cp - 2 : cp + 3].reshape(n, -1)
    hottest = np.argmax(window, axis=1)
    seed_eta = ce - 2 + hottest // 5
    seed_phi = cp - 2 + hottest % 5
    e_3x7 = _window_sum(em2, seed_eta, seed_phi, 1, 3)
    e_7x7 = _window_sum(em2, seed_eta, seed_phi, 3, 3)
    # Other EM layers: the cells under the same 0.075 x 0.175 window (their grids share the candidate centre).
    offset = (seed_eta - ce) * RING_LAYERS[2].deta
    ps_eta = ATLAS_GRIDS[0].n_eta // 2 + np.rint(offset / RING_LAYERS[0].deta).astype(np.int64)
    em1_eta = ATLAS_GRIDS[1].n_eta // 2 + np.rint(offset / RING_LAYERS[1].deta).astype(np.int64)
    em3_eta = ATLAS_GRIDS[3].n_eta // 2 + np.rint(offset / RING_LAYERS[3].deta).astype(np.int64)
    centre_phi = np.full(n, ATLAS_GRIDS[0].n_phi // 2)
    e_ps = _window_sum(grids[0], ps_eta, centre_phi, 1, 0)
    e_em1 = _window_sum(grids[1], em1_eta, centre_phi, 12, 0)
    e_em3 = _window_sum(grids[3], em3_eta, seed_phi, 1, 3)
    cosh = np.cosh(centre_eta[:, 2])
    cluster_et = (e_ps + e_em1 + e_3x7 + e_em3) / cosh / 1000.0 / _em_scale(np.abs(centre_eta[:, 2]))
    strips = grids[1][:, :, ATLAS_GRIDS[1].n_phi // 2]
    mid = strips.shape[1] // 2
    strips = strips[:, mid - 20 : mid + 21]
    peak = np.zeros_like(strips, dtype=bool)
    peak[:, 1:-1] = (strips[:, 1:-1] > strips[:, :-2]) & (strips[:, 1:-1] >= strips[:, 2:])
    maxima = np.sort(np.where(peak, strips, 0.0), axis=1)
    first, second = maxima[:, -1], maxima[:, -2]
    e_ratio = np.where(first + second > 0, (first - second) / np.maximum(first + second, 1e-9), 0.0)
    had = _window_sum(
        grids[4], np.full(n, ATLAS_GRIDS[4].n_eta // 2), np.full(n, ATLAS_GRIDS[4].n_phi // 2), 1, 1
    )
    r_had = had / cosh / 1000.0 / np.maximum(cluster_et, 0.1)
    r_eta = e_3x7 / np.where(np.abs(e_7x7) > 1e-6, e_7x7, 1e-6)
    return {"et": cluster_et, "r_eta": r_eta, "e_ratio": e_ratio, "r_had": r_had}


def rings_and_observables(
    eta0: FloatArray,
    phi0: FloatArray,
    particles: CalorimeterParticles,
    mu: FloatArray,
    rng: np.random.Generator,
) -> dict[str, FloatArray]:
    """Simulate candidates and return their rings (MeV) and observables (see :func:`candidate_observables`)."""
    grids, centre_eta = simulate_candidates(eta0, phi0, particles, mu, rng)
    return {
        "rings": rings_from_grids(grids, centre_eta).astype(np.float64),
        **candidate_observables(grids, centre_eta),
    }
