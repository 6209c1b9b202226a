"""Primary-vertex finding around the ``pv_finder`` model: the KDE it reads and the peak finder for its output.

A reconstruction job gives each track the z uncertainty of :func:`track_sigma_z`, turns its tracks into the
model input with :func:`build_kde`, sends it to
``pv_finder`` and turns the returned ``pv_prob`` into a list of vertex positions with :func:`find_vertices`.
The generator and the trainer in ``hepsonic_models.pv`` call the same two functions, so served and offline
inputs can never drift apart.

Histogram coordinates (fixed by the served model): z in [-100, 300) mm in 4000 bins of 100 um.

* ``kde[0]``: sum over tracks of a normalised Gaussian centred at the track's z of closest approach to the
  beam line with the track's sigma_z, integrated over each bin (tracks per mm, so a bin never misses a
  track narrower than the bin);
* ``kde[1]``: the sum over tracks of the *square* of each track's bin probability, divided by the bin width
  (pv-finder's "KDE-B"). A track contributes in proportion to its precision, so this channel tells the net
  whether a bump of ``kde[0]`` comes from a few precise tracks or from many vague ones.

:data:`KDE_DEFINITION` names this definition; caches of computed KDEs key on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "BIN_WIDTH_MM",
    "KDE_DEFINITION",
    "N_BINS",
    "PEAK_FINDER_PARAMETER",
    "Z_MAX_MM",
    "Z_MIN_MM",
    "PeakFinder",
    "bin_centers",
    "build_kde",
    "find_vertices",
    "gaussian_cdf",
    "peak_candidates",
    "track_sigma_z",
]

Z_MIN_MM = -100.0
Z_MAX_MM = 300.0
N_BINS = 4000
BIN_WIDTH_MM = (Z_MAX_MM - Z_MIN_MM) / N_BINS
#: Name of the channels' definition; change it whenever :func:`build_kde` changes, so cached inputs are remade.
KDE_DEFINITION = "kde-a-b2"
#: The served pv_finder publishes its operating point (:meth:`PeakFinder.to_json`) as the model-config
#: parameter ``peak_finder/<version>``: the cuts chosen for that version's network on validation crossings.
PEAK_FINDER_PARAMETER = "peak_finder"
#: Kernels are cut at this many sigma (the mass beyond is < 6e-7).
_KERNEL_RANGE_SIGMA = 5.0
_MIN_SIGMA_MM = 1e-4

FloatArray = npt.NDArray[np.float64]


def bin_centers() -> FloatArray:
    """z (mm) of the centre of every KDE / ``pv_prob`` bin."""
    return Z_MIN_MM + (np.arange(N_BINS, dtype=np.float64) + 0.5) * BIN_WIDTH_MM


def gaussian_cdf(x: npt.ArrayLike) -> FloatArray:
    """Standard normal CDF, numpy only (erfc with the Numerical Recipes Chebyshev fit, |error| < 1.2e-7)."""
    z = np.abs(np.asarray(x, dtype=np.float64)) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    erfc = t * np.exp(poly)
    upper_tail = 0.5 * erfc
    return np.where(np.asarray(x) >= 0, 1.0 - upper_tail, upper_tail)


def _binned_gaussians(z: FloatArray, sigma: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per bin, the sum over unit Gaussians (z_i, sigma_i) of their probability in the bin, and the sum of its
    square, both divided by the bin width."""
    kde = np.zeros((2, N_BINS), dtype=np.float64)
    if z.size == 0:
        return kde[0], kde[1]
    # Edge indices [first, last] of each track's window, clipped to the histogram.
    first = np.floor((z - _KERNEL_RANGE_SIGMA * sigma - Z_MIN_MM) / BIN_WIDTH_MM)
    last = np.ceil((z + _KERNEL_RANGE_SIGMA * sigma - Z_MIN_MM) / BIN_WIDTH_MM)
    first = np.clip(first, 0, N_BINS).astype(np.int64)
    last = np.clip(last, 0, N_BINS).astype(np.int64)
    n_edges = last - first + 1
    keep = last > first  # windows entirely outside the histogram add nothing
    if not keep.any():
        return kde[0], kde[1]
    z, sigma, first, n_edges = z[keep], sigma[keep], first[keep], n_edges[keep]
    track = np.repeat(np.arange(z.size), n_edges)
    starts = np.cumsum(n_edges) - n_edges
    edge = first[track] + (np.arange(track.size) - starts[track])
    cdf = gaussian_cdf((Z_MIN_MM + edge * BIN_WIDTH_MM - z[track]) / sigma[track])
    same_track = track[1:] == track[:-1]
    probability = (cdf[1:] - cdf[:-1])[same_track]
    bins = edge[:-1][same_track]
    np.add.at(kde[0], bins, probability)
    np.add.at(kde[1], bins, probability**2)
    kde /= BIN_WIDTH_MM
    return kde[0], kde[1]


def track_sigma_z(
    sigma_ip_mm: npt.ArrayLike, sin_theta: npt.ArrayLike, beam_xy_sigma_mm: float
) -> FloatArray:
    """How well a track's z of closest approach to the beam line measures its vertex's z (mm): its ``sigma_z``.

    Two terms in quadrature: the track's own resolution, ``sigma_IP / sin(theta)``, and the beam spot's
    transverse size. A vertex a distance r0 off the beam line shifts the track's z of closest approach by
    r0 cos(dphi) / tan(theta), whose spread is ``beam_xy_sigma / tan(theta)``: mm for forward tracks, whatever
    their pT. Leaving that term out makes precise forward tracks look far more precise than they are; the
    served ``pv_finder`` was trained with it.
    """
    sin = np.asarray(sin_theta, dtype=np.float64)
    if ((sin <= 0) | (sin > 1)).any():
        raise ValueError("pv_finder track_sigma_z: sin_theta must lie in (0, 1]")
    tan_squared = sin**2 / np.maximum(1.0 - sin**2, 1e-300)
    ip = np.asarray(sigma_ip_mm, dtype=np.float64)
    return np.asarray(np.sqrt(ip**2 / sin**2 + beam_xy_sigma_mm**2 / tan_squared))


def build_kde(track_z: npt.ArrayLike, track_sigma_z: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The ``pv_finder`` input ``kde`` FP32 [2, 4000] of one bunch crossing.

    ``track_z``: each track's z of closest approach to the beam line (mm, detector coordinates shifted so
    the histogram covers [-100, 300) mm); ``track_sigma_z``: its uncertainty (mm, > 0; :func:`track_sigma_z`,
    as the served model was trained). Tracks outside the
    histogram contribute only the part of their kernel inside it.
    """
    z = np.asarray(track_z, dtype=np.float64).ravel()
    sigma = np.asarray(track_sigma_z, dtype=np.float64).ravel()
    if z.shape != sigma.shape:
        raise ValueError(
            f"pv_finder KDE: track_z has {z.size} entries but track_sigma_z has {sigma.size}; "
            "expected one sigma_z per track"
        )
    if not (np.isfinite(z).all() and np.isfinite(sigma).all()):
        raise ValueError("pv_finder KDE: track_z and track_sigma_z must be finite")
    if (sigma <= 0).any():
        raise ValueError(f"pv_finder KDE: track_sigma_z must be > 0, got minimum {sigma.min():.3g} mm")
    sigma = np.maximum(sigma, _MIN_SIGMA_MM)
    density, precision = _binned_gaussians(z, sigma)
    return np.stack([density, precision]).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class PeakFinder:
    """Settings of :func:`find_vertices` (the pv-finder peak finder).

    A peak is a run of consecutive bins with value >= ``threshold``; it is kept when it spans at least
    ``min_width`` bins and its integral (sum of values x bin width, in value*mm) is >= ``integral_threshold``;
    its position is the value-weighted mean z of its bins.
    """

    threshold: float
    integral_threshold: float = 0.0
    min_width: int = 1

    def to_json(self) -> str:
        """The settings as a JSON object (what a served version publishes)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PeakFinder:
        """Settings from :meth:`to_json`'s text; ``ValueError`` names what is wrong."""
        try:
            stored = json.loads(text)
            return cls(
                threshold=float(stored["threshold"]),
                integral_threshold=float(stored.get("integral_threshold", 0.0)),
                min_width=int(stored.get("min_width", 1)),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            msg = f"pv_finder peak-finder settings: expected a JSON object with 'threshold', got {text!r}"
            raise ValueError(msg) from exc

    def __call__(self, values: npt.ArrayLike) -> FloatArray:
        """Vertex z positions (mm, ascending) found in one event's ``values`` [4000]."""
        return find_vertices(
            values,
            threshold=self.threshold,
            integral_threshold=self.integral_threshold,
            min_width=self.min_width,
        )


def peak_candidates(
    values: npt.ArrayLike, threshold: float
) -> tuple[npt.NDArray[np.int64], FloatArray, npt.NDArray[np.int64], FloatArray]:
    """Every run of bins >= ``threshold`` in ``values`` [..., 4000], before the width and integral cuts.

    Returns ``(event, z, width, integral)``, one entry per run: the flat index of the event (row of
    ``values`` reshaped to [-1, 4000]), the value-weighted mean z (mm), the width (bins) and the integral
    (sum of values x bin width). :func:`find_vertices` applies the cuts; scanning the cuts over many events
    starts from here.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != N_BINS:
        raise ValueError(
            f"pv_finder peak finder: expected values of shape (..., {N_BINS}), got {array.shape}"
        )
    rows = array.reshape(-1, N_BINS)
    above = rows >= threshold  # NaN compares False
    # One zero column after every event so that no run crosses from one event into the next.
    flat_above = np.concatenate([above, np.zeros((rows.shape[0], 1), dtype=bool)], axis=1).ravel()
    inside = np.concatenate([np.where(above, rows, 0.0), np.zeros((rows.shape[0], 1))], axis=1).ravel()
    centers = np.concatenate([bin_centers(), [0.0]])
    edges = np.diff(np.concatenate(([0], flat_above.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    cum_weight = np.concatenate(([0.0], np.cumsum(inside)))
    cum_moment = np.concatenate(([0.0], np.cumsum(inside * np.tile(centers, rows.shape[0]))))
    weight = cum_weight[ends] - cum_weight[starts]
    safe_weight = np.where(weight > 0, weight, 1.0)
    z = np.where(weight > 0, (cum_moment[ends] - cum_moment[starts]) / safe_weight, np.nan)
    event = starts // (N_BINS + 1)
    return event.astype(np.int64), z, (ends - starts).astype(np.int64), weight * BIN_WIDTH_MM


def find_vertices(
    values: npt.ArrayLike, *, threshold: float, integral_threshold: float = 0.0, min_width: int = 1
) -> FloatArray:
    """Vertex z positions (mm, ascending) in one event's ``pv_prob`` (or raw KDE channel) [4000].

    See :class:`PeakFinder` for the meaning of the settings. NaN bins count as below threshold.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (N_BINS,):
        raise ValueError(f"pv_finder peak finder: expected values of shape ({N_BINS},), got {array.shape}")
    if min_width < 1:
        raise ValueError(f"pv_finder peak finder: min_width must be >= 1 bin, got {min_width}")
    _, z, width, integral = peak_candidates(array, threshold)
    keep = (width >= min_width) & (integral >= integral_threshold) & np.isfinite(z)
    found: FloatArray = z[keep]
    return found
