"""The validation report (Markdown + PNG in ``reports/pv_finder/``) and the model card of ``pv_finder``."""

from __future__ import annotations

import itertools
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from hepsonic_client.physics.vertices import VertexFit, bin_centers

from ..context import BuildContext
from ..export import ExportInfo
from ._config import BASELINE_CHANNEL, FULL
from ._evaluate import Curve, FinderChoice
from ._metrics import MatchResult
from ._train import TrainResult

if TYPE_CHECKING:
    from ._config import PVBuildConfig
    from ._generator import CrossingSample, VertexCeiling

__all__ = ["BuildSummary", "MethodScore", "model_card", "write_report"]

_LABELS = {
    "nn": "U-Net + peak finder + vertex fit",
    "kde": "KDE-only peak finder on the 3D kernel + vertex fit (baseline)",
    "nn_seeds": "U-Net + peak finder, no vertex fit",
}
_COLORS = {"nn": "tab:blue", "kde": "tab:orange", "nn_seeds": "tab:gray"}
REBUILD_COMMAND = "hepsonic-build-models --only pv_finder   # = make models ARGS='--only pv_finder'"


@dataclass(frozen=True)
class MethodScore:
    """One method on the test sample, with the cuts chosen on the validation sample."""

    choice: FinderChoice
    test: MatchResult
    curve: Curve
    #: The vertex fit applied to the found peaks (None: the peaks' z as they are).
    fit: VertexFit | None = None

    def cuts_text(self) -> str:
        """The method's cuts (and fit), for the tables."""
        f = self.choice.finder
        text = f"threshold {f.threshold:g}, integral >= {f.integral_threshold:g}, width >= {f.min_width} bins"
        return text if self.fit is None else f"{text}; fit chi2_cut {self.fit.chi2_cut:g}"


@dataclass(frozen=True, kw_only=True)
class BuildSummary:
    """Everything the card and the report say about one build."""

    ctx: BuildContext
    config: PVBuildConfig
    samples: dict[str, int]
    n_true_pvs: dict[str, int]
    generation_s: float
    train: TrainResult
    scores: dict[str, MethodScore]
    export: ExportInfo
    n_parameters: int
    total_s: float
    fp_budget: float
    #: Truth-assisted ceiling: counted PVs fitted from their own tracks' z at the beam line.
    ceiling: VertexCeiling
    #: The same with each PV fitted in 3D from its own tracks by the served vertex fit (beam-spot constraint).
    ceiling_fit: VertexCeiling
    #: The same with each track's z taken at its vertex's true transverse position (a perfect 3D finder).
    ceiling_transverse_known: VertexCeiling
    #: Said at the top of the report and the card (e.g. how the build record was made).
    notes: tuple[str, ...] = ()
    #: Whether the build record holds the training history (else an existing training.png is kept).
    training_curve: bool = True


def _robust_sigma_um(dz: npt.NDArray[np.float64]) -> float:
    if dz.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(dz - np.median(dz))) * 1000.0)


def _rms_um(dz: npt.NDArray[np.float64]) -> float:
    return float(np.sqrt(np.mean(dz**2)) * 1000.0) if dz.size else float("nan")


def _plot_curves(path: Path, summary: BuildSummary) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    floor = 1.2e-3  # zero FP/event is drawn here, on the log axis
    lowest = 80.0
    for key, score in summary.scores.items():
        curve = score.curve
        useful = curve.efficiency > 0
        lowest = min(lowest, 100 * score.test.efficiency - 5)
        ax.plot(
            np.maximum(curve.fp_per_event[useful], floor),
            100 * curve.efficiency[useful],
            "-o",
            ms=2.5,
            color=_COLORS[key],
            label=_LABELS[key],
        )
        ax.plot(
            max(score.test.fp_per_event, floor),
            100 * score.test.efficiency,
            "*",
            ms=13,
            color=_COLORS[key],
            markeredgecolor="k",
            label=f"operating point (cuts from validation): {_LABELS[key]}",
        )
    # What perfectly associated tracks allow at the budget: the finder's real ceiling, not 100%.
    for ceiling, marker, label in (
        (summary.ceiling, "v", "ceiling at the budget: perfect association, z at the beam line"),
        (summary.ceiling_fit, "D", "... perfect association, the served 3D vertex fit"),
        (summary.ceiling_transverse_known, "^", "... and each PV's (x, y) known exactly"),
    ):
        ax.plot(summary.fp_budget, 100 * ceiling.efficiency_at_budget, marker, ms=8, color="k", label=label)
        lowest = min(lowest, 100 * ceiling.efficiency_at_budget - 5)
    ax.axvline(summary.fp_budget, color="grey", ls="--", lw=1)
    ax.axhline(95, color="grey", ls=":", lw=1)
    ax.fill_between([1e-3, summary.fp_budget], 95, 100, color="green", alpha=0.08, label="target region")
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 10)
    ax.set_ylim(max(0.0, lowest), 100.5)
    ax.set_xlabel(f"false positives per event (0 drawn at {floor:g})")
    ax.set_ylabel("efficiency [%] (true PVs with >= 5 tracks, |dz| < 0.5 mm)")
    ax.set_title(f"pv_finder: test sample, {summary.samples['test']} crossings (threshold scan)")
    ax.grid(alpha=0.3, which="both")
    # Beside the axes: inside, the legend would hide the curves near the budget.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _plot_resolution(path: Path, summary: BuildSummary) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    bins = np.linspace(-500, 500, 101).tolist()
    for key, score in summary.scores.items():
        dz_um = score.test.dz * 1000.0
        ax.hist(
            dz_um,
            bins=bins,
            histtype="step",
            lw=1.5,
            color=_COLORS[key],
            label=f"{_LABELS[key]}: sigma(MAD) {_robust_sigma_um(score.test.dz):.0f} um, RMS {_rms_um(score.test.dz):.0f} um",
        )
    ax.set_yscale("log")
    ax.set_xlabel("z(found) - z(true) [um]")
    ax.set_ylabel("found PVs")
    ax.set_title("pv_finder: z resolution (test sample, operating points)")
    ax.legend(fontsize=7.5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_efficiency_vs_tracks(path: Path, summary: BuildSummary, ntracks: npt.NDArray[np.int64]) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    edges = np.array([5, 7, 10, 15, 20, 30, 50, 80, 1000])
    centers = np.sqrt(edges[:-1] * np.minimum(edges[1:], 120))
    for key, score in summary.scores.items():
        found = score.test.pv_found
        eff = []
        err = []
        for lo, hi in itertools.pairwise(edges):
            sel = (ntracks >= lo) & (ntracks < hi)
            n = int(sel.sum())
            e = float(found[sel].mean()) if n else float("nan")
            eff.append(100 * e)
            err.append(100 * np.sqrt(max(e * (1 - e), 1e-12) / max(n, 1)))
        ax.errorbar(centers, eff, yerr=err, fmt="o-", color=_COLORS[key], label=_LABELS[key], capsize=2)
    ax.set_xscale("log")
    ax.set_xlabel("reconstructed tracks of the true PV")
    ax.set_ylabel("efficiency [%]")
    ax.set_title("pv_finder: efficiency vs PV track multiplicity (test, operating points)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_training(path: Path, train: TrainResult) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(train.val_steps, train.train_loss, "o-", label="train (running mean over crops)")
    ax.plot(train.val_steps, train.val_loss, "s-", label="validation (full events)")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted BCE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title("pv_finder: training")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_example(
    path: Path, summary: BuildSummary, sample: CrossingSample, prob: npt.NDArray[np.float32]
) -> int:
    n_pvs = np.diff(sample.pv_offsets)
    event = int(np.argmax(n_pvs >= 8)) if (n_pvs >= 8).any() else 0
    pv_z, pv_ntracks = sample.vertices(event)
    centers = bin_centers()
    nn, kde = summary.scores["nn"], summary.scores["kde"]
    tracks = sample.tracks(event)
    nn_found = nn.choice.finder(prob[event])
    kde_found = kde.choice.finder(sample.kde[event, BASELINE_CHANNEL])
    if nn.fit is not None:
        nn_found = nn.fit(tracks, nn_found).z
    if kde.fit is not None:
        kde_found = kde.fit(tracks, kde_found).z
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.4))
    kde_axes = []
    order = np.argsort(pv_z)
    counted_sorted = pv_z[order][pv_ntracks[order] >= 5]
    # Zoom on the counted PV nearest to the middle of the crossing's vertices.
    pool = counted_sorted if counted_sorted.size else pv_z
    focus = float(pool[np.argmin(np.abs(pool - np.median(pool)))]) if pool.size else 100.0
    for ax, (lo, hi) in zip(axes, [(centers[0], centers[-1]), (focus - 12.0, focus + 12.0)], strict=True):
        sel = (centers >= lo) & (centers <= hi)
        kde_ax = ax.twinx()
        kde_axes.append(kde_ax)
        kde_ax.fill_between(
            centers[sel],
            sample.kde[event, 0][sel],
            step="mid",
            color="grey",
            alpha=0.35,
            label="KDE ch0 (tracks/mm)",
        )
        kde_ax.plot(
            centers[sel],
            sample.kde[event, 1][sel],
            color="grey",
            lw=0.8,
            ls="--",
            label="KDE ch1 (3D kernel: best vertex (x, y) per bin)",
        )
        kde_ax.set_yscale("symlog", linthresh=1.0)
        kde_ax.set_ylabel("KDE [tracks/mm]")
        ax.plot(centers[sel], prob[event][sel], color=_COLORS["nn"], lw=1.2, label="pv_prob (U-Net)")
        for z, nt in zip(pv_z, pv_ntracks, strict=True):
            if lo <= z <= hi:
                ax.axvline(z, color="green" if nt >= 5 else "red", lw=0.8, alpha=0.8)
                if hi - lo < 50:
                    ax.text(z, 1.07, f"{nt}", ha="center", fontsize=7, color="green" if nt >= 5 else "red")
        ax.plot(
            nn_found[(nn_found >= lo) & (nn_found <= hi)],
            np.full(((nn_found >= lo) & (nn_found <= hi)).sum(), 1.0),
            "v",
            color=_COLORS["nn"],
            ms=8,
            label="found (U-Net)",
        )
        ax.plot(
            kde_found[(kde_found >= lo) & (kde_found <= hi)],
            np.full(((kde_found >= lo) & (kde_found <= hi)).sum(), 0.93),
            "v",
            color=_COLORS["kde"],
            ms=8,
            label="found (KDE-only)",
        )
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, 1.15)
        ax.set_ylabel("pv_prob")
        ax.set_zorder(kde_ax.get_zorder() + 1)
        ax.patch.set_visible(False)
    axes[1].set_xlabel(
        "z [mm] (histogram coordinates); vertical lines: true PVs, green >= 5 tracks (number = tracks), red < 5"
    )
    handles, labels = axes[0].get_legend_handles_labels()
    kde_handles, kde_labels = kde_axes[0].get_legend_handles_labels()
    axes[0].legend(handles + kde_handles, labels + kde_labels, fontsize=7, loc="upper right", ncols=3)
    axes[0].set_title(
        f"pv_finder: test crossing {event} ({pv_z.size} PVs, {int((pv_ntracks >= 5).sum())} with >= 5 tracks)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return event


def _metrics_table(summary: BuildSummary) -> list[str]:
    nn, kde = summary.scores["nn"], summary.scores["kde"]
    kde_at_nn_fp = kde.curve.efficiency_at(max(nn.test.fp_per_event, 1e-9))
    lines = [
        "| method | cuts (chosen on validation) | efficiency (test) | FP / event (test) | z resolution sigma(MAD) / RMS |",
        "|---|---|---|---|---|",
    ]
    for key, score in summary.scores.items():
        lines.append(
            f"| {_LABELS[key]} | {score.cuts_text()} | {100 * score.test.efficiency:.2f}% ({score.test.n_found}/{score.test.n_true}) "
            f"| {score.test.fp_per_event:.3f} ({score.test.n_false}) | {_robust_sigma_um(score.test.dz):.0f} um / "
            f"{_rms_um(score.test.dz):.0f} um |"
        )
    target_met = nn.test.efficiency >= 0.95 and nn.test.fp_per_event <= summary.fp_budget
    better = nn.test.efficiency > kde_at_nn_fp if np.isfinite(kde_at_nn_fp) else True
    lines += [
        "",
        (
            f"- **Target (efficiency >= 95% at <= {summary.fp_budget} FP/event): "
            f"{'MET' if target_met else 'NOT MET'}** — measured {100 * nn.test.efficiency:.2f}% at "
            f"{nn.test.fp_per_event:.3f} FP/event on the test sample. Of its {nn.test.n_false} false positives, "
            f"{nn.test.n_misplaced} lie 0.5-1 mm from a true PV: vertices found with too large a z error rather "
            "than fake peaks"
            + (
                ". What limits the efficiency at this FP budget is the z resolution (see the ceiling below)."
                if 2 * nn.test.n_misplaced > nn.test.n_false
                else "."
            )
        ),
        (
            f"- Best efficiency on the test threshold scan at FP/event <= {summary.fp_budget}: U-Net "
            f"{100 * nn.curve.efficiency_at(summary.fp_budget):.2f}%, KDE-only {100 * kde.curve.efficiency_at(summary.fp_budget):.2f}% "
            "(a property of the curve; the operating point above does not use the test sample)."
        ),
        (
            f"- **Better than the KDE-only finder at equal FP: {'YES' if better else 'NO'}** — KDE-only reaches "
            f"{100 * kde_at_nn_fp:.2f}% at FP/event <= {nn.test.fp_per_event:.3f} (U-Net: {100 * nn.test.efficiency:.2f}%)."
        ),
        _ceiling_line(summary),
    ]
    return lines


def _ceiling_line(summary: BuildSummary) -> str:
    """What perfect track-to-vertex association gives with this detector model, at 0.5 mm and at the FP budget."""
    flat, fitted, full = summary.ceiling, summary.ceiling_fit, summary.ceiling_transverse_known
    return (
        "- Resolution ceiling of this detector model (truth-assisted: each PV's own tracks, perfectly associated, "
        f"inverse-variance mean of their z): {100 * flat.efficiency:.1f}% of PVs with >= 5 tracks land within 0.5 mm "
        f"(median |dz| {1000 * flat.median_dz_mm:.0f} um). At <= {summary.fp_budget} FP/event, where each PV landing "
        "beyond 0.5 mm is a false positive and the best any finder can do is to drop the worst-measured vertices, "
        f"a finder that sees only the tracks' z at the beam line (`kde[0]`) reaches at most {100 * flat.efficiency_at_budget:.1f}%. "
        "The served finder also sees the tracks in 3D (`kde[1]`) and fits its vertices in 3D. Its vertex fit, given "
        f"each PV's own tracks, puts {100 * fitted.efficiency:.1f}% within 0.5 mm, and dropping the vertices with the "
        f"largest fitted sigma_z reaches **{100 * fitted.efficiency_at_budget:.1f}%** at the FP budget: the served "
        "method's ceiling (PVs here never share tracks with a neighbour, and PVs with fewer tracks make no vertices). "
        f"With each PV's transverse position known exactly (a perfect 3D fit), {100 * full.efficiency:.1f}% land "
        f"within 0.5 mm and the ceiling at the FP budget is {100 * full.efficiency_at_budget:.1f}%"
        + (
            ": below the 95% target whatever the finder, because of the tracks' own z resolution in this detector "
            "model (MODELS.md's sigma_IP / sin(theta) at 2 < eta < 5)."
            if full.efficiency_at_budget < 0.95
            else "."
        )
    )


def _settings_lines(summary: BuildSummary) -> list[str]:
    g = summary.config.generator
    t = summary.config.train
    return [
        (
            f"- Pythia 8.317 (`pythia8mc`), pp at {g.ecm_gev / 1000:g} TeV, `SoftQCD:inelastic = on`; Pythia seeds derived "
            f"from the master seed {summary.ctx.seed} per sample and per chunk of 2000 collisions (independent of --jobs)."
        ),
        (
            f"- Per crossing N_PV ~ Poisson({g.mean_pvs}); vertex z ~ N({g.beam_z_mean_mm:g}, {g.beam_z_sigma_mm:g}) mm "
            f"(histogram coordinates, truncated to [-99, 299] mm), x, y ~ N(0, {g.beam_xy_sigma_mm:g}) mm."
        ),
        (
            f"- Tracks: charged final-state particles with {g.eta_min:g} < eta < {g.eta_max:g}, p > {g.p_min_gev:g} GeV, "
            f"efficiency {100 * g.track_efficiency:.0f}%; straight lines measured at their closest approach to the beam line "
            f"(`hepsonic_client.physics.vertices.Tracks`: z, d0, phi, cot(theta)), smeared with sigma_IP across the track (d0) "
            f"and sigma_IP / sin(theta) along the beam (z), sigma_IP = {1000 * g.ip_constant_mm:.0f} um + "
            f"{1000 * g.ip_over_pt_mm_gev:.0f} um / pT[GeV]."
        ),
        (
            "- Input: `hepsonic_client.physics.vertices.build_kde` (ch0: sum of bin-integrated Gaussians (z, sigma_z), "
            "tracks/mm, where each track's sigma_z (`track_sigma_z`) adds the beam spot's transverse size, sigma_xy / tan(theta), "
            "because a vertex off the beam line shifts a track's z of closest approach by r0 cos(dphi) / tan(theta); "
            "ch1: pv-finder's KDE-A, per bin the highest sum of track probabilities over vertex positions (x, y) on a 7 x 7 grid "
            "across the beam spot, with each track's own resolution: the 3D information that removes that shift)."
        ),
        (
            f"- Samples (independent Pythia streams): train {summary.samples['train']}, validation {summary.samples['val']}, "
            f"test {summary.samples['test']} crossings ({summary.n_true_pvs['train']} / {summary.n_true_pvs['val']} / "
            f"{summary.n_true_pvs['test']} true PVs)."
        ),
        (
            f"- Target: unit-height Gaussian bumps (sigma {t.target_sigma_mm} mm) at true PVs with >= {t.min_tracks} tracks; "
            f"no loss within {t.mask_radius_mm} mm of PVs with fewer tracks."
        ),
        (
            f"- Net: `PVUNet` 1D U-Net, 4 levels, channels 16/32/64/64, kernel 7, BatchNorm+ReLU, skips, log1p input "
            f"compression inside the graph, sigmoid output; {summary.n_parameters:,} parameters."
        ),
        (
            f"- Training: AdamW (lr {t.learning_rate:g}, one-cycle, weight decay {t.weight_decay:g}), weighted BCE, "
            f"{t.steps} steps of {t.batch_size} random {t.crop_bins}-bin windows, torch seed {summary.ctx.seed}, "
            f"{t.threads} threads."
        ),
        (
            "- Peak finder (`hepsonic_client.physics.vertices.find_vertices`): run of bins >= threshold, integral and minimum "
            "width cuts, weighted-mean z. Its cuts for every method are chosen on the validation sample (highest efficiency "
            "whose FP/event stays below 0.1 by one counting error, so that the choice holds on other crossings); "
            "the test sample is only scored."
        ),
        (
            "- Vertex fit (`hepsonic_client.physics.vertices.VertexFit`): each peak seeds a vertex (x, y, z) fitted to the "
            "tracks as straight lines with their own resolutions and the beam spot as a constraint on x, y; vertices "
            "compete for tracks (adaptive multi-vertex weights, tracks beyond chi2_cut from every vertex are outliers). "
            "The U-Net and the baseline get the same fit."
        ),
    ]


def _note_lines(summary: BuildSummary) -> list[str]:
    return [line for note in summary.notes for line in (f"> Note: {note}", "")]


def _report_command(summary: BuildSummary) -> str:
    smoke = " --smoke" if summary.ctx.smoke else ""
    return f"hepsonic-build-models --report-only --only pv_finder{smoke} --seed {summary.ctx.seed}"


def write_report(
    directory: Path, summary: BuildSummary, test: CrossingSample, test_prob: npt.NDArray[np.float32]
) -> Path:
    """Write ``README.md`` and the PNG plots of the validation report into ``directory``; return the Markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    _plot_curves(directory / "efficiency_vs_fp.png", summary)
    _plot_resolution(directory / "z_resolution.png", summary)
    _plot_efficiency_vs_tracks(directory / "efficiency_vs_ntracks.png", summary, test.pv_ntracks)
    training = directory / "training.png"
    if summary.training_curve:
        _plot_training(training, summary.train)
    training_lines = (
        ["![training](training.png)"]
        if summary.training_curve or training.is_file()
        else ["The build record holds no training history."]
    )
    if not summary.training_curve and training.is_file():
        training_lines.append("(Drawn by the build: the build record holds only the final losses.)")
    event = _plot_example(directory / "example_event.png", summary, test, test_prob)
    mode = "SMOKE (tiny data, not a validated model)" if summary.ctx.smoke else "full build"
    lines = [
        "# pv_finder validation report",
        "",
        *_note_lines(summary),
        (
            f"Mode: **{mode}**. Machine: {platform.machine()}, Python {platform.python_version()}. "
            f"Build: {summary.total_s / 60:.1f} min wall (training {summary.train.seconds / 60:.1f} min); event "
            f"generation {summary.generation_s / 60:.1f} min wall when the cached samples were made. Wall times on a "
            "2-core machine shared with other jobs."
        ),
        "",
        (
            f"Scores come from the served `model.onnx` in onnxruntime; `{_report_command(summary)}` redoes this "
            "report from the cached samples without retraining."
        ),
        "",
        "## Metrics (independent test sample)",
        "",
        *_metrics_table(summary),
        "",
        "## Efficiency vs false positives per event",
        "",
        "![efficiency vs FP](efficiency_vs_fp.png)",
        "",
        "## z resolution",
        "",
        "![z resolution](z_resolution.png)",
        "",
        "## Efficiency vs track multiplicity",
        "",
        "![efficiency vs tracks](efficiency_vs_ntracks.png)",
        "",
        f"## Example event (test crossing {event})",
        "",
        "![example event](example_event.png)",
        "",
        "## Training",
        "",
        *training_lines,
        "",
        "## Data and settings",
        "",
        *_settings_lines(summary),
        "",
        f"Rebuild: `{REBUILD_COMMAND}`",
        "",
    ]
    path = directory / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def model_card(summary: BuildSummary) -> str:
    """The Markdown of ``model_repository/pv_finder/MODEL_CARD.md``."""
    info = summary.export
    smoke = summary.ctx.smoke
    lines = [
        "# pv_finder — LHCb-style primary-vertex finder",
        "",
        (
            "**SMOKE BUILD: tiny data and a few training steps; these weights are not a validated model.**"
            if smoke
            else "Weights from the full build described below (this repository's generator and training; "
            "nothing downloaded)."
            if summary.config == FULL
            else "**Interim weights** from a shorter training than the default build (settings below); "
            "this repository's generator, nothing downloaded."
        ),
        "",
        *_note_lines(summary),
        "## Interface",
        "",
        (
            "- Input `kde` FP32 [batch, 2, 4000]: track KDE over z in [-100, 300) mm, 100 um bins, built by "
            "`hepsonic_client.physics.vertices.build_kde(tracks)` from `Tracks(z, d0, phi, cot_theta, sigma_ip)`."
        ),
        (
            "- Output `pv_prob` FP32 [batch, 4000]: per-bin PV probability; turn it into vertex seeds with "
            "`hepsonic_client.physics.vertices.find_vertices` and fit the vertices at the seeds to the tracks with "
            "`hepsonic_client.physics.vertices.VertexFit` (operating point below)."
        ),
        (
            f"- Operating point: `PeakFinder(threshold={summary.scores['nn'].choice.finder.threshold:g}, "
            f"integral_threshold={summary.scores['nn'].choice.finder.integral_threshold:g}, "
            f"min_width={summary.scores['nn'].choice.finder.min_width})` and the vertex fit "
            f"`{summary.scores['nn'].fit!r}`, published in `config.pbtxt` as the parameters `peak_finder/1` and "
            "`vertex_fit/1`; `hepsonic_client.find_primary_vertices` (and `hepsonic-reco`) use the answering "
            "version's published cuts and fit unless given others."
        ),
        "",
        "## How the weights were made",
        "",
        *(
            []
            if smoke or summary.config == FULL
            else [
                "**Interim weights: built with a shorter training than the default build (settings below).**",
                "",
            ]
        ),
        *_settings_lines(summary),
        (
            f"- Time (wall, 2-core {platform.machine()} machine shared with other jobs): event generation "
            f"{summary.generation_s / 60:.1f} min (when the cached samples were made), training "
            f"{summary.train.seconds / 60:.1f} min, this build run {summary.total_s / 60:.1f} min."
        ),
        f"- Final losses: train {summary.train.train_loss[-1]:.4f}, validation {summary.train.val_loss[-1]:.4f}.",
        "",
        "## Metrics (independent test sample; definitions as pv-finder: PV counted with >= 5 tracks, found if |dz| < 0.5 mm)",
        "",
        *_metrics_table(summary),
        "",
        (
            "Plots and the full report: `reports/pv_finder/README.md` (efficiency vs FP/event, z resolution, efficiency vs "
            "track multiplicity, an example event, training curves)."
        ),
        "",
        "## Export",
        "",
        (
            f"- `1/model.onnx` sha256 `{info.sha256}`, ONNX opset {info.opset}, dynamic batch axis; "
            f"onnxruntime vs PyTorch max |diff| {info.max_abs_diff:.2e} on 4 test crossings."
        ),
        "",
        "## Rebuild",
        "",
        "```",
        REBUILD_COMMAND if not smoke else "hepsonic-build-models --smoke --only pv_finder",
        "```",
        f"(master seed {summary.ctx.seed}: `--seed {summary.ctx.seed}`; data cached under `<workdir>/pv_finder/`).",
        "",
        (
            f"The metrics above come from `1/model.onnx` in onnxruntime (as served); `{_report_command(summary)}` "
            "recomputes them, the report and this card from the cached samples without retraining."
        ),
        "",
        "## Limitations",
        "",
        (
            "- Toy detector: no material, no secondary vertices or decays in flight, no fake tracks; the resolution model "
            "is a parametrisation, not the LHCb VELO. Published pv-finder numbers (full LHCb simulation) are a reference only."
        ),
        "",
        "<details><summary>Build configuration</summary>",
        "",
        "```",
        str({"generator": asdict(summary.config.generator), "train": asdict(summary.config.train)}),
        "```",
        "</details>",
    ]
    return "\n".join(lines)
