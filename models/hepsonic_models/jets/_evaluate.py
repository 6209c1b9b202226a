"""Tagger metrics and the cut-based baseline (jet-mass window + N-subjettiness τ32), on the same jets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["MassTau32Baseline", "RocSummary", "fit_mass_tau32_baseline", "jensen_shannon", "summarise_roc"]

#: Working point of the rejection target.
SIGNAL_EFFICIENCY = 0.3

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RocSummary:
    """ROC curve of a score on labelled jets (1 = top) and its headline numbers."""

    signal_efficiency: FloatArray
    background_efficiency: FloatArray
    #: Score threshold of each ROC point.
    thresholds: FloatArray
    auc: float
    #: 1/ε_B at ε_S = 30%; inf when no background jet passes (then see ``rejection_lower_bound``).
    rejection_at_30: float
    rejection_lower_bound: float
    n_signal: int
    n_background: int


def summarise_roc(labels: npt.NDArray[np.int8], score: npt.ArrayLike) -> RocSummary:
    """ROC, AUC and 1/ε_B at ε_S = 30% of ``score`` (higher = more top-like)."""
    values = np.asarray(score, dtype=np.float64)
    fpr, tpr, thresholds = roc_curve(labels, values)
    n_background = int((labels == 0).sum())
    background_at_30 = float(np.interp(SIGNAL_EFFICIENCY, tpr, fpr))
    rejection = 1.0 / background_at_30 if background_at_30 > 0 else float("inf")
    return RocSummary(
        signal_efficiency=tpr,
        background_efficiency=fpr,
        thresholds=thresholds,
        auc=float(roc_auc_score(labels, values)),
        rejection_at_30=rejection,
        rejection_lower_bound=float(n_background),
        n_signal=int((labels == 1).sum()),
        n_background=n_background,
    )


@dataclass(frozen=True)
class MassTau32Baseline:
    """Jets inside the mass window are ranked by -τ32; jets outside it never pass."""

    mass_low: float
    mass_high: float

    #: Score of jets outside the window (below any -τ32).
    OUTSIDE_WINDOW: ClassVar[float] = -10.0

    def score(self, mass: npt.ArrayLike, tau32: npt.ArrayLike) -> FloatArray:
        """Baseline score: -τ32 inside the window, :attr:`OUTSIDE_WINDOW` outside (τ32 is in [0, ~1.5])."""
        m = np.asarray(mass, dtype=np.float64)
        inside = (m >= self.mass_low) & (m <= self.mass_high)
        return np.where(inside, -np.asarray(tau32, dtype=np.float64), self.OUTSIDE_WINDOW)


def tau32_of(tau: npt.NDArray[np.float32]) -> FloatArray:
    """τ3/τ2 (1 where τ2 = 0)."""
    tau2 = tau[:, 1].astype(np.float64)
    return np.divide(tau[:, 2], tau2, out=np.ones_like(tau2), where=tau2 > 0)


def fit_mass_tau32_baseline(
    labels: npt.NDArray[np.int8], mass: npt.NDArray[np.float32], tau: npt.NDArray[np.float32]
) -> MassTau32Baseline:
    """The mass window with the best rejection at ε_S = 30% on the given (validation, never test) jets."""
    tau32 = tau32_of(tau)
    best = (np.inf, MassTau32Baseline(140.0, 200.0))
    for low in np.arange(100.0, 171.0, 10.0):
        for high in np.arange(180.0, 281.0, 10.0):
            candidate = MassTau32Baseline(float(low), float(high))
            score = candidate.score(mass, tau32)
            fpr, tpr, _ = roc_curve(labels, score)
            if tpr[-2] < SIGNAL_EFFICIENCY:  # last point before "everything passes"
                continue
            background = float(np.interp(SIGNAL_EFFICIENCY, tpr, fpr))
            if background < best[0]:
                best = (background, candidate)
    return best[1]


def jensen_shannon(p_counts: npt.ArrayLike, q_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: FloatArray, b: FloatArray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / b[keep])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)
