"""Scoring (pv-finder definitions), targets and the network's shape: no Pythia, no training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepsonic_client.physics.vertices import N_BINS, VertexFit, bin_centers, toy_tracks
from hepsonic_models.pv import (
    CollisionSample,
    GeneratorSettings,
    PVUNet,
    SeedFit,
    Truth,
    choose_finder,
    ideal_vertex_efficiency,
    make_targets,
    match_vertices,
    reconstruct_tracks,
    scan_peak_finder,
)


def _truth(events: list[list[tuple[float, int]]]) -> Truth:
    z = np.array([pv[0] for event in events for pv in event], dtype=np.float64)
    n = np.array([pv[1] for event in events for pv in event], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum([len(event) for event in events]))).astype(np.int64)
    return Truth(z, n, offsets)


def test_match_vertices_counts_found_false_duplicates_and_masked() -> None:
    truth = _truth([[(10.0, 20), (50.0, 3), (80.0, 6)], [(10.2, 9)]])
    event = np.array([0, 0, 0, 0, 0, 1])
    z = np.array([10.1, 10.3, 50.2, 120.0, 79.4, 10.2])
    result = match_vertices(event, z, truth)
    # Counted PVs: 10.0 (found, 10.1 wins over 10.3), 80.0 (79.4 is 0.6 mm away: missed), 10.2 in event 1.
    assert (result.n_true, result.n_found) == (3, 2)
    # False: the duplicate at 10.3, 120.0 (no PV) and 79.4 (too far). 50.2 sits on a 3-track PV: not counted.
    assert result.n_false == 3
    assert result.n_misplaced == 1  # 79.4: a PV found 0.6 mm off, not a fake peak like 120.0
    assert result.fp_per_event == pytest.approx(1.5)
    assert result.efficiency == pytest.approx(2 / 3)
    np.testing.assert_allclose(sorted(result.dz), [0.0, 0.1], atol=1e-9)
    assert result.pv_found.tolist() == [True, False, False, True]


def test_events_do_not_match_across_each_other() -> None:
    truth = _truth([[(10.0, 10)], [(200.0, 10)]])
    # A vertex at z=10.0 but in event 1 must not find event 0's PV.
    result = match_vertices(np.array([1]), np.array([10.0]), truth)
    assert (result.n_found, result.n_false) == (0, 1)


def test_scan_peak_finder_on_perfect_and_noisy_outputs() -> None:
    truth = _truth([[(10.0, 10), (150.0, 10)], [(-20.0, 10)]])
    centers = bin_centers()
    values = np.zeros((2, N_BINS), dtype=np.float32)
    values[0] = np.exp(-0.5 * ((centers - 10.0) / 0.1) ** 2) + np.exp(-0.5 * ((centers - 150.0) / 0.1) ** 2)
    values[1] = np.exp(-0.5 * ((centers + 20.0) / 0.1) ** 2) + 0.3 * np.exp(
        -0.5 * ((centers - 90.0) / 0.1) ** 2
    )
    grid = scan_peak_finder(values, truth, [0.2, 0.5], [0.0], [1])
    assert grid.shape == (2, 1, 1, 2)
    np.testing.assert_allclose(grid[0, 0, 0], [1.0, 0.5])  # the 0.3 bump is one FP in two events
    np.testing.assert_allclose(grid[1, 0, 0], [1.0, 0.0])
    # A refinement of the peaks is scored instead of the peaks: moved 0.6 mm, none is found.
    moved = scan_peak_finder(values, truth, [0.2, 0.5], [0.0], [1], refine=lambda event, z: z + 0.6)
    np.testing.assert_allclose(moved[:, 0, 0, 0], [0.0, 0.0])


def test_choose_finder_keeps_a_counting_error_away_from_the_budget() -> None:
    # 100 events, one true PV each at 0 mm; a fake bump at 100 mm in the first k events.
    centers = bin_centers()
    truth = _truth([[(0.0, 10)] for _ in range(100)])
    values = np.tile(np.exp(-0.5 * (centers / 0.1) ** 2), (100, 1)).astype(np.float32)
    values[:10] += 0.4 * np.exp(-0.5 * ((centers - 100.0) / 0.1) ** 2)  # 0.1 FP/event below 0.4
    values[90:] *= 0.4  # ... and 10% of the PVs only found below 0.4
    choice = choose_finder(values, truth, [0.3, 0.45], [0.0], [1], fp_budget=0.1)
    # Threshold 0.3 finds every PV at 0.1 FP/event: on the budget's nose, within its counting error of
    # +-0.03. The margin takes the threshold without the fakes.
    assert choice.finder.threshold == 0.45
    assert choice.val_efficiency == pytest.approx(0.9)
    assert choice.val_fp_per_event == 0.0
    assert choose_finder(values, truth, [0.3, 0.45], [0.0], [1], fp_budget=0.14).finder.threshold == 0.3


def test_seed_fit_fits_each_crossing_once_per_seed_set() -> None:
    rng = np.random.default_rng(2)
    crossings = [toy_tracks([20.0, 60.0], [25, 25], rng), toy_tracks([-30.0], [25], rng)]
    calls: list[int] = []

    def tracks(i: int):
        calls.append(i)
        return crossings[i]

    refine = SeedFit(tracks, VertexFit())
    event = np.array([0, 0, 1])
    seeds = np.array([20.4, 59.7, -30.3])
    fitted = refine(event, seeds)
    np.testing.assert_allclose(fitted, [20.0, 60.0, -30.0], atol=0.15)
    np.testing.assert_array_equal(refine(event, seeds), fitted)
    assert calls == [0, 1]  # the second call came from the cache
    assert refine(np.array([], dtype=np.int64), np.array([])).size == 0


def test_targets_are_bumps_at_counted_pvs_and_mask_low_track_pvs() -> None:
    truth = _truth([[(10.0, 10), (60.0, 2)]])
    target, weight = make_targets(truth, sigma_mm=0.1, min_tracks=5, mask_radius_mm=0.5)
    centers = bin_centers()
    assert target.shape == weight.shape == (1, N_BINS)
    assert target.max() == pytest.approx(np.exp(-0.5 * 0.5**2), rel=1e-4)  # 10.0 lies on a bin edge
    assert abs(centers[int(np.argmax(target[0]))] - 10.0) < 0.1
    near_low = np.abs(centers - 60.0) < 0.5
    assert np.all(weight[0, near_low] == 0.0)
    assert np.all(target[0, near_low] == 0.0)
    assert np.all(weight[0, ~near_low] == 1.0)


def test_unet_shape_and_size() -> None:
    model = PVUNet().eval()
    n_parameters = sum(p.numel() for p in model.parameters())
    assert 180_000 < n_parameters < 230_000  # MODELS.md: ~203k; never a 4000x4000 dense layer
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    with torch.no_grad():
        out = model(torch.rand(3, 2, N_BINS) * 50)
    assert out.shape == (3, N_BINS)
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0


def _collisions(n_collisions: int, tracks: int, pt: float, eta: float) -> CollisionSample:
    rng = np.random.default_rng(5)
    phi = rng.uniform(0, 2 * np.pi, n_collisions * tracks)
    px, py = pt * np.cos(phi), pt * np.sin(phi)
    pz = np.full(phi.size, pt * np.sinh(eta))
    offsets = np.arange(0, n_collisions * tracks + 1, tracks, dtype=np.int64)
    return CollisionSample(px.astype(np.float32), py.astype(np.float32), pz.astype(np.float32), offsets)


def test_reconstructed_tracks_follow_the_resolution_model() -> None:
    settings = GeneratorSettings()
    collisions = _collisions(2000, 10, pt=0.5, eta=3.0)
    rng = np.random.default_rng(1)
    # Vertices spread over the beam spot, as in the crossings.
    pv_x, pv_y = rng.normal(0, settings.beam_xy_sigma_mm, (2, 2000))
    pv_of_track, tracks = reconstruct_tracks(settings, collisions, pv_x, pv_y, np.full(2000, 50.0), rng)
    sigma_ip = 0.012 + 0.023 / 0.5
    resolution = sigma_ip * np.cosh(3.0)  # sigma_IP / sin(theta), 1/sin(theta) = cosh(eta)
    beam_spot = 0.055 * np.sinh(3.0)  # sigma_xy / tan(theta)
    np.testing.assert_allclose(tracks.sigma_ip, sigma_ip, rtol=1e-6)
    np.testing.assert_allclose(tracks.sigma_z(), np.hypot(resolution, beam_spot), rtol=1e-4)
    assert 0.96 < pv_of_track.size / 20_000 < 0.98  # 97% track efficiency
    pull = (tracks.z - 50.0) / tracks.sigma_z()
    assert abs(pull.mean()) < 0.05
    # With the beam-spot term, sigma_z is the tracks' true spread about their vertex; without, an underestimate.
    assert 0.95 < pull.std() < 1.05
    assert ((tracks.z - 50.0) / tracks.sigma_z(0.0)).std() > 1.3
    # Across the track, d0 is the vertex's distance from the beam line (55 um spread) plus sigma_IP.
    assert tracks.d0.std() == pytest.approx(np.hypot(0.055, sigma_ip), rel=0.05)


def test_ideal_vertex_efficiency_tracks_the_resolution() -> None:
    settings = GeneratorSettings()
    precise = ideal_vertex_efficiency(settings, _collisions(300, 20, pt=5.0, eta=2.2), seed=1)
    poor = ideal_vertex_efficiency(settings, _collisions(300, 5, pt=0.2, eta=4.5), seed=1)
    assert precise.efficiency > 0.99
    assert precise.median_dz_mm < 0.05
    assert poor.efficiency < 0.5
    # Forward tracks from a wide beam spot: the vertex's transverse offset shifts each track's z by
    # r0 cos(dphi) / tan(theta), mm at eta 4; knowing the transverse position removes that.
    wide = GeneratorSettings(beam_xy_sigma_mm=0.2)
    forward = _collisions(300, 20, pt=5.0, eta=4.0)
    at_beam_line = ideal_vertex_efficiency(wide, forward, seed=1)
    at_vertex = ideal_vertex_efficiency(wide, forward, seed=1, transverse_known=True)
    assert at_beam_line.efficiency < 0.9
    assert at_vertex.efficiency > 0.99
    # A 3D vertex fit of each vertex's own tracks finds that position from the tracks themselves (when the
    # blur is small enough for its seed, the tracks' mean z, to lie within the fit's reach: here 1.5 mm).
    beam = GeneratorSettings()
    very_forward = _collisions(300, 20, pt=5.0, eta=4.5)
    fitted = ideal_vertex_efficiency(beam, very_forward, seed=1, fit=VertexFit())
    assert ideal_vertex_efficiency(beam, very_forward, seed=1).efficiency < 0.8
    assert fitted.efficiency > 0.95


def test_ideal_vertex_efficiency_at_the_fp_budget_drops_the_worst_measured() -> None:
    precise, poor = _collisions(300, 20, pt=5.0, eta=2.2), _collisions(300, 5, pt=0.2, eta=4.5)
    mixed = CollisionSample(
        np.concatenate([precise.px, poor.px]),
        np.concatenate([precise.py, poor.py]),
        np.concatenate([precise.pz, poor.pz]),
        np.concatenate([precise.offsets, precise.offsets[-1] + poor.offsets[1:]]),
    )
    settings = GeneratorSettings()  # 600 collisions at 7.6 per crossing: 0.1 FP/event allows ~8 misplaced
    ceiling = ideal_vertex_efficiency(settings, mixed, seed=1)
    # The poor vertices land beyond 0.5 mm so often that keeping them all breaks the budget: the precise half
    # and a few of the poor ones stay.
    assert 0.5 <= ceiling.efficiency_at_budget < ceiling.efficiency
    assert ceiling.efficiency_at_budget < 0.5 + 30 / 600
    unlimited = ideal_vertex_efficiency(settings, mixed, seed=1, fp_budget=1e9)
    assert unlimited.efficiency_at_budget == pytest.approx(ceiling.efficiency)
