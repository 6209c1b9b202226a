"""The tagger input builder shared by the trainer and reconstruction jobs (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from hepsonic_client.physics import jets
from hepsonic_client.physics.jets import (
    FEATURE_NAMES,
    FEATURE_STANDARDISATION,
    MAX_PARTICLES,
    MassDecorrelatedCut,
    build_tagger_inputs,
    jet_mass,
    mass_decorrelated_cuts_from_json,
    mass_decorrelated_cuts_to_json,
    pad_constituents,
    sum_constituents,
)


def _massless(pt: float, eta: float, phi: float) -> list[float]:
    return [pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)]


def test_public_api() -> None:
    assert set(jets.__all__) == {
        "FEATURE_NAMES",
        "FEATURE_STANDARDISATION",
        "MASS_DECORRELATED_PARAMETER",
        "MASS_GRID_GEV",
        "MAX_PARTICLES",
        "MassDecorrelatedCut",
        "build_tagger_inputs",
        "jet_mass",
        "mass_decorrelated_cuts_from_json",
        "mass_decorrelated_cuts_to_json",
        "pad_constituents",
        "sum_constituents",
    }


def test_features_are_standardised_sorted_and_padded() -> None:
    # Unsorted constituents around phi = pi to exercise the wrap-around of dphi.
    particles = [_massless(10.0, 0.1, 3.1), _massless(100.0, 0.0, -3.1), _massless(1.0, -0.2, 3.0)]
    inputs = build_tagger_inputs(np.asarray([particles]))
    assert {key: value.shape for key, value in inputs.items()} == {
        "pf_points": (1, 2, MAX_PARTICLES),
        "pf_features": (1, 7, MAX_PARTICLES),
        "pf_vectors": (1, 4, MAX_PARTICLES),
        "pf_mask": (1, 1, MAX_PARTICLES),
    }
    assert all(value.dtype == np.float32 for value in inputs.values())
    np.testing.assert_array_equal(inputs["pf_mask"][0, 0, :4], [1, 1, 1, 0])
    for key in inputs:
        assert not inputs[key][..., 3:].any(), f"{key} padding is not zero"
    # Sorted by pT: the 100 GeV particle first.
    np.testing.assert_allclose(inputs["pf_vectors"][0, :, 0], particles[1], rtol=1e-6)

    jet = np.sum(particles, axis=0)
    jet_pt, jet_e = np.hypot(jet[0], jet[1]), jet[3]
    jet_eta, jet_phi = np.arcsinh(jet[2] / jet_pt), np.arctan2(jet[1], jet[0])
    features = dict(zip(FEATURE_NAMES, inputs["pf_features"][0, :, 1], strict=True))
    deta, dphi = 0.1 - jet_eta, (3.1 - jet_phi + np.pi) % (2 * np.pi) - np.pi
    assert abs(dphi) < 0.2  # wrapped, not ~2 pi
    expected = {
        "deta": deta,
        "dphi": dphi,
        "log_pt": (np.log(10.0) - 1.7) * 0.7,
        "log_e": (np.log(10.0 * np.cosh(0.1)) - 2.0) * 0.7,
        "log_pt_rel": (np.log(10.0 / jet_pt) + 4.7) * 0.7,
        "log_e_rel": (np.log(10.0 * np.cosh(0.1) / jet_e) + 4.7) * 0.7,
        "delta_r": (np.hypot(deta, dphi) - 0.2) * 4.0,
    }
    for name, value in expected.items():
        assert features[name] == pytest.approx(value, abs=1e-5), name
    np.testing.assert_allclose(inputs["pf_points"][0, :, 1], [deta, dphi], atol=1e-6)
    assert set(FEATURE_STANDARDISATION) == set(FEATURE_NAMES) - {"deta", "dphi"}


def test_standardised_features_are_clipped_and_truncated_to_64() -> None:
    # 80 particles, the softest far below the standardisation range.
    pts = np.geomspace(500.0, 1e-6, 80)
    particles = np.asarray([[_massless(pt, 0.01 * i, 0.0) for i, pt in enumerate(pts)]])
    inputs = build_tagger_inputs(particles)
    assert inputs["pf_mask"].sum() == MAX_PARTICLES
    assert np.abs(inputs["pf_features"][:, 2:]).max() <= 5.0
    assert inputs["pf_features"][0, 2].min() == pytest.approx(-5.0)


def test_explicit_jet_axis_and_ragged_input() -> None:
    flat = np.asarray([_massless(50.0, 0.0, 0.0), _massless(20.0, 0.1, 0.1), _massless(30.0, -1.0, 1.0)])
    padded = pad_constituents(flat, [2, 1])
    assert padded.shape == (2, 2, 4)
    assert not padded[1, 1].any()
    jet_p4 = np.asarray([_massless(200.0, 0.0, 0.0), _massless(30.0, -1.0, 1.0)])
    inputs = build_tagger_inputs(padded, jet_p4=jet_p4)
    log_pt_rel = inputs["pf_features"][0, 4, 0] / 0.7 - 4.7
    assert log_pt_rel == pytest.approx(np.log(50.0 / 200.0), abs=1e-5)


@pytest.mark.parametrize(
    ("constituents", "kwargs", "message"),
    [
        (np.zeros((2, 5, 3)), {}, r"\(n_jets, n_particles, 4\)"),
        (np.full((1, 2, 4), np.nan), {}, "NaN"),
        (np.zeros((1, 2, 4)), {}, "no constituent"),
        (np.ones((2, 2, 4)), {"jet_p4": np.ones((3, 4))}, "jet_p4"),
    ],
)
def test_bad_input_is_named(constituents: np.ndarray, kwargs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_tagger_inputs(constituents, **kwargs)


def test_pad_constituents_checks_counts() -> None:
    with pytest.raises(ValueError, match="sum to 3"):
        pad_constituents(np.ones((3, 4)), [1, 1])


def _mass_correlated_qcd(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """QCD-like jets whose P(top) grows towards the top mass, as a top tagger's does."""
    rng = np.random.default_rng(seed)
    mass = rng.gamma(3.0, 25.0, n)
    logit = -6.0 + 4.0 * np.exp(-0.5 * ((mass - 172.0) / 25.0) ** 2) + rng.normal(0.0, 1.0, n)
    return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32), mass


def test_jet_four_momentum_sums_the_real_constituents() -> None:
    constituents = np.array(
        [[[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 2.0], [9.0, 9.0, 9.0, 0.0]]]
    )  # last: padding
    np.testing.assert_allclose(sum_constituents(constituents), [[2.0, 3.0, 4.0, 6.0]])
    with pytest.raises(ValueError, match=r"expected \(n_jets, n_particles, 4\)"):
        sum_constituents(np.ones((2, 4)))


def test_jet_mass_of_known_four_vectors() -> None:
    np.testing.assert_allclose(jet_mass([[0.0, 0.0, 0.0, 91.2], [30.0, 40.0, 0.0, 50.0]]), [91.2, 0.0])
    np.testing.assert_allclose(jet_mass([[3.0, 0.0, 4.0, 13.0]]), [12.0])
    assert jet_mass([[1.0, 0.0, 0.0, 0.999999]])[0] == 0.0  # rounding below the light cone: 0, not NaN
    with pytest.raises(ValueError, match=r"shape \(n_jets, 4\)"):
        jet_mass(np.ones((3, 3)))


def test_mass_decorrelated_cut_passes_qcd_at_the_same_rate_at_every_mass() -> None:
    fit_score, fit_mass = _mass_correlated_qcd(10_000, seed=1)  # as many as the taggers' validation QCD jets
    score, mass = _mass_correlated_qcd(40_000, seed=2)  # independent jets: the cut is not tested on its fit
    cut = MassDecorrelatedCut.fit(fit_score, fit_mass, 0.05)
    passed = cut.passes(score, mass)
    assert passed.mean() == pytest.approx(0.05, abs=0.005)
    fixed = score >= np.quantile(score, 0.95)  # a fixed cut with the same overall rate
    bins = ((20.0, 60.0), (60.0, 100.0), (100.0, 140.0), (140.0, 200.0))
    rates = {b: passed[(mass >= b[0]) & (mass < b[1])].mean() for b in bins}
    fixed_rates = {b: fixed[(mass >= b[0]) & (mass < b[1])].mean() for b in bins}
    # The fixed cut takes mostly jets near the top mass; the decorrelated one about 5% everywhere.
    assert fixed_rates[bins[-1]] > 5 * fixed_rates[bins[0]]
    for b, rate in rates.items():
        assert rate == pytest.approx(0.05, rel=0.3), b
    # The threshold follows the mass: highest near the top mass, where QCD looks most top-like.
    assert cut.threshold([172.0])[0] > cut.threshold([40.0])[0]
    # Saturated probabilities (exactly 0 or 1 in float32) are handled, not NaN.
    assert cut.passes(np.array([1.0, 0.0], dtype=np.float32), np.array([172.0, 172.0])).tolist() == [
        True,
        False,
    ]


def test_mass_decorrelated_cuts_round_trip_as_published_json() -> None:
    score, mass = _mass_correlated_qcd(5_000, seed=3)
    cuts = (MassDecorrelatedCut.fit(score, mass, 0.01), MassDecorrelatedCut.fit(score, mass, 0.05))
    again = mass_decorrelated_cuts_from_json(mass_decorrelated_cuts_to_json(cuts))
    assert [c.qcd_efficiency for c in again] == [0.01, 0.05]
    for before, after in zip(cuts, again, strict=True):
        assert after.mass_gev == before.mass_gev
        np.testing.assert_allclose(after.logit_threshold, before.logit_threshold, atol=1e-5)
    with pytest.raises(ValueError, match="expected a JSON list of objects with 'qcd_efficiency'"):
        mass_decorrelated_cuts_from_json('{"threshold": 0.5}')
    with pytest.raises(ValueError, match="expected a JSON list"):
        mass_decorrelated_cuts_from_json('[{"qcd_efficiency": 2, "mass_gev": [0], "logit_threshold": [0]}]')


def test_mass_decorrelated_cut_refuses_bad_settings_and_inputs() -> None:
    with pytest.raises(ValueError, match=r"qcd_efficiency must be in \(0, 1\)"):
        MassDecorrelatedCut(qcd_efficiency=0.0, mass_gev=(0.0,), logit_threshold=(0.0,))
    with pytest.raises(ValueError, match="same non-zero length"):
        MassDecorrelatedCut(qcd_efficiency=0.1, mass_gev=(0.0, 5.0), logit_threshold=(0.0,))
    with pytest.raises(ValueError, match="mass_gev must increase"):
        MassDecorrelatedCut(qcd_efficiency=0.1, mass_gev=(5.0, 0.0), logit_threshold=(0.0, 0.0))
    with pytest.raises(ValueError, match="as many P\\(top\\) as masses"):
        MassDecorrelatedCut.fit([0.5, 0.6], [100.0], 0.1)
    cut = MassDecorrelatedCut(qcd_efficiency=0.1, mass_gev=(0.0, 300.0), logit_threshold=(0.0, 0.0))
    with pytest.raises(ValueError, match="same shape"):
        cut.passes([0.5, 0.6], [100.0])
