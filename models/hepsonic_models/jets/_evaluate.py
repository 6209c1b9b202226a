"""Tagger metrics and the cut-based baseline (jet-mass window + N-subjettiness τ32), on the same jets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score, roc_curve

from hepsonic_client.physics.jets import MassDecorrelatedCut

__all__ = [
    "DECORRELATED_QCD_EFFICIENCIES",
    "MASS_BINS_GEV",
    "DecorrelatedPoint",
    "MassTau32Baseline",
    "RocSummary",
    "evaluate_decorrelated",
    "fit_decorrelated_cuts",
    "fit_mass_tau32_baseline",
    "jensen_shannon",
    "sculpting_jsd",
    "summarise_roc",
]

#: Working point of the rejection target.
SIGNAL_EFFICIENCY = 0.3

#: QCD efficiencies of the published mass-decorrelated working points (tight to loose, as taggers ship them).
DECORRELATED_QCD_EFFICIENCIES = (0.005, 0.01, 0.02, 0.05)

#: Jet-mass histogram of the sculpting measure (JSD).
MASS_BINS_GEV = np.linspace(0.0, 300.0, 31)

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


def sculpting_jsd(qcd_mass: npt.ArrayLike, passed: npt.NDArray[np.bool_]) -> float:
    """JSD of the mass spectrum of the QCD jets that pass against that of all of them."""
    masses = np.asarray(qcd_mass, dtype=np.float64)
    inclusive, _ = np.histogram(masses, bins=MASS_BINS_GEV)
    passing, _ = np.histogram(masses[passed], bins=MASS_BINS_GEV)
    return jensen_shannon(passing, inclusive)


def fit_decorrelated_cuts(
    labels: npt.NDArray[np.int8], score: npt.ArrayLike, mass: npt.ArrayLike
) -> tuple[MassDecorrelatedCut, ...]:
    """The mass-decorrelated working points, fitted on the QCD jets of the given (validation, never test) jets."""
    qcd = labels == 0
    p_top = np.asarray(score)[qcd]
    masses = np.asarray(mass)[qcd]
    return tuple(MassDecorrelatedCut.fit(p_top, masses, eff) for eff in DECORRELATED_QCD_EFFICIENCIES)


@dataclass(frozen=True)
class DecorrelatedPoint:
    """A mass-decorrelated working point measured on labelled jets."""

    cut: MassDecorrelatedCut
    signal_efficiency: float
    background_efficiency: float
    n_background_pass: int
    #: Sculpting of the QCD mass spectrum by this cut (:func:`sculpting_jsd`).
    jsd: float
    #: The same JSD for a random subset of QCD jets of the same size: what counting statistics alone give.
    jsd_random: float


def evaluate_decorrelated(
    cut: MassDecorrelatedCut,
    labels: npt.NDArray[np.int8],
    score: npt.ArrayLike,
    mass: npt.ArrayLike,
    *,
    seed: int = 0,
) -> DecorrelatedPoint:
    """Efficiencies and mass sculpting of ``cut`` on the given jets."""
    passed = cut.passes(np.asarray(score), np.asarray(mass))
    qcd = labels == 0
    qcd_mass = np.asarray(mass)[qcd]
    n_pass = int(passed[qcd].sum())
    # Average over a few random draws, so the floor does not depend on one draw's luck.
    rng = np.random.default_rng(seed)
    floors = []
    for _ in range(5):
        random_pass = np.zeros(qcd_mass.size, dtype=bool)
        random_pass[rng.choice(qcd_mass.size, size=n_pass, replace=False)] = True
        floors.append(sculpting_jsd(qcd_mass, random_pass))
    return DecorrelatedPoint(
        cut=cut,
        signal_efficiency=float(passed[labels == 1].mean()),
        background_efficiency=n_pass / max(1, int(qcd.sum())),
        n_background_pass=n_pass,
        jsd=sculpting_jsd(qcd_mass, passed[qcd]),
        jsd_random=float(np.mean(floors)),
    )
