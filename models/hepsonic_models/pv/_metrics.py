"""Scoring found vertices against the truth, with the pv-finder definitions.

* A true PV counts (the efficiency's denominator) when it has >= ``min_tracks`` (5) reconstructed tracks.
* Every found vertex is assigned to its nearest true PV within ``max_dz`` (0.5 mm). A counted PV is found when
  at least one vertex is assigned to it (the closest one gives its dz); further vertices assigned to it are
  false positives (duplicates). Vertices assigned to a PV with fewer tracks are neither found nor false (a
  finder may or may not see such a PV). Vertices with no true PV within ``max_dz`` are false positives.
* False positives are counted per event (bunch crossing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hepsonic_client.physics.vertices import peak_candidates

__all__ = ["FP_BUDGET", "MatchResult", "Refine", "Truth", "match_vertices", "scan_peak_finder"]

#: What becomes of found vertices before they are scored: ``(crossing index, z) -> z``, per vertex (a vertex fit).
Refine = Callable[[npt.NDArray[np.int64], npt.NDArray[np.float64]], npt.NDArray[np.float64]]

#: The operating point the target is set at (false positives per event).
FP_BUDGET = 0.1

#: Events are laid side by side on one axis this far apart (mm), more than the histogram's span.
_EVENT_SPACING_MM = 1000.0


@dataclass(frozen=True)
class Truth:
    """True vertices of a set of events."""

    pv_z: npt.NDArray[np.float64]
    pv_ntracks: npt.NDArray[np.int64]
    #: Vertices of event i are [pv_offsets[i], pv_offsets[i+1]).
    pv_offsets: npt.NDArray[np.int64]

    @property
    def n_events(self) -> int:
        return int(self.pv_offsets.size - 1)

    def select(self, start: int, stop: int) -> Truth:
        """The truth of events [start, stop)."""
        lo, hi = self.pv_offsets[start], self.pv_offsets[stop]
        return Truth(self.pv_z[lo:hi], self.pv_ntracks[lo:hi], self.pv_offsets[start : stop + 1] - lo)


@dataclass(frozen=True)
class MatchResult:
    """Counts over a set of events."""

    n_events: int
    n_true: int
    n_found: int
    n_false: int
    #: found z - true z (mm) of every found PV.
    dz: npt.NDArray[np.float64]
    #: Per true PV (all of them, in truth order): whether it was found.
    pv_found: npt.NDArray[np.bool_]
    #: False positives with no true PV within ``max_dz`` but one within twice that: vertices found with a
    #: z error just too large, rather than fake peaks.
    n_misplaced: int = 0

    @property
    def efficiency(self) -> float:
        return self.n_found / self.n_true if self.n_true else float("nan")

    @property
    def fp_per_event(self) -> float:
        return self.n_false / self.n_events if self.n_events else float("nan")


def match_vertices(
    event: npt.NDArray[np.int64],
    z: npt.NDArray[np.float64],
    truth: Truth,
    *,
    max_dz: float = 0.5,
    min_tracks: int = 5,
) -> MatchResult:
    """Score found vertices (``event`` index and ``z`` of each) against ``truth`` (see the module docstring)."""
    n_events = truth.n_events
    pv_event = np.repeat(np.arange(n_events), np.diff(truth.pv_offsets))
    true_pos = truth.pv_z + pv_event * _EVENT_SPACING_MM
    order = np.argsort(true_pos, kind="stable")
    true_sorted = true_pos[order]
    counted = truth.pv_ntracks >= min_tracks
    n_true = int(counted.sum())
    found_pos = z + event * _EVENT_SPACING_MM
    if true_sorted.size == 0:
        return MatchResult(n_events, n_true, 0, int(z.size), np.empty(0), np.zeros(0, dtype=bool))
    right = np.clip(np.searchsorted(true_sorted, found_pos), 0, true_sorted.size - 1)
    left = np.clip(right - 1, 0, true_sorted.size - 1)
    take_left = np.abs(found_pos - true_sorted[left]) < np.abs(found_pos - true_sorted[right])
    nearest_sorted = np.where(take_left, left, right)
    distance = found_pos - true_sorted[nearest_sorted]
    nearest = order[nearest_sorted]
    assigned = np.abs(distance) < max_dz
    to_counted = assigned & counted[nearest]
    # The closest vertex assigned to each counted PV finds it; the rest are duplicates.
    candidates = np.flatnonzero(to_counted)
    by_pv = candidates[np.lexsort((np.abs(distance[candidates]), nearest[candidates]))]
    first = np.ones(by_pv.size, dtype=bool)
    first[1:] = nearest[by_pv][1:] != nearest[by_pv][:-1]
    winners = by_pv[first]
    n_found = int(winners.size)
    n_false = int((~assigned).sum()) + int(by_pv.size - winners.size)
    pv_found = np.zeros(truth.pv_z.size, dtype=bool)
    pv_found[nearest[winners]] = True
    n_misplaced = int((~assigned & (np.abs(distance) < 2 * max_dz)).sum())
    return MatchResult(n_events, n_true, n_found, n_false, distance[winners], pv_found, n_misplaced)


def scan_peak_finder(
    values: npt.NDArray[np.float32],
    truth: Truth,
    thresholds: npt.ArrayLike,
    integral_thresholds: npt.ArrayLike = (0.0,),
    min_widths: npt.ArrayLike = (1,),
    *,
    chunk: int = 256,
    refine: Refine | None = None,
) -> npt.NDArray[np.float64]:
    """Efficiency and FP/event of the peak finder on ``values`` [N, 4000] for every setting.

    With ``refine``, the peaks of each event are replaced by what it returns for them (a vertex fit).
    Returns an array [len(thresholds), len(integral_thresholds), len(min_widths), 2] of
    (efficiency, false positives per event).
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    integrals = np.asarray(integral_thresholds, dtype=np.float64)
    widths = np.asarray(min_widths, dtype=np.int64)
    counts = np.zeros((thresholds.size, integrals.size, widths.size, 3), dtype=np.int64)
    for start in range(0, values.shape[0], chunk):
        stop = min(start + chunk, values.shape[0])
        part_truth = truth.select(start, stop)
        for i, threshold in enumerate(thresholds):
            event, z, width, integral = peak_candidates(values[start:stop], float(threshold))
            for j, integral_threshold in enumerate(integrals):
                for k, min_width in enumerate(widths):
                    keep = (integral >= integral_threshold) & (width >= min_width) & np.isfinite(z)
                    found = z[keep] if refine is None else refine(event[keep] + start, z[keep])
                    result = match_vertices(event[keep], found, part_truth)
                    counts[i, j, k] += (result.n_true, result.n_found, result.n_false)
    out = np.empty((*counts.shape[:3], 2))
    out[..., 0] = counts[..., 1] / np.maximum(counts[..., 0], 1)
    out[..., 1] = counts[..., 2] / max(values.shape[0], 1)
    return out
