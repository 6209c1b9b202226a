"""Choosing peak-finder settings on the validation set, and scoring on the test set (NN and KDE-only alike)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hepsonic_client.physics.vertices import PeakFinder, Tracks, VertexFit

from ._metrics import FP_BUDGET, MatchResult, Refine, Truth, match_vertices, scan_peak_finder

__all__ = ["Curve", "FinderChoice", "SeedFit", "choose_finder", "evaluate", "scan_curve"]


class SeedFit:
    """The vertex fit of peaks found in a sample's crossings, as a :data:`Refine` for the scans.

    Remembers each crossing's fits: a scan over cuts finds the same peaks in a crossing for many of them.
    """

    def __init__(self, tracks: Callable[[int], Tracks], fit: VertexFit) -> None:
        self._tracks = tracks
        self.fit = fit
        self._cache: dict[tuple[int, bytes], npt.NDArray[np.float64]] = {}

    def __call__(self, event: npt.NDArray[np.int64], z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Fitted z of every peak (``event``: its crossing; peaks of one crossing are consecutive)."""
        fitted = np.empty(z.size)
        if z.size == 0:
            return fitted
        starts = np.flatnonzero(np.diff(event, prepend=-1) != 0)
        for start, stop in zip(starts, [*starts[1:], z.size], strict=True):
            seeds = np.ascontiguousarray(z[start:stop], dtype=np.float64)
            key = (int(event[start]), seeds.tobytes())
            if key not in self._cache:
                self._cache[key] = self.fit(self._tracks(key[0]), seeds).z
            fitted[start:stop] = self._cache[key]
        return fitted


@dataclass(frozen=True)
class Curve:
    """Efficiency vs FP/event of one method, scanning the peak-finder threshold (other cuts fixed)."""

    thresholds: npt.NDArray[np.float64]
    efficiency: npt.NDArray[np.float64]
    fp_per_event: npt.NDArray[np.float64]

    def efficiency_at(self, fp_budget: float) -> float:
        """Best efficiency among thresholds with FP/event <= ``fp_budget`` (nan when none)."""
        ok = self.fp_per_event <= fp_budget
        return float(self.efficiency[ok].max()) if ok.any() else float("nan")


@dataclass(frozen=True)
class FinderChoice:
    """Peak-finder settings chosen on the validation set, and their validation score."""

    finder: PeakFinder
    val_efficiency: float
    val_fp_per_event: float


def choose_finder(
    values: npt.NDArray[np.float32],
    truth: Truth,
    thresholds: npt.ArrayLike,
    integral_thresholds: npt.ArrayLike,
    min_widths: npt.ArrayLike,
    *,
    fp_budget: float = FP_BUDGET,
    refine: Refine | None = None,
) -> FinderChoice:
    """The settings with the highest validation efficiency whose FP/event stays within ``fp_budget`` by one
    counting error (of the peaks, or of what ``refine`` makes of them).

    The margin matters: the setting that happens to sit right at the budget on a small validation sample is
    the one most likely to exceed it on other crossings (on 1,000 validation crossings, 0.1 FP/event is
    100 +- 10 false positives). Ties go to the lower FP rate. When no setting meets the budget, the one with
    the lowest FP rate.
    """
    grid = scan_peak_finder(values, truth, thresholds, integral_thresholds, min_widths, refine=refine)
    eff, fp = grid[..., 0], grid[..., 1]
    n_events = max(1, values.shape[0])
    ok = fp + np.sqrt(fp * n_events) / n_events <= fp_budget
    score = np.where(ok, eff - 1e-6 * fp, -np.inf) if ok.any() else -fp
    i, j, k = np.unravel_index(int(np.argmax(score)), score.shape)
    finder = PeakFinder(
        threshold=float(np.asarray(thresholds)[i]),
        integral_threshold=float(np.asarray(integral_thresholds)[j]),
        min_width=int(np.asarray(min_widths)[k]),
    )
    return FinderChoice(finder, float(eff[i, j, k]), float(fp[i, j, k]))


def scan_curve(
    values: npt.NDArray[np.float32],
    truth: Truth,
    finder: PeakFinder,
    thresholds: npt.ArrayLike,
    *,
    refine: Refine | None = None,
) -> Curve:
    """Efficiency vs FP/event of ``finder``'s cuts while scanning the threshold."""
    grid = scan_peak_finder(
        values, truth, thresholds, [finder.integral_threshold], [finder.min_width], refine=refine
    )
    return Curve(np.asarray(thresholds, dtype=np.float64), grid[:, 0, 0, 0], grid[:, 0, 0, 1])


def evaluate(
    values: npt.NDArray[np.float32], truth: Truth, finder: PeakFinder, *, refine: Refine | None = None
) -> MatchResult:
    """Run ``finder`` (and ``refine``) on every event and score it."""
    found = [finder(row) for row in values]
    event = np.repeat(np.arange(len(found)), [f.size for f in found])
    z = np.concatenate(found) if found else np.empty(0)
    return match_vertices(event, z if refine is None else refine(event, z), truth)
