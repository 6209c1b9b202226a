"""Tagger metrics and the mass + tau32 baseline on synthetic jets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from hepsonic_models.jets._evaluate import (
    DECORRELATED_QCD_EFFICIENCIES,
    MassTau32Baseline,
    evaluate_decorrelated,
    fit_decorrelated_cuts,
    fit_mass_tau32_baseline,
    jensen_shannon,
    sculpting_jsd,
    summarise_roc,
)


def test_roc_summary_of_a_known_score() -> None:
    labels = np.array([1] * 10 + [0] * 1000, dtype=np.int8)
    # Background scores 0.000 ... 0.999; every signal jet above all but 4 background jets.
    score = np.concatenate([np.full(10, 0.9955), np.arange(1000) / 1000])
    summary = summarise_roc(labels, score)
    assert summary.n_signal == 10
    assert summary.n_background == 1000
    assert summary.auc == pytest.approx(0.996)
    assert summary.rejection_at_30 == pytest.approx(1000 / 4)


def test_rejection_is_infinite_with_a_lower_bound_when_nothing_passes() -> None:
    labels = np.array([1, 1, 0, 0, 0], dtype=np.int8)
    summary = summarise_roc(labels, [0.9, 0.8, 0.1, 0.2, 0.3])
    assert summary.auc == 1.0
    assert np.isinf(summary.rejection_at_30)
    assert summary.rejection_lower_bound == 3


def test_baseline_window_is_fitted_around_the_top_mass() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    labels = np.repeat(np.array([1, 0], dtype=np.int8), n)
    mass = np.concatenate([rng.normal(172.0, 12.0, n), rng.exponential(60.0, n)]).astype(np.float32)
    tau2 = np.ones(2 * n, dtype=np.float32)
    tau3 = np.concatenate([rng.uniform(0.2, 0.7, n), rng.uniform(0.4, 1.0, n)]).astype(np.float32)
    tau = np.stack([np.ones(2 * n), tau2, tau3], axis=1).astype(np.float32)
    baseline = fit_mass_tau32_baseline(labels, mass, tau)
    assert baseline.mass_low <= 160
    assert baseline.mass_high >= 185
    score = baseline.score(mass, tau3)
    assert summarise_roc(labels, score).auc > 0.8
    outside = MassTau32Baseline(0.0, 1.0).score([172.0], [0.1])
    assert outside.tolist() == [-10.0]


def test_jensen_shannon_bounds() -> None:
    assert jensen_shannon([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert np.isnan(jensen_shannon([0, 0], [1, 1]))


def _tagged_jets(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top jets near 172 GeV with high scores; QCD jets whose score rises towards the top mass."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.5).astype(np.int8)
    mass = np.where(labels == 1, rng.normal(172.0, 15.0, n), rng.gamma(3.0, 25.0, n))
    near_top = np.exp(-0.5 * ((mass - 172.0) / 25.0) ** 2)
    logit = np.where(labels == 1, 1.0, -5.0 + 4.0 * near_top) + rng.normal(0.0, 1.5, n)
    return labels, (1.0 / (1.0 + np.exp(-logit))).astype(np.float32), mass


def test_decorrelated_cuts_stop_the_sculpting_a_fixed_cut_causes() -> None:
    fit_labels, fit_score, fit_mass = _tagged_jets(20_000, seed=4)
    labels, score, mass = _tagged_jets(60_000, seed=5)
    cuts = fit_decorrelated_cuts(fit_labels, fit_score, fit_mass)
    assert [c.qcd_efficiency for c in cuts] == list(DECORRELATED_QCD_EFFICIENCIES)
    point = evaluate_decorrelated(cuts[-1], labels, score, mass)  # 5% of QCD
    assert point.background_efficiency == pytest.approx(0.05, abs=0.01)
    assert point.n_background_pass == round(point.background_efficiency * (labels == 0).sum())
    assert point.signal_efficiency > 0.3  # still a tagger
    # A fixed cut letting as many QCD jets through sculpts the spectrum; the decorrelated one stays near
    # what a random subset of that size shows.
    qcd = labels == 0
    fixed = score[qcd] >= np.quantile(score[qcd], 1 - point.background_efficiency)
    assert sculpting_jsd(mass[qcd], fixed) > 5 * point.jsd
    assert point.jsd < 3 * point.jsd_random + 0.01
    assert 0 < point.jsd_random < 0.05
