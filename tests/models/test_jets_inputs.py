"""The tagger input builder shared by the trainer and reconstruction jobs (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from hepsonic_client.physics import jets
from hepsonic_client.physics.jets import (
    FEATURE_NAMES,
    FEATURE_STANDARDISATION,
    MAX_PARTICLES,
    build_tagger_inputs,
    pad_constituents,
)


def _massless(pt: float, eta: float, phi: float) -> list[float]:
    return [pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)]


def test_public_api() -> None:
    assert set(jets.__all__) == {
        "FEATURE_NAMES",
        "FEATURE_STANDARDISATION",
        "MAX_PARTICLES",
        "build_tagger_inputs",
        "pad_constituents",
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
