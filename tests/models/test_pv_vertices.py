"""KDE builder and peak finder of the PV finder (hepsonic_client.physics.vertices): numpy only, fast."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hepsonic_client.physics.vertices import (
    BIN_WIDTH_MM,
    KDE_DEFINITION,
    N_BINS,
    Z_MAX_MM,
    Z_MIN_MM,
    PeakFinder,
    Tracks,
    VertexFit,
    bin_centers,
    build_kde,
    find_vertices,
    gaussian_cdf,
    measure_tracks,
    peak_candidates,
    toy_tracks,
    track_sigma_z,
)


def test_histogram_geometry() -> None:
    centers = bin_centers()
    assert centers.shape == (N_BINS,) == (4000,)
    assert pytest.approx(0.1) == BIN_WIDTH_MM
    assert centers[0] == pytest.approx(Z_MIN_MM + 0.05)
    assert centers[-1] == pytest.approx(Z_MAX_MM - 0.05)


def test_gaussian_cdf_matches_erf() -> None:
    x = np.linspace(-9, 9, 2001)
    expected = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(gaussian_cdf(x), expected, atol=2e-7)


def _central(z: list[float] | np.ndarray, sigma_ip: list[float] | np.ndarray) -> Tracks:
    """Tracks at 90 degrees through the beam line: sigma_z = sigma_ip, no beam-spot term."""
    n = len(z)
    return Tracks(z, np.zeros(n), np.zeros(n), np.zeros(n), sigma_ip)


def test_kde_integrates_to_track_count_and_peaks_at_the_track() -> None:
    rng = np.random.default_rng(3)
    tracks = _central(rng.uniform(0, 200, 50), rng.uniform(0.02, 2.0, 50))
    kde = build_kde(tracks)
    assert kde.shape == (2, N_BINS)
    assert kde.dtype == np.float32
    # Each kernel has unit integral in channel 0 (tracks per mm x mm).
    assert kde[0].sum() * BIN_WIDTH_MM == pytest.approx(50, rel=1e-5)
    # A single narrow track: its whole mass lands in the one or two bins around it, in both channels (for a
    # track through the beam line the grid's centre reproduces channel 0's kernel).
    one = build_kde(_central([42.03], [0.01]))
    for channel in one:
        assert abs(bin_centers()[int(np.argmax(channel))] - 42.03) <= BIN_WIDTH_MM
    assert one[0].sum() * BIN_WIDTH_MM == pytest.approx(1.0, abs=1e-5)
    assert one[1].max() == pytest.approx(one[0].max(), rel=1e-5)
    assert KDE_DEFINITION


def test_the_3d_channel_undoes_a_vertex_off_the_beam_line() -> None:
    """Forward tracks from a vertex 0.165 mm off the beam line: their z of closest approach to the beam line
    spreads over millimetres (channel 0), while the 3D channel finds where they meet, as sharp as their own
    resolution allows and at the vertex's z. (The vertex sits on a point of the channel's grid, at 3 beam-spot
    sigma; between grid points the peak moves by up to ~0.2 mm for tracks this forward.)"""
    rng = np.random.default_rng(5)
    n = 40
    pt = np.full(n, 2.0)
    phi = rng.uniform(-np.pi, np.pi, n)
    pz = pt * np.sinh(rng.uniform(3.0, 4.5, n))
    vertex = (np.full(n, 0.165), np.zeros(n), np.full(n, 50.0))
    tracks = measure_tracks(vertex, (pt * np.cos(phi), pt * np.sin(phi), pz), np.full(n, 0.005), rng)
    kde = build_kde(tracks)
    centers = bin_centers()

    def width(channel: np.ndarray) -> float:
        above = centers[channel >= channel.max() / 2]
        return float(above.max() - above.min())

    assert abs(centers[int(np.argmax(kde[1]))] - 50.0) <= BIN_WIDTH_MM
    assert width(kde[1]) < width(kde[0]) / 4
    assert np.ptp(tracks.z) > 2.0  # the shift the 3D channel removes


def test_measured_tracks_are_the_lines_closest_approach_to_the_beam_line() -> None:
    rng = np.random.default_rng(2)
    n = 20
    momentum = (rng.normal(0, 1, n), rng.normal(0, 1, n), rng.uniform(-30, 30, n))
    vertex = (rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0, 100, n))
    exact = measure_tracks(vertex, momentum, np.full(n, 1e-12), rng)
    # Brute force: the point of each line x(t) = vertex + t p nearest to the z axis.
    px, py, pz = momentum
    t = -(vertex[0] * px + vertex[1] * py) / (px**2 + py**2)
    x, y, z = vertex[0] + t * px, vertex[1] + t * py, vertex[2] + t * pz
    np.testing.assert_allclose(exact.z, z, atol=1e-9)
    np.testing.assert_allclose(np.abs(exact.d0), np.hypot(x, y), atol=1e-9)
    np.testing.assert_allclose(exact.d0 * -np.sin(exact.phi), x, atol=1e-9)
    np.testing.assert_allclose(exact.cot_theta, pz / np.hypot(px, py))
    # The smearing: d0 by sigma_ip, z by sigma_ip / sin(theta).
    many = 20_000
    forward = (np.full(many, 0.5), np.zeros(many), np.full(many, 5.0))  # cot(theta) = 10
    smeared = measure_tracks((np.zeros(many),) * 3, forward, np.full(many, 0.02), rng)
    assert smeared.d0.std() == pytest.approx(0.02, rel=0.03)
    assert smeared.z.std() == pytest.approx(0.02 * math.sqrt(101), rel=0.03)


def test_toy_tracks_come_from_their_vertices() -> None:
    tracks = toy_tracks([10.0, 80.0], [5, 7], np.random.default_rng(1))
    assert len(tracks) == 12
    assert len(tracks[tracks.z > 45]) == 7
    eta = np.arcsinh(tracks.cot_theta)
    assert ((eta > 2) & (eta < 5)).all()
    # Over many vertices in the beam spot, sigma_z() (resolution and beam spot) is each track's z error.
    many = toy_tracks(np.full(4000, 100.0), np.full(4000, 5), np.random.default_rng(2))
    assert np.std((many.z - 100.0) / many.sigma_z()) == pytest.approx(1.0, abs=0.05)


def test_kde_clips_tracks_at_the_histogram_edges() -> None:
    kde = build_kde(_central([Z_MIN_MM, Z_MAX_MM + 100.0], [1.0, 1.0]))
    # Half of the first track is inside, the second is entirely outside.
    assert kde[0].sum() * BIN_WIDTH_MM == pytest.approx(0.5, abs=1e-4)
    assert build_kde(_central([], [])).sum() == 0.0


@pytest.mark.parametrize(
    ("z", "sigma_ip", "message"),
    [
        ([1.0, 2.0], [0.1], "one value per track"),
        ([1.0], [0.0], "sigma_ip must be > 0"),
        ([float("nan")], [0.1], "z must be finite"),
    ],
)
def test_bad_tracks_are_refused_with_the_field_named(
    z: list[float], sigma_ip: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Tracks(z, np.zeros(len(z)), np.zeros(len(z)), np.zeros(len(z)), sigma_ip)


def _bumps(z_list: list[float], sigma: float, height: float = 1.0) -> np.ndarray:
    centers = bin_centers()
    values = np.zeros(N_BINS)
    for z in z_list:
        values = np.maximum(values, height * np.exp(-0.5 * ((centers - z) / sigma) ** 2))
    return values


def test_peak_finder_finds_known_bumps_at_the_right_z() -> None:
    truth = [-50.03, 12.34, 100.0, 100.8, 250.55]
    found = find_vertices(_bumps(truth, 0.1), threshold=0.5)
    assert found.size == len(truth)
    # Bins cut by the threshold bias the weighted mean by at most half a bin (well inside 0.5 mm).
    np.testing.assert_allclose(found, truth, atol=0.05)
    assert np.all(np.diff(found) > 0)


def test_peak_finder_cuts_width_integral_and_threshold() -> None:
    values = _bumps([10.0], 0.1) + _bumps([60.05], 0.02) + _bumps([150.0], 0.3, height=0.45)
    # The 0.02 mm bump is one bin wide, the 0.45-high bump is below the 0.5 threshold.
    np.testing.assert_allclose(find_vertices(values, threshold=0.5, min_width=2), [10.0], atol=0.02)
    assert find_vertices(values, threshold=0.5).size == 2
    assert find_vertices(values, threshold=0.3).size == 3
    # The integral cut (value x mm) removes the narrow bump: one bin of 1.0 x 0.1 mm.
    _, _, _, integrals = peak_candidates(values, 0.3)
    np.testing.assert_allclose(integrals[1], 0.1, rtol=1e-6)
    assert integrals[0] > 0.12
    assert integrals[2] > 0.12
    integral_cut = find_vertices(values, threshold=0.3, integral_threshold=0.12)
    np.testing.assert_allclose(integral_cut, [10.0, 150.0], atol=0.05)
    assert PeakFinder(threshold=0.3, integral_threshold=0.12)(values).tolist() == integral_cut.tolist()


def test_peak_finder_settings_round_trip_as_published_json() -> None:
    finder = PeakFinder(threshold=0.54, integral_threshold=0.01, min_width=2)
    assert PeakFinder.from_json(finder.to_json()) == finder
    assert PeakFinder.from_json('{"threshold": 0.3}') == PeakFinder(threshold=0.3)
    for bad in ("not json", "[1, 2]", '{"min_width": 2}', '{"threshold": "high"}'):
        with pytest.raises(ValueError, match="pv_finder peak-finder settings: expected a JSON object"):
            PeakFinder.from_json(bad)


def test_peak_finder_ignores_nan_and_rejects_bad_input() -> None:
    values = _bumps([20.0], 0.1)
    values[2000:2100] = np.nan
    np.testing.assert_allclose(find_vertices(values, threshold=0.5), [20.0], atol=0.02)
    with pytest.raises(ValueError, match=r"expected values of shape \(4000,\)"):
        find_vertices(np.zeros(100), threshold=0.5)
    with pytest.raises(ValueError, match="min_width"):
        find_vertices(values, threshold=0.5, min_width=0)


def test_peak_candidates_never_join_events() -> None:
    values = np.zeros((2, N_BINS))
    values[0, -3:] = 1.0  # a run that ends at the last bin of event 0 ...
    values[1, :3] = 1.0  # ... and one that starts at the first bin of event 1
    event, z, width, integral = peak_candidates(values, 0.5)
    assert event.tolist() == [0, 1]
    assert width.tolist() == [3, 3]
    np.testing.assert_allclose(z, [bin_centers()[-2], bin_centers()[1]])
    np.testing.assert_allclose(integral, [0.3, 0.3])


def test_kde_of_a_vertex_is_found_by_the_peak_finder() -> None:
    rng = np.random.default_rng(11)
    vertices = [30.0, 75.5, 140.2]
    kde = build_kde(toy_tracks(vertices, [40, 40, 40], rng))
    for channel, threshold in ((kde[0], 3.0), (kde[1], 2.0)):
        found = find_vertices(channel, threshold=threshold, integral_threshold=3.0, min_width=2)
        np.testing.assert_allclose(found, vertices, atol=0.4)


def test_track_sigma_z_adds_the_beam_spot_for_forward_tracks() -> None:
    # Perpendicular to the beam a vertex's transverse offset does not move the track's z: resolution only.
    assert track_sigma_z(0.02, 1.0, 0.055) == pytest.approx(0.02)
    # At eta 4 (1/sin = cosh, 1/tan = sinh) the beam spot's 55 um become 1.5 mm and dominate a precise track.
    eta = 4.0
    sigma = track_sigma_z(0.012, 1 / math.cosh(eta), 0.055)
    assert sigma == pytest.approx(math.hypot(0.012 * math.cosh(eta), 0.055 * math.sinh(eta)))
    assert sigma > 4 * 0.012 * math.cosh(eta)
    np.testing.assert_allclose(track_sigma_z([0.02, 0.02], [0.5, 0.5], 0.0), [0.04, 0.04])
    with pytest.raises(ValueError, match="sin_theta"):
        track_sigma_z(0.02, 0.0, 0.055)


def test_public_api_is_curated() -> None:
    from hepsonic_client.physics import vertices  # noqa: PLC0415

    assert set(vertices.__all__) == {
        "BEAM_XY_SIGMA_MM",
        "BIN_WIDTH_MM",
        "KDE_DEFINITION",
        "N_BINS",
        "PEAK_FINDER_PARAMETER",
        "VERTEX_FIT_PARAMETER",
        "Z_MAX_MM",
        "Z_MIN_MM",
        "FittedVertices",
        "PeakFinder",
        "Tracks",
        "VertexFit",
        "bin_centers",
        "build_kde",
        "find_vertices",
        "gaussian_cdf",
        "measure_tracks",
        "peak_candidates",
        "toy_tracks",
        "track_sigma_z",
    }
    assert all(hasattr(vertices, name) for name in vertices.__all__)


def test_vertex_fit_measures_z_better_than_the_tracks_at_the_beam_line() -> None:
    rng = np.random.default_rng(5)
    fit = VertexFit()
    fitted, beam_line = [], []
    for _ in range(200):
        tracks = toy_tracks([100.0], [30], rng)
        result = fit(tracks, [100.4])  # a seed 0.4 mm off, as a peak finder may give
        fitted.append(result.z[0] - 100.0)
        weight = 1.0 / tracks.sigma_z() ** 2  # what a finder without the 3D fit does
        beam_line.append(np.average(tracks.z, weights=weight) - 100.0)
        assert result.n_tracks[0] == pytest.approx(30, abs=3)  # every track belongs to the vertex
    # Fitting the vertex's (x, y) removes the beam spot's blur of the forward tracks' z (about 25% here).
    assert np.median(np.abs(fitted)) < 0.85 * np.median(np.abs(beam_line))
    assert np.median(np.abs(fitted)) < 0.1


def test_vertex_fit_finds_the_transverse_position_and_separates_close_vertices() -> None:
    rng = np.random.default_rng(6)
    # Two vertices 1.5 mm apart, one well off the beam line; 40 tracks each.
    z_true, x_true = np.array([50.0, 51.5]), np.array([0.1, -0.05])
    counts = np.array([40, 40])
    n = int(counts.sum())
    pt = 0.5 + rng.exponential(1.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    pz = pt * np.sinh(rng.uniform(2.0, 4.0, n))
    vertex = (np.repeat(x_true, counts), np.zeros(n), np.repeat(z_true, counts))
    tracks = measure_tracks(vertex, (pt * np.cos(phi), pt * np.sin(phi), pz), 0.012 + 0.023 / pt, rng)
    result = VertexFit()(tracks, [50.3, 51.2])
    np.testing.assert_allclose(result.z, z_true, atol=0.1)
    np.testing.assert_allclose(result.x, x_true, atol=0.03)
    np.testing.assert_allclose(result.n_tracks, counts, atol=3)  # the vertices share the tracks out
    assert (result.sigma_z < 0.1).all()


def test_vertex_fit_edge_cases_and_settings() -> None:
    tracks = toy_tracks([100.0], [6], np.random.default_rng(7))
    lonely = VertexFit()(tracks, [200.0])  # no track near: the vertex stays at its seed, with no tracks
    assert lonely.z[0] == pytest.approx(200.0, abs=1e-3)
    assert lonely.n_tracks[0] < 1e-3
    assert VertexFit()(tracks, []).z.size == 0
    empty = VertexFit()(tracks[np.zeros(len(tracks), dtype=bool)], [10.0])
    assert empty.z.tolist() == [10.0]
    assert np.isinf(empty.sigma_z).all()
    with pytest.raises(ValueError, match="seed z positions must be finite"):
        VertexFit()(tracks, [np.nan])
    settings = VertexFit(chi2_cut=9.0, iterations=3)
    assert VertexFit.from_json(settings.to_json()) == settings
    with pytest.raises(ValueError, match="iterations >= 1"):
        VertexFit(iterations=0)
    with pytest.raises(ValueError, match="expected a JSON object"):
        VertexFit.from_json("[1, 2]")
