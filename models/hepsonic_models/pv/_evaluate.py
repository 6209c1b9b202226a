"""Choosing peak-finder settings on the validation set, and scoring on the test set (NN and KDE-only alike)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hepsonic_client.physics.vertices import PeakFinder

from ._metrics import FP_BUDGET, MatchResult, Truth, match_vertices, scan_peak_finder

__all__ = ["Curve", "FinderChoice", "choose_finder", "evaluate", "scan_curve"]


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
) -> FinderChoice:
    """The settings with the highest validation efficiency at FP/event <= ``fp_budget``.

    Ties go to the lower FP rate. When no setting meets the budget, the one with the lowest FP rate.
    """
    grid = scan_peak_finder(values, truth, thresholds, integral_thresholds, min_widths)
    eff, fp = grid[..., 0], grid[..., 1]
    ok = fp <= fp_budget
    score = np.where(ok, eff - 1e-6 * fp, -np.inf) if ok.any() else -fp
    i, j, k = np.unravel_index(int(np.argmax(score)), score.shape)
    finder = PeakFinder(
        threshold=float(np.asarray(thresholds)[i]),
        integral_threshold=float(np.asarray(integral_thresholds)[j]),
        min_width=int(np.asarray(min_widths)[k]),
    )
    return FinderChoice(finder, float(eff[i, j, k]), float(fp[i, j, k]))


def scan_curve(
    values: npt.NDArray[np.float32], truth: Truth, finder: PeakFinder, thresholds: npt.ArrayLike
) -> Curve:
    """Efficiency vs FP/event of ``finder``'s cuts while scanning the threshold."""
    grid = scan_peak_finder(values, truth, thresholds, [finder.integral_threshold], [finder.min_width])
    return Curve(np.asarray(thresholds, dtype=np.float64), grid[:, 0, 0, 0], grid[:, 0, 0, 1])


def evaluate(values: npt.NDArray[np.float32], truth: Truth, finder: PeakFinder) -> MatchResult:
    """Run ``finder`` on every event and score it."""
    found = [finder(row) for row in values]
    event = np.repeat(np.arange(len(found)), [f.size for f in found])
    z = np.concatenate(found) if found else np.empty(0)
    return match_vertices(event, z, truth)
