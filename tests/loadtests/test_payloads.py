"""Payloads: every model's inputs match the served contract, come from the physics helpers, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from hepsonic_models.specs import SPECS
from loadtests.payloads import MODEL_INPUTS, RECO_EVENT_MIX, PayloadPool, make_payload, payload_source


@pytest.mark.parametrize("model", sorted(SPECS))
def test_payload_matches_the_served_contract(model: str) -> None:
    payload = make_payload(model, 3, seed=1)
    spec = SPECS[model]
    assert sorted(payload) == sorted(t.name for t in spec.inputs)
    for tensor in spec.inputs:
        array = payload[tensor.name]
        assert array.shape == (3, *tensor.dims), (model, tensor.name)
        assert array.dtype == np.float32
        assert array.flags.c_contiguous
        assert np.isfinite(array).all()
    assert payload_source(model) == "physics helpers"
    assert tuple(payload) == MODEL_INPUTS[model]


def test_payloads_are_physical() -> None:
    jets = make_payload("particlenet_lite", 16, seed=2)
    real = jets["pf_mask"][:, 0, :].sum(axis=1)
    assert (real >= 20).all()
    assert (real <= 60).all()
    assert np.abs(jets["pf_points"]).max() < 2.0  # constituents within the jet's neighbourhood
    electrons = make_payload("ringer", 32, seed=3)
    assert (electrons["rings"] >= 0).all()
    assert electrons["rings"].sum(axis=1).min() > 0
    assert ((electrons["et"] >= 4) & (electrons["et"] <= 100)).all()
    kde = make_payload("pv_finder", 2, seed=4)["kde"]
    assert (kde >= 0).all()
    assert kde[:, 0].sum() > 0
    showers = make_payload("calo_gan", 8, seed=5)
    assert ((showers["energy"] >= 1) & (showers["energy"] <= 100)).all()


def test_payloads_are_reproducible_and_pools_cycle() -> None:
    first = make_payload("particlenet_lite", 2, seed=7)
    again = make_payload("particlenet_lite", 2, seed=7)
    np.testing.assert_array_equal(first["pf_features"], again["pf_features"])
    pool = PayloadPool("calo_gan", 4, size=2)
    a, b, c = pool.next(), pool.next(), pool.next()
    assert a is c
    assert a is not b


def test_bad_requests_get_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"batch_size for 'ringer' must be >= 1, got 0"):
        make_payload("ringer", 0)
    with pytest.raises(ValueError, match=r"unknown model 'nope'"):
        make_payload("nope", 1)


def test_event_mix_names_served_models() -> None:
    assert set(RECO_EVENT_MIX) <= set(SPECS)
    assert RECO_EVENT_MIX["particlenet_lite"].objects_per_event == pytest.approx(4.0)
    assert RECO_EVENT_MIX["calo_gan"].objects_per_event == pytest.approx(2.0)
