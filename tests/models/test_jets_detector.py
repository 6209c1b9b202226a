"""The Delphes-like detector of the jet samples: tracks, towers, thresholds and resolutions."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from hepsonic_models.jets._detector import DetectorSettings, ParticleKind, reconstruct

PERFECT_TRACKING = DetectorSettings(track_efficiency=1.0)


def _p4(pt: float, eta: float, phi: float, mass: float = 0.0) -> list[float]:
    px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
    return [px, py, pz, math.sqrt(px * px + py * py + pz * pz + mass * mass)]


def _reco(
    particles: list[list[float]],
    kinds: list[int],
    settings: DetectorSettings = PERFECT_TRACKING,
    seed: int = 1,
) -> npt.NDArray[np.float64]:
    return reconstruct(
        np.array(particles, dtype=np.float64), np.array(kinds, np.int8), settings, np.random.default_rng(seed)
    )


def _eta_phi(objects: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    pt = np.hypot(objects[:, 0], objects[:, 1])
    return np.arcsinh(objects[:, 2] / pt), np.arctan2(objects[:, 1], objects[:, 0])


def test_a_track_keeps_its_direction_and_mass_and_is_smeared_by_the_resolution() -> None:
    pion = _p4(50.0, 0.7, 1.2, mass=0.1396)
    smeared = np.concatenate([_reco([pion], [ParticleKind.CHARGED_HADRON], seed=s) for s in range(2000)])
    assert smeared.shape == (2000, 4)
    eta, phi = _eta_phi(smeared)
    np.testing.assert_allclose(eta, 0.7, atol=1e-9)
    np.testing.assert_allclose(phi, 1.2, atol=1e-9)
    pt = np.hypot(smeared[:, 0], smeared[:, 1])
    expected = math.hypot(0.01, 5e-4 * 50.0)  # σ(pT)/pT at 50 GeV
    assert pt.mean() == pytest.approx(50.0, rel=3 * expected / math.sqrt(2000))
    assert (pt.std() / 50.0) == pytest.approx(expected, rel=0.1)


def test_photons_in_one_ecal_tower_merge_and_neighbouring_towers_stay_apart() -> None:
    ecal_phi = 2 * math.pi / 256
    same = _reco(
        [_p4(20.0, 0.3001, 0.5 * ecal_phi), _p4(10.0, 0.3002, 0.6 * ecal_phi)],
        [ParticleKind.PHOTON, ParticleKind.PHOTON],
    )
    assert len(same) == 1
    eta, phi = _eta_phi(same)
    assert eta[0] == pytest.approx(0.3125)  # the tower's centre, not a photon's direction
    assert phi[0] == pytest.approx(0.5 * ecal_phi)
    assert same[0, 3] == pytest.approx(sum(_p4(p, 0.3, 0)[3] for p in (20.0, 10.0)), rel=0.1)
    assert same[0, 3] ** 2 - (same[0, :3] ** 2).sum() == pytest.approx(0.0, abs=1e-6)  # massless
    apart = _reco(
        [_p4(20.0, 0.3001, 0.5 * ecal_phi), _p4(10.0, 0.3001, 1.5 * ecal_phi)],
        [ParticleKind.PHOTON, ParticleKind.PHOTON],
    )
    assert len(apart) == 2


def test_thresholds_efficiency_and_acceptance() -> None:
    soft_neutron = _p4(0.5, 0.0, 0.0, mass=0.94)  # E ~ 1.07 GeV, smeared around the 1 GeV HCAL threshold
    hard_neutron = _p4(30.0, 0.0, 0.0, mass=0.94)
    forward_photon = _p4(30.0, 2.7, 0.0)  # outside |η| < 2.5
    soft_pion = _p4(0.3, 0.0, 2.0, mass=0.14)  # no track, and below the HCAL threshold
    untracked_muon = _p4(0.4, 0.0, -1.0, mass=0.106)
    objects = _reco(
        [hard_neutron, forward_photon, soft_pion, untracked_muon],
        [ParticleKind.NEUTRAL_HADRON, ParticleKind.PHOTON, ParticleKind.CHARGED_HADRON, ParticleKind.MUON],
    )
    assert len(objects) == 1  # only the hard neutron's HCAL tower
    assert objects[0, 3] == pytest.approx(hard_neutron[3], rel=0.4)
    kept = [
        len(_reco([soft_neutron], [ParticleKind.NEUTRAL_HADRON], seed=s)) for s in range(400)
    ]  # the smeared energy crosses the threshold in some events, not in others
    assert 0 < sum(kept) < 400

    # Lost tracks come back as (massless) HCAL towers; tracks keep the pion mass.
    lossy = DetectorSettings(track_efficiency=0.8)
    pions = [_p4(5.0, -2.0 + 0.25 * i, -3.0 + 0.3 * i, mass=0.14) for i in range(16)]
    tracked, total = [], []
    for seed in range(100):
        objects = _reco(pions, [ParticleKind.CHARGED_HADRON] * 16, lossy, seed=seed)
        mass2 = objects[:, 3] ** 2 - (objects[:, :3] ** 2).sum(axis=1)
        tracked.append(int((mass2 > 0.01).sum()))
        total.append(len(objects))
    assert np.mean(tracked) == pytest.approx(0.8 * 16, abs=0.5)
    assert set(total) == {16}


def test_hcal_resolution_and_energy_scale() -> None:
    neutron = _p4(100.0, 0.0, 0.0)
    energies = np.array([_reco([neutron], [ParticleKind.NEUTRAL_HADRON], seed=s)[0, 3] for s in range(3000)])
    expected = math.hypot(0.5 / math.sqrt(100.0), 0.03)
    assert energies.mean() == pytest.approx(100.0, rel=3 * expected / math.sqrt(3000))
    assert energies.std() / 100.0 == pytest.approx(expected, rel=0.1)
    assert (energies > 0).all()


def test_reconstruction_is_reproducible_for_a_seed() -> None:
    rng = np.random.default_rng(5)
    particles = [_p4(float(pt), float(eta), float(phi)) for pt, eta, phi in rng.uniform(1, 3, (50, 3))]
    kinds = list(rng.integers(0, 5, 50))
    first = _reco(particles, kinds, DetectorSettings(), seed=9)
    second = _reco(particles, kinds, DetectorSettings(), seed=9)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, _reco(particles, kinds, DetectorSettings(), seed=10))
