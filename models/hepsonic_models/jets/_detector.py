"""A fast Delphes-like detector for the jet samples: tracks plus calorimeter towers ("energy flow").

Without a detector the jet mass and the N-subjettiness of Pythia's particles are unrealistically sharp, and a
mass + τ32 cut looks as good as a graph network. This module turns an event's visible final-state particles into
the objects a particle-flow reconstruction would hand to the jet finder, in the spirit of Delphes' ATLAS card
(the detector of the public top-tagging reference sample):

* **tracks**: charged particles with |η| < 2.5 and pT above a threshold, found with a fixed efficiency, their
  momentum scaled by a Gaussian pT resolution ``σ/pT = c ⊕ s·pT``;
* **ECAL towers** (Δη × Δφ = 0.025 × 2π/256): photons, and electrons without a track;
* **HCAL towers** (0.1 × 2π/64): neutral hadrons, and charged hadrons without a track (muons without a track
  are lost, as MIPs);
* each tower's summed energy is smeared once with ``σ/E = a/√E ⊕ b`` (log-normal, so never negative, mean
  kept) and dropped below its threshold; a tower is a massless four-vector at its centre.

Random numbers come from the generator the caller passes (one per chunk, seeded from the chunk's Pythia seed),
so a data set stays reproducible for its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Calorimeter", "DetectorSettings", "ParticleKind", "reconstruct"]

FloatArray = npt.NDArray[np.float64]


class ParticleKind:
    """The codes of the ``kind`` column handed to :func:`reconstruct`."""

    PHOTON = 0
    NEUTRAL_HADRON = 1
    ELECTRON = 2
    MUON = 3
    CHARGED_HADRON = 4


@dataclass(frozen=True)
class Calorimeter:
    """One calorimeter's towers: granularity, resolution σ(E)/E = stochastic/√E ⊕ constant, threshold [GeV]."""

    cell_eta: float
    cells_phi: int
    stochastic: float
    constant: float
    threshold: float


@dataclass(frozen=True, kw_only=True)
class DetectorSettings:
    """Acceptance, efficiency, granularity and resolution of the detector (written into the model card)."""

    eta_max: float = 2.5
    track_pt_min: float = 0.5
    track_efficiency: float = 0.95
    #: σ(pT)/pT = constant ⊕ slope · pT [GeV].
    track_resolution_constant: float = 0.01
    track_resolution_slope: float = 5e-4
    ecal_cell_eta: float = 0.025
    ecal_cells_phi: int = 256
    #: σ(E)/E = stochastic/√E ⊕ constant.
    ecal_stochastic: float = 0.10
    ecal_constant: float = 0.007
    ecal_threshold: float = 0.5
    hcal_cell_eta: float = 0.1
    hcal_cells_phi: int = 64
    hcal_stochastic: float = 0.50
    hcal_constant: float = 0.03
    hcal_threshold: float = 1.0

    @property
    def ecal(self) -> Calorimeter:
        """The ECAL's towers."""
        return Calorimeter(
            self.ecal_cell_eta,
            self.ecal_cells_phi,
            self.ecal_stochastic,
            self.ecal_constant,
            self.ecal_threshold,
        )

    @property
    def hcal(self) -> Calorimeter:
        """The HCAL's towers."""
        return Calorimeter(
            self.hcal_cell_eta,
            self.hcal_cells_phi,
            self.hcal_stochastic,
            self.hcal_constant,
            self.hcal_threshold,
        )


def _eta_phi(p4: FloatArray) -> tuple[FloatArray, FloatArray]:
    pt = np.hypot(p4[:, 0], p4[:, 1])
    return np.arcsinh(p4[:, 2] / np.maximum(pt, 1e-12)), np.arctan2(p4[:, 1], p4[:, 0])


def _towers(p4: FloatArray, eta_max: float, calorimeter: Calorimeter, rng: np.random.Generator) -> FloatArray:
    """Sum the deposits of ``p4`` per tower, smear each tower's energy, drop those under the threshold."""
    if len(p4) == 0:
        return np.zeros((0, 4))
    eta, phi = _eta_phi(p4)
    cells_eta = math.ceil(2 * eta_max / calorimeter.cell_eta)
    cells_phi = calorimeter.cells_phi
    i_eta = np.clip(((eta + eta_max) / calorimeter.cell_eta).astype(np.int64), 0, cells_eta - 1)
    cell_phi = 2 * math.pi / cells_phi
    i_phi = np.clip(((phi + math.pi) / cell_phi).astype(np.int64), 0, cells_phi - 1)
    keys, owner = np.unique(i_eta * cells_phi + i_phi, return_inverse=True)
    energy = np.bincount(owner, weights=p4[:, 3], minlength=len(keys))
    # Log-normal with the mean and width of the resolution: a smeared tower never goes negative.
    relative = np.hypot(calorimeter.stochastic / np.sqrt(energy), calorimeter.constant)
    width = np.sqrt(np.log1p(relative**2))
    energy = energy * np.exp(rng.standard_normal(len(keys)) * width - 0.5 * width**2)
    keep = energy > calorimeter.threshold
    tower_eta = (keys[keep] // cells_phi + 0.5) * calorimeter.cell_eta - eta_max
    tower_phi = (keys[keep] % cells_phi + 0.5) * cell_phi - math.pi
    energy = energy[keep]
    pt = energy / np.cosh(tower_eta)
    return np.stack([pt * np.cos(tower_phi), pt * np.sin(tower_phi), pt * np.sinh(tower_eta), energy], axis=1)


def reconstruct(
    p4: FloatArray, kind: npt.NDArray[np.int8], settings: DetectorSettings, rng: np.random.Generator
) -> FloatArray:
    """The energy-flow objects (n, 4: px, py, pz, E in GeV) of one event's visible final-state particles.

    ``p4`` holds the particles' four-momenta (n, 4), ``kind`` their :class:`ParticleKind` codes.
    """
    p4 = np.asarray(p4, dtype=np.float64).reshape(-1, 4)
    eta, _ = _eta_phi(p4)
    inside = np.abs(eta) < settings.eta_max
    p4, kind = p4[inside], np.asarray(kind)[inside]
    pt = np.hypot(p4[:, 0], p4[:, 1])
    charged = kind >= ParticleKind.ELECTRON
    tracked = charged & (pt > settings.track_pt_min) & (rng.random(len(p4)) < settings.track_efficiency)
    resolution = np.hypot(settings.track_resolution_constant, settings.track_resolution_slope * pt[tracked])
    tracks = (
        p4[tracked] * np.clip(1.0 + resolution * rng.standard_normal(resolution.size), 0.1, None)[:, None]
    )
    to_ecal = ~tracked & ((kind == ParticleKind.PHOTON) | (kind == ParticleKind.ELECTRON))
    to_hcal = ~tracked & ((kind == ParticleKind.NEUTRAL_HADRON) | (kind == ParticleKind.CHARGED_HADRON))
    ecal = _towers(p4[to_ecal], settings.eta_max, settings.ecal, rng)
    hcal = _towers(p4[to_hcal], settings.eta_max, settings.hcal, rng)
    return np.concatenate([tracks, ecal, hcal])
