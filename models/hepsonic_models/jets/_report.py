"""Validation plots (PNG) and the Markdown report / model card of a jet tagger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from ._evaluate import MASS_BINS_GEV, DecorrelatedPoint, MassTau32Baseline, RocSummary, sculpting_jsd

__all__ = ["TaggerValidation", "plot_validation"]

TARGET_AUC = 0.97
TARGET_REJECTION = 200.0
#: Above this Jensen-Shannon divergence the QCD mass spectrum is called sculpted (no number in MODELS.md).
SCULPTING_JSD_LIMIT = 0.1
#: The mass-decorrelated working point quoted in the headline (the others are in the card's table).
HEADLINE_QCD_EFFICIENCY = 0.01


@dataclass(frozen=True)
class TaggerValidation:
    """Everything measured on the test jets."""

    network: RocSummary
    baseline: RocSummary
    baseline_cuts: MassTau32Baseline
    #: Jensen-Shannon divergence of the QCD mass spectrum after / before a cut at ε_S = 50%.
    mass_sculpting_jsd: float
    #: The mass-decorrelated working points (fitted on validation jets) on the test jets.
    decorrelated: tuple[DecorrelatedPoint, ...] = ()

    @property
    def headline_decorrelated(self) -> DecorrelatedPoint | None:
        """The working point at :data:`HEADLINE_QCD_EFFICIENCY`, if it was measured."""
        for point in self.decorrelated:
            if np.isclose(point.cut.qcd_efficiency, HEADLINE_QCD_EFFICIENCY):
                return point
        return None


def _rejection_curve(
    summary: RocSummary, lowest_threshold: float = -np.inf
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    keep = (
        (summary.background_efficiency > 0)
        & (summary.signal_efficiency > 0)
        & (summary.thresholds > lowest_threshold)
    )
    return summary.signal_efficiency[keep], 1.0 / summary.background_efficiency[keep]


def plot_validation(
    name: str,
    folder: Path,
    *,
    labels: npt.NDArray[np.int8],
    score: npt.NDArray[np.float32],
    mass: npt.NDArray[np.float32],
    network: RocSummary,
    baseline: RocSummary,
    baseline_cuts: MassTau32Baseline,
    train_loss: list[float],
    validation_loss: list[float],
    decorrelated: Sequence[DecorrelatedPoint] = (),
) -> tuple[TaggerValidation, list[Path]]:
    """Write the ROC, score, mass-sculpting and loss plots; return the summary and the PNG paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for summary, label in (
        (network, f"{name} (AUC {network.auc:.4f})"),
        (
            baseline,
            (
                f"mass [{baseline_cuts.mass_low:.0f}, {baseline_cuts.mass_high:.0f}] GeV + τ32 "
                f"(AUC {baseline.auc:.4f})"
            ),
        ),
    ):
        # The baseline's curve ends where the mass window's efficiency ends.
        lowest = MassTau32Baseline.OUTSIDE_WINDOW if summary is baseline else -np.inf
        x, y = _rejection_curve(summary, lowest)
        ax.plot(x, y, label=label)
    shown = [p for p in decorrelated if p.n_background_pass > 0]
    if shown:
        ax.plot(
            [p.signal_efficiency for p in shown],
            [1.0 / p.background_efficiency for p in shown],
            "s--",
            color="tab:green",
            label="mass-decorrelated cuts (flat QCD efficiency)",
        )
    ax.axvline(0.3, color="grey", linestyle=":", linewidth=1)
    ax.axhline(
        TARGET_REJECTION, color="red", linestyle="--", linewidth=1, label="target 1/ε_B = 200 at ε_S = 30%"
    )
    ax.set(yscale="log", xlabel="top-jet efficiency ε_S", ylabel="QCD rejection 1/ε_B", xlim=(0, 1))
    ax.set_title(f"{name}: {network.n_signal} top / {network.n_background} QCD test jets", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(folder / "roc.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = np.linspace(0, 1, 41).tolist()
    ax.hist(score[labels == 1], bins=bins, histtype="step", density=True, label="top")
    ax.hist(score[labels == 0], bins=bins, histtype="step", density=True, label="QCD")
    ax.set(yscale="log", xlabel="P(top)", ylabel="density")
    ax.legend()
    fig.tight_layout()
    paths.append(folder / "score.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # Mass sculpting: QCD mass spectrum before and after cuts at fixed signal efficiencies (left), and after
    # the mass-decorrelated cuts (right).
    qcd = labels == 0
    inclusive, _ = np.histogram(mass[qcd], bins=MASS_BINS_GEV)
    fig, (nominal_ax, decorrelated_ax) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    jsd = float("nan")
    for ax in (nominal_ax, decorrelated_ax):
        ax.stairs(inclusive / max(1, inclusive.sum()), MASS_BINS_GEV, label="QCD, all", color="black")
        ax.set(xlabel="jet mass [GeV]")
    for efficiency in (0.8, 0.5, 0.3):
        threshold = float(np.quantile(score[labels == 1], 1 - efficiency))
        passed, _ = np.histogram(mass[qcd & (score >= threshold)], bins=MASS_BINS_GEV)
        if efficiency == 0.5:
            jsd = sculpting_jsd(mass[qcd], score[qcd] >= threshold)
        nominal_ax.stairs(
            passed / max(1, passed.sum()),
            MASS_BINS_GEV,
            label=f"QCD passing, ε_S = {efficiency:.0%} ({passed.sum()} jets)",
        )
    nominal_ax.set(ylabel="fraction of jets", title=f"fixed cut on P(top): JSD at ε_S = 50%: {jsd:.3f}")
    for point in decorrelated:
        keep = point.cut.passes(score[qcd], mass[qcd])
        passed, _ = np.histogram(mass[qcd][keep], bins=MASS_BINS_GEV)
        decorrelated_ax.stairs(
            passed / max(1, passed.sum()),
            MASS_BINS_GEV,
            label=(
                f"QCD eff. {point.cut.qcd_efficiency:.1%}: ε_S = {point.signal_efficiency:.0%}, "
                f"JSD {point.jsd:.3f} ({point.n_background_pass} jets)"
            ),
        )
    decorrelated_ax.set(title="mass-decorrelated cuts (fitted on validation jets)")
    for ax in (nominal_ax, decorrelated_ax):
        ax.title.set_fontsize(10)
        ax.legend(fontsize=7)
    fig.suptitle(f"{name}: QCD mass spectrum after tagging ({int(qcd.sum())} QCD test jets)", fontsize=11)
    fig.tight_layout()
    paths.append(folder / "mass_sculpting.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    epochs = np.arange(1, len(train_loss) + 1)
    ax.plot(epochs, train_loss, marker="o", label="training")
    ax.plot(epochs, validation_loss, marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel="cross-entropy")
    ax.legend()
    fig.tight_layout()
    paths.append(folder / "loss.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    return TaggerValidation(network, baseline, baseline_cuts, jsd, tuple(decorrelated)), paths


def rejection_text(summary: RocSummary, efficiency: float, *, is_baseline: bool = False) -> str:
    """1/ε_B at signal efficiency ``efficiency`` as text; "not reachable" beyond the baseline's mass window."""
    lowest = MassTau32Baseline.OUTSIDE_WINDOW if is_baseline else -np.inf
    efficiencies, rejections = _rejection_curve(summary, lowest)
    if efficiencies.size == 0 or efficiencies.max() < efficiency:
        reach = efficiencies.max() if efficiencies.size else 0.0
        return f"not reachable (max ε_S {reach:.0%})"
    return f"{np.interp(efficiency, efficiencies, rejections):.0f}"


def format_rejection(summary: RocSummary) -> str:
    """1/ε_B at 30% as text (a lower bound when no background jet passes)."""
    if np.isinf(summary.rejection_at_30):
        return f"> {summary.rejection_lower_bound:.0f} (no QCD jet passes)"
    passing = summary.n_background / summary.rejection_at_30
    return f"{rejection_with_error(summary.rejection_at_30, passing)} ({passing:.0f} QCD jets pass)"


def rejection_with_error(rejection: float, passing: float) -> str:
    """1/ε_B with its binomial counting error (relative error 1/sqrt(number of QCD jets passing))."""
    error = rejection / np.sqrt(passing)
    return f"{rejection:.0f} ± {error:.0f}" if error >= 1 else f"{rejection:.1f} ± {error:.1f}"


def verdict(passed: bool) -> str:
    """Target column text."""
    return "met" if passed else "**NOT met**"
