"""Operating points, per-bin tables with the fold spread, ROC curves and the ringer report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..report import markdown_table, save_figure, subplots
from ._model import Binning
from ._train import sp_index

__all__ = [
    "FoldTable",
    "VersionResult",
    "efficiency",
    "fold_mean_std",
    "threshold_at",
    "version_markdown",
    "version_plots",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def threshold_at(scores: FloatArray, target_pd: float) -> float:
    """Score threshold keeping a fraction ``target_pd`` of the (signal) scores (accept score >= threshold)."""
    if scores.size == 0:
        return 0.0
    return float(np.quantile(scores, 1.0 - target_pd, method="lower"))


def efficiency(accepted: BoolArray, mask: BoolArray) -> float:
    """Fraction of ``mask`` rows accepted (NaN when empty)."""
    n = int(mask.sum())
    return float(accepted[mask].mean()) if n else float("nan")


_CV_QUANTITIES = ("pd", "pf", "sp")


@dataclass(frozen=True)
class FoldTable:
    """Cross-validation as the ringer group tabulates it. Every fold's model has per-bin thresholds set on the
    operation set (all cross-validation rows of the bin) at the reference P_D; per bin, the mean and std over
    the folds of P_D, P_F and SP on the fold's validation rows (NaN = empty bin); and each fold's inclusive
    P_D and P_F on the independent test set.

    Only training sees the folds (the fold models are not in the served file), so the build records this
    table and the report reads it back; ``source`` says where it came from.
    """

    folds: int
    mean: dict[str, FloatArray]
    std: dict[str, FloatArray]
    #: Inclusive P_D and P_F of every fold's model on the test set, shape [folds].
    test_pd: FloatArray
    test_pf: FloatArray
    source: str

    @classmethod
    def from_folds(
        cls,
        pd: FloatArray,
        pf: FloatArray,
        sp: FloatArray,
        *,
        test_pd: FloatArray,
        test_pf: FloatArray,
        source: str,
    ) -> FoldTable:
        """Summarise per-fold validation values of shape [folds, bins] and test values of shape [folds]."""
        summaries = {
            name: fold_mean_std(values) for name, values in zip(_CV_QUANTITIES, (pd, pf, sp), strict=True)
        }
        return cls(
            folds=pd.shape[0],
            mean={name: summary[0] for name, summary in summaries.items()},
            std={name: summary[1] for name, summary in summaries.items()},
            test_pd=np.asarray(test_pd, dtype=np.float64),
            test_pf=np.asarray(test_pf, dtype=np.float64),
            source=source,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (NaN as null)."""

        def listed(values: FloatArray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in values]

        return {
            "folds": self.folds,
            "source": self.source,
            **{f"{name}_mean": listed(self.mean[name]) for name in _CV_QUANTITIES},
            **{f"{name}_std": listed(self.std[name]) for name in _CV_QUANTITIES},
            "test_pd": listed(self.test_pd),
            "test_pf": listed(self.test_pf),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FoldTable:
        """Inverse of :meth:`to_json`."""

        def array(values: list[float | None]) -> FloatArray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            folds=int(data["folds"]),
            mean={name: array(data[f"{name}_mean"]) for name in _CV_QUANTITIES},
            std={name: array(data[f"{name}_std"]) for name in _CV_QUANTITIES},
            test_pd=array(data["test_pd"]),
            test_pf=array(data["test_pf"]),
            source=str(data["source"]),
        )


@dataclass
class VersionResult:
    """Everything measured for one served version."""

    version: int
    binning: Binning
    thresholds: FloatArray
    #: Cross-validation per bin, from the build's record.
    cv: FoldTable
    #: Independent test set, per bin.
    test_counts: IntArray
    test_pd_nn: FloatArray
    test_pf_nn: FloatArray
    test_pd_ref: FloatArray
    test_pf_ref: FloatArray
    inclusive: dict[str, float] = field(default_factory=dict)
    roc: tuple[FloatArray, FloatArray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    epochs: int = 0
    sha256: str = ""
    opset: int = 0
    max_abs_diff: float = 0.0
    figures: list[Path] = field(default_factory=list)

    def fold_std_pd(self) -> float:
        """Fold-to-fold std of the inclusive P_D on the test set (the target's figure)."""
        return float(np.std(self.cv.test_pd))

    def fold_std_pd_per_bin(self) -> float:
        """Fold-to-fold std of P_D on the validation rows, averaged over the bins that have one."""
        std = self.cv.std["pd"]
        return float(std[~np.isnan(std)].mean()) if (~np.isnan(std)).any() else float("nan")

    def target_met(self) -> bool:
        """The fake-rate target: P_F(NN) ≤ P_F(reference) / 3 at equal P_D."""
        return self.inclusive["pf_nn"] <= self.inclusive["pf_ref"] / 3

    def fold_target_met(self) -> bool:
        """The stability target: fold-to-fold std of the inclusive test P_D ≤ 0.1%."""
        return self.fold_std_pd() <= 0.001


def fold_mean_std(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Mean and std over folds (axis 0) ignoring NaN (empty bins), NaN where every fold is empty."""
    present = ~np.isnan(values)
    count = present.sum(axis=0)
    filled = np.where(present, values, 0.0)
    mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), np.nan)
    spread = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1)
    return mean, np.where(count > 0, np.sqrt(spread), np.nan)


def _pct(value: float) -> str:
    return "—" if np.isnan(value) else f"{100 * value:.2f}"


def _cell(mean: float, std: float) -> str:
    return "—" if np.isnan(mean) else f"{100 * mean:.2f} ± {100 * std:.2f}"


def version_markdown(result: VersionResult, figures_prefix: str) -> str:
    """Per-version Markdown: inclusive table, CV tables in the ringer group's layout, test per bin, figures."""
    b = result.binning
    inc = result.inclusive
    ratio = inc["pf_ref"] / inc["pf_nn"] if inc["pf_nn"] > 0 else float("inf")
    parts = [
        f"### Version {result.version}: {b.n_et} E_T x {b.n_eta} |η| bins ({b.n_bins} nets)",
        markdown_table(
            ["test set (inclusive)", "P_D [%]", "P_F [%]", "SP [%]"],
            [
                [
                    "T2Calo-like reference",
                    _pct(inc["pd_ref"]),
                    _pct(inc["pf_ref"]),
                    _pct(float(sp_index(inc["pd_ref"], inc["pf_ref"]))),
                ],
                [
                    "ringer NN",
                    _pct(inc["pd_nn"]),
                    _pct(inc["pf_nn"]),
                    _pct(float(sp_index(inc["pd_nn"], inc["pf_nn"]))),
                ],
            ],
        ),
        (
            f"Fake-rate reduction at equal P_D: **{ratio:.2f}x** (target ≥ 3x: "
            f"{'met' if result.target_met() else '**not met**'})."
        ),
        (
            f"Fold to fold ({result.cv.folds} fold models, each with its own thresholds from the operation set), "
            f"inclusive on the test set: P_D {_cell(float(np.mean(result.cv.test_pd)), result.fold_std_pd())} %, "
            f"P_F {_cell(float(np.mean(result.cv.test_pf)), float(np.std(result.cv.test_pf)))} %. Std of P_D "
            f"{100 * result.fold_std_pd():.3f}% (target ≤ 0.1%: "
            f"{'met' if result.fold_target_met() else '**not met**'}). Per bin on the validation rows the std of "
            f"P_D averages {100 * result.fold_std_pd_per_bin():.2f}%, mostly the binomial spread of a few hundred "
            "electrons per bin and fold."
        ),
    ]
    for title, key in (("P_D", "pd"), ("P_F", "pf"), ("SP", "sp")):
        means, stds = result.cv.mean[key], result.cv.std[key]
        rows = []
        for i in range(b.n_et):
            cells = [
                _cell(float(means[i * b.n_eta + j]), float(stds[i * b.n_eta + j])) for j in range(b.n_eta)
            ]
            rows.append([b.et_label(i), *cells])
        parts += [
            (
                f"Cross-validation {title} [%] (mean ± std over {result.cv.folds} folds, validation rows; "
                f"each fold's thresholds from the operation set at the reference P_D; {result.cv.source}):"
            ),
            markdown_table(["E_T [GeV] \\ |η|", *(b.eta_label(j) for j in range(b.n_eta))], rows),
        ]
    rows = []
    for i in range(b.n_et):
        for j in range(b.n_eta):
            k = i * b.n_eta + j
            rows.append(
                [
                    b.et_label(i),
                    b.eta_label(j),
                    str(int(result.test_counts[k])),
                    _pct(result.test_pd_ref[k]),
                    _pct(result.test_pf_ref[k]),
                    _pct(result.test_pd_nn[k]),
                    _pct(result.test_pf_nn[k]),
                    f"{result.thresholds[k]:+.4f}",
                ]
            )
    parts += [
        "Independent test set per bin:",
        markdown_table(
            ["E_T [GeV]", "|η|", "jets", "P_D ref", "P_F ref", "P_D NN", "P_F NN", "NN threshold"], rows
        ),
        *(f"![{p.stem}]({figures_prefix}{p.name})" for p in result.figures),
    ]
    return "\n\n".join(parts)


def version_plots(result: VersionResult, reports: Path) -> list[Path]:
    """ROC (inclusive) with both operating points; P_F per bin, NN vs reference."""
    figures = []
    fig, axes = subplots(1, 1, size=(5.5, 4.5))
    ax = axes[0][0]
    pf, pd = result.roc
    ax.plot(pf, pd, label="ringer NN, per-bin thresholds at a common P_D (scan)")
    inc = result.inclusive
    ax.plot([inc["pf_ref"]], [inc["pd_ref"]], "rs", label="T2Calo-like reference")
    ax.plot([inc["pf_nn"]], [inc["pd_nn"]], "g*", ms=12, label="NN, per-bin thresholds")
    ax.set_xscale("log")
    ax.set_xlabel("P_F (jets accepted)")
    ax.set_ylabel("P_D (electrons accepted)")
    ax.set_ylim(0.8, 1.005)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"ringer v{result.version}: test set")
    figures.append(save_figure(fig, reports / f"roc_v{result.version}.png"))

    b = result.binning
    fig, axes = subplots(1, 2, size=(5.5, 4.2))
    for ax, values, title in (
        (axes[0][0], result.test_pf_ref, "P_F reference [%]"),
        (axes[0][1], result.test_pf_nn, "P_F NN [%]"),
    ):
        grid = 100 * values.reshape(b.n_et, b.n_eta)
        shown = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        for i in range(b.n_et):
            for j in range(b.n_eta):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(b.n_eta), [b.eta_label(j) for j in range(b.n_eta)], fontsize=7)
        ax.set_yticks(range(b.n_et), [b.et_label(i) for i in range(b.n_et)], fontsize=7)
        ax.set_xlabel("|η|")
        ax.set_ylabel("E_T [GeV]")
        ax.set_title(title)
        fig.colorbar(shown, ax=ax)
    figures.append(save_figure(fig, reports / f"pf_per_bin_v{result.version}.png"))

    fig, axes = subplots(1, 1, size=(6.0, 4.0))
    ax = axes[0][0]
    x = np.arange(b.n_bins)
    for key, marker, name in (("pd", "o", "P_D"), ("pf", "s", "P_F")):
        mean, std = result.cv.mean[key], result.cv.std[key]
        ax.errorbar(x, 100 * mean, yerr=100 * std, fmt=marker, ms=3, label=f"{name} (CV, fold spread)")
    ax.set_xlabel("bin (E_T-major)")
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    figures.append(save_figure(fig, reports / f"cv_per_bin_v{result.version}.png"))
    return figures
