"""``report("ringer", ctx)``: the validation report and model card from the served ONNX files.

Inputs: ``<repository>/ringer/<version>/model.onnx`` (run with onnxruntime, as Triton serves it), the cached
sample (regenerated deterministically when missing), the operating points ``thresholds_v<version>.json`` and
the build record ``training.json`` (fold tables, epochs, export parity, times) that the build left in
``<reports>/ringer/``. Nothing is retrained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..context import BuildContext
from ..export import run_served, write_model_card
from ..report import check_served_file, read_build_record
from ..specs import SPECS
from ._data import (
    MAX_ELECTRONS_PER_BIN,
    TEST_FRACTION,
    Arrays,
    load_sample,
    sample_settings,
    training_settings,
    version_rows,
)
from ._evaluate import FoldTable, VersionResult, efficiency, threshold_at, version_markdown, version_plots
from ._reference import T2CaloCuts

__all__ = ["report_ringer", "thresholds_path"]

#: The build record (what only training knows), next to the report.
_SPEC = SPECS["ringer"]


def thresholds_path(ctx: BuildContext, version: int) -> Path:
    """The operating point of ``version``: per-bin NN thresholds, reference P_D and T2Calo cuts."""
    return ctx.reports / "ringer" / f"thresholds_v{version}.json"


def _onnx_path(ctx: BuildContext, version: int) -> Path:
    return ctx.repository / "ringer" / str(version) / "model.onnx"


def _read_inputs(ctx: BuildContext) -> dict[str, Any]:
    """The build record, after checking every input of the report exists and the ONNX files are the recorded
    ones."""
    required = []
    for version in _SPEC.versions:
        required += [_onnx_path(ctx, version), thresholds_path(ctx, version)]
    record = read_build_record(ctx, "ringer", required=required)
    for version in _SPEC.versions:
        check_served_file("ringer", _onnx_path(ctx, version), record["versions"][str(version)]["sha256"])
    return record


def _served_discriminant(path: Path, inputs: dict[str, npt.NDArray[np.float32]], threads: int) -> Any:
    return run_served(path, _SPEC, inputs, threads=threads)["discriminant"][:, 0].astype(np.float64)


def _evaluate_version(version: int, data: Arrays, ctx: BuildContext, entry: dict[str, Any]) -> VersionResult:
    """Score the served ``version`` and the T2Calo reference on the test rows at the recorded operating point."""
    rows = version_rows(version, data, ctx.seed, training_settings(ctx.smoke).folds)
    binning = rows.binning
    operating = json.loads(thresholds_path(ctx, version).read_text(encoding="utf-8"))
    thresholds = np.asarray(operating["thresholds"], dtype=np.float64)
    if thresholds.size != binning.n_bins:
        raise RuntimeError(
            f"model 'ringer' version {version}: {thresholds_path(ctx, version)} has {thresholds.size} "
            f"thresholds, expected {binning.n_bins} (one per bin)"
        )
    cuts = T2CaloCuts(**{key: np.asarray(values) for key, values in operating["t2calo_cuts"].items()})

    test_rows = np.flatnonzero(rows.is_test)
    d = rows.data
    inputs = {
        "rings": d["rings"][test_rows].astype(np.float32),
        "et": d["et"][test_rows].astype(np.float32).reshape(-1, 1),
        "eta": d["eta"][test_rows].astype(np.float32).reshape(-1, 1),
    }
    discriminant = _served_discriminant(_onnx_path(ctx, version), inputs, max(1, ctx.jobs))
    t_bins, t_label = rows.bins[test_rows], rows.is_electron[test_rows]
    nn_accept = discriminant >= thresholds[t_bins]
    t_ref = cuts.accept(t_bins, d["r_eta"][test_rows], d["e_ratio"][test_rows], d["r_had"][test_rows])
    per_bin = {
        name: np.array([efficiency(acc, cls & (t_bins == b)) for b in range(binning.n_bins)])
        for name, acc, cls in (
            ("pd_nn", nn_accept, t_label),
            ("pf_nn", nn_accept, ~t_label),
            ("pd_ref", t_ref, t_label),
            ("pf_ref", t_ref, ~t_label),
        )
    }
    # ROC of the per-bin selection: a common P_D target scanned in every bin (display only: these thresholds
    # are quantiles of the test electrons; the served operating point above uses training thresholds).
    roc_pd, roc_pf = [], []
    for target in np.linspace(0.80, 0.9995, 60):
        scan = np.array(
            [
                threshold_at(discriminant[t_label & (t_bins == b)], float(target))
                for b in range(binning.n_bins)
            ]
        )
        scanned = discriminant >= scan[t_bins]
        roc_pd.append(efficiency(scanned, t_label))
        roc_pf.append(efficiency(scanned, ~t_label))
    result = VersionResult(
        version=version,
        binning=binning,
        thresholds=thresholds,
        cv=FoldTable.from_json(entry["cross_validation"]),
        test_counts=np.bincount(t_bins[~t_label], minlength=binning.n_bins),
        test_pd_nn=per_bin["pd_nn"],
        test_pf_nn=per_bin["pf_nn"],
        test_pd_ref=per_bin["pd_ref"],
        test_pf_ref=per_bin["pf_ref"],
        inclusive={
            "pd_nn": efficiency(nn_accept, t_label),
            "pf_nn": efficiency(nn_accept, ~t_label),
            "pd_ref": efficiency(t_ref, t_label),
            "pf_ref": efficiency(t_ref, ~t_label),
            "n_test_electrons": float(t_label.sum()),
            "n_test_jets": float((~t_label).sum()),
            "n_cv_rows": float(rows.in_cv.sum()),
        },
        roc=(np.array(roc_pf), np.array(roc_pd)),
        epochs=int(entry["epochs"]),
        sha256=str(entry["sha256"]),
        opset=int(entry["opset"]),
        max_abs_diff=float(entry["max_abs_diff"]),
    )
    result.figures = version_plots(result, ctx.reports / "ringer")
    return result


def report_ringer(ctx: BuildContext) -> Path:
    """Write ``<reports>/ringer/`` (README, figures, metrics.json) and the model card; return the README."""
    record = _read_inputs(ctx)
    data, _ = load_sample(ctx)
    results = [
        _evaluate_version(version, data, ctx, record["versions"][str(version)]) for version in _SPEC.versions
    ]
    return _write_documents(ctx, data, results, record)


def _write_documents(
    ctx: BuildContext, data: Arrays, results: list[VersionResult], record: dict[str, Any]
) -> Path:
    sample = sample_settings(ctx.smoke)
    settings = training_settings(ctx.smoke)
    reports = ctx.reports / "ringer"
    timings = {int(v): float(entry["seconds"]) for v, entry in record["versions"].items()}
    metrics = {
        f"v{r.version}": {
            **r.inclusive,
            "sha256": r.sha256,
            "epochs": r.epochs,
            "seconds": timings[r.version],
            "fold_std_pd_test_inclusive": r.fold_std_pd(),
            "fold_std_pd_validation_per_bin_mean": r.fold_std_pd_per_bin(),
        }
        for r in results
    }
    (reports / "metrics.json").write_text(
        json.dumps({"smoke": ctx.smoke, **metrics}, indent=2) + "\n", encoding="utf-8"
    )
    smoke_flag = " --smoke" if ctx.smoke else ""
    command = f"hepsonic-build-models --only ringer{smoke_flag} --seed {ctx.seed}"
    report_command = f"hepsonic-build-models --report-only --only ringer{smoke_flag} --seed {ctx.seed}"
    smoke_note = (
        "\n> **SMOKE BUILD**: tiny data and a few epochs, for CI only. These weights are not physics.\n"
        if ctx.smoke
        else ""
    )
    notes = "".join(f"\n> Note: {note}\n" for note in record.get("notes", []))
    n_e = int((data["label"] > 0.5).sum())
    n_j = int((data["label"] < 0.5).sum())
    jets = ", ".join(f"{n:,} events with p̂_T > {pt:g} GeV" for pt, n in sample.jet_events)
    data_seconds = float(record["generation_seconds"])
    summary_rows = "\n".join(
        f"| {r.version} | {r.binning.n_bins} | {100 * r.inclusive['pd_ref']:.2f} | {100 * r.inclusive['pf_ref']:.2f} | "
        f"{100 * r.inclusive['pd_nn']:.2f} | {100 * r.inclusive['pf_nn']:.2f} | "
        f"{r.inclusive['pf_ref'] / max(r.inclusive['pf_nn'], 1e-9):.2f}x | {'yes' if r.target_met() else '**NO**'} | "
        f"{100 * r.fold_std_pd():.3f} | {'yes' if r.fold_target_met() else '**NO**'} | "
        f"`{r.sha256}` |"
        for r in results
    )
    body = "\n\n".join(version_markdown(r, "../../reports/ringer/") for r in results)
    provenance = (
        "Test-set numbers are computed with onnxruntime on the served `model.onnx` files at the operating points "
        f"of `reports/ringer/thresholds_v<version>.json`; `{report_command}` recomputes them from the cached "
        "sample without retraining. The cross-validation tables need the fold models, which only training has: "
        "they come from the build record `reports/ringer/training.json`."
    )
    card = f"""# ringer — NeuralRinger-style electron trigger ensemble
{smoke_note}{notes}
**What it does.** For an electron candidate, `rings` (100 ring E_T sums in MeV: PS 8, EM1 64, EM2 8, EM3 8,
HAD1-3 4 each; build them with `hepsonic_client.physics.rings`), `et` (calibrated EM cluster E_T, GeV) and `eta`
give `discriminant` in (-1, 1); accept if it is ≥ the threshold of the candidate's (E_T, |η|) bin
(`reports/ringer/thresholds_v<version>.json`). One ONNX graph holds every bin's 100 → 5 tanh → 1 tanh net
(stacked weights gathered by the bin computed in-graph from `et` and `|eta|`; rings normalised in-graph by
|Σ rings|). E_T below the first edge uses the first E_T bin; |η| ≥ 2.5 the last |η| bin.

| version | bins | P_D ref [%] | P_F ref [%] | P_D NN [%] | P_F NN [%] | P_F ref / P_F NN | target ≥ 3x | fold std of P_D [%] | target ≤ 0.1% | sha256 of model.onnx |
|---|---|---|---|---|---|---|---|---|---|---|
{summary_rows}

(Independent test set, inclusive; NN thresholds per bin at the reference's P_D in that bin. Fold std: the
{settings.folds} fold models, each with its thresholds from the operation set, on the test set.)

## How the weights were made
- **Data** (generated here, seed {ctx.seed}): {sample.n_electrons:,} single electrons (E_T log-uniform 4-100 GeV,
  |η| < 2.47) and Pythia 8.317 13 TeV `HardQCD:all` jets ({jets}; harder slices populate the high-E_T bins, like
  ATLAS's JF17/35/50 samples; the slices are mixed unweighted) in the toy ATLAS-like 7-layer calorimeter
  (`hepsonic_models.calorimeter`: GFlash-style EM showers behind η-dependent dead material, hadrons as MIPs up to
  an exponential interaction point then a Gamma-profile hadronic shower with e/h = 0.7, solenoid bending of
  charged tracks, cell noise, in-time pile-up μ ~ U[15, 60] with baseline subtraction). Jet candidates are the
  hottest 0.1 x 0.1 e/gamma tower of each event (≥ 3 GeV) and the next at ΔR > 0.4. Kept: cluster E_T ≥ 4 GeV:
  {n_e:,} electrons and {n_j:,} jet candidates; {100 * TEST_FRACTION:.0f}% held out as the test set, at most
  {MAX_ELECTRONS_PER_BIN:,} electrons per bin in cross-validation. Generation took {data_seconds / 60:.1f} min
  (wall clock, on the build machine shared with other jobs).
- **Training** (as the ringer group): {settings.folds}-fold cross-validation x {settings.inits} initialisations,
  all bins at once, full-batch RProp on MSE to ±1 with classes balanced per bin, early stopping on the validation
  SP index (patience {settings.patience} epochs, max {settings.max_epochs}); per bin the (fold, init) with the best
  validation SP is served; its threshold is set on the cross-validation electrons at the reference P_D of that
  bin. Time: {", ".join(f"v{v} {t / 60:.1f} min" for v, t in timings.items())} on {record["machine"]}; git {record["git_revision"]}.
- **Reference**: T2Calo-like cuts (R_η ≥ c in EM2, E_ratio ≥ c in EM1, R_had ≤ c), tuned per bin on the
  cross-validation rows to P_D = 97.8%.
- **Export**: ONNX opset {results[0].opset}, dynamic batch axis; max |onnxruntime - PyTorch| on example inputs
  (incl. out-of-range E_T/η and empty rings): {", ".join(f"v{r.version} {r.max_abs_diff:.1e}" for r in results)}.
- **Rebuild**: `{command}` (or `make models ARGS="--only ringer"`).
- **Report only**: {provenance}

## Validation
{body}

Numbers: `reports/ringer/metrics.json`; full report: `reports/ringer/README.md`.
"""
    write_model_card(ctx.repository, "ringer", card)
    readme = reports / "README.md"
    readme.write_text(
        f"# ringer: validation report\n{smoke_note}{notes}\nSee the model card "
        "`model_repository/ringer/MODEL_CARD.md` for the data and training.\n\n"
        f"{provenance}\n\n" + "\n\n".join(version_markdown(r, "") for r in results) + "\n",
        encoding="utf-8",
    )
    return readme
