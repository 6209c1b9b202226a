"""``ringer``: ATLAS NeuralRinger-style electron trigger ensemble (v1 Run-2 binning, v2 Run-3 binning).

Data: single electrons vs jet candidates in the toy ATLAS-like calorimeter of
:mod:`hepsonic_models.calorimeter`; training: :mod:`._train`; reference: :mod:`._reference`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import torch

from ..calorimeter import RingerSampleSettings, write_ringer_sample
from ..context import BuildContext
from ..export import export_version, write_model_card
from ..report import build_machine, git_revision
from ..specs import SPECS
from ._evaluate import VersionResult, efficiency, threshold_at, version_markdown, version_plots
from ._model import BINNINGS, Binning, RingerEnsemble
from ._reference import T2CaloCuts, tune_t2calo
from ._train import TrainingSettings, cross_validate, sp_index

__all__ = [
    "BINNINGS",
    "Binning",
    "RingerEnsemble",
    "T2CaloCuts",
    "TrainingSettings",
    "build",
    "cross_validate",
    "sp_index",
    "tune_t2calo",
]

Arrays = dict[str, npt.NDArray[np.float64]]

#: Fraction of candidates held out as the independent test set.
_TEST_FRACTION = 0.25
#: Electrons are plentiful: at most this many per bin enter cross-validation (the test set keeps all).
_MAX_ELECTRONS_PER_BIN = 1500


def _sample_settings(smoke: bool) -> RingerSampleSettings:
    if smoke:
        return RingerSampleSettings(
            n_electrons=600, jet_events=((15.0, 40), (70.0, 60)), electrons_per_chunk=600, events_per_chunk=60
        )
    return RingerSampleSettings(
        n_electrons=60_000, jet_events=((15.0, 4000), (35.0, 4000), (70.0, 6000), (140.0, 2000))
    )


def _training_settings(smoke: bool) -> TrainingSettings:
    if smoke:
        return TrainingSettings(folds=2, inits=1, max_epochs=10, eval_every=5, patience=10)
    return TrainingSettings(folds=5, inits=4, max_epochs=300, patience=60)


def _load_sample(ctx: BuildContext) -> tuple[Arrays, float]:
    settings = _sample_settings(ctx.smoke)
    path = data_path(ctx)
    if not path.exists():
        write_ringer_sample(path, settings, ctx.seed, jobs=ctx.jobs)
    with h5py.File(path, "r") as stream:
        data = {key: np.asarray(stream[key][:], dtype=np.float64) for key in stream}
        # Recorded when the (cached) sample was generated, so a rebuild from cache reports the real cost.
        seconds = float(stream.attrs.get("generation_seconds", float("nan")))
    return data, seconds


def _bins(
    binning: Binning, et: npt.NDArray[np.float64], eta: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Bin index exactly as the served graph computes it."""
    module = RingerEnsemble(binning)
    with torch.no_grad():
        index = module.bin_index(
            torch.from_numpy(et.astype(np.float32)).reshape(-1, 1),
            torch.from_numpy(eta.astype(np.float32)).reshape(-1, 1),
        )
    return index.numpy().astype(np.int64)


def _split(
    bins: npt.NDArray[np.int64], label: npt.NDArray[np.bool_], folds: int, seed: int, version: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Test rows, and a fold per remaining row stratified by (bin, class); -1 = not in cross-validation."""
    rng = np.random.default_rng([seed, version])
    is_test = rng.uniform(size=bins.size) < _TEST_FRACTION
    fold = np.full(bins.size, -1, dtype=np.int64)
    for b in np.unique(bins):
        for cls in (False, True):
            rows = rng.permutation(np.flatnonzero((bins == b) & (label == cls) & ~is_test))
            if cls:
                rows = rows[:_MAX_ELECTRONS_PER_BIN]
            fold[rows] = np.arange(rows.size) % folds
    return is_test, fold


def _build_version(
    version: int, data: Arrays, ctx: BuildContext, settings: TrainingSettings
) -> VersionResult:
    binning = BINNINGS[version]
    keep = data["et"] >= binning.et_edges[0]
    d = {key: values[keep] for key, values in data.items()}
    label = d["label"] > 0.5
    bins = _bins(binning, d["et"], d["eta"])
    is_test, fold = _split(bins, label, settings.folds, ctx.seed, version)
    pool = fold >= 0

    cuts = tune_t2calo(
        bins[pool], label[pool], d["r_eta"][pool], d["e_ratio"][pool], d["r_had"][pool], binning.n_bins
    )
    ref_accept = cuts.accept(bins, d["r_eta"], d["e_ratio"], d["r_had"])
    pd_ref = np.array([efficiency(ref_accept, pool & label & (bins == b)) for b in range(binning.n_bins)])
    pd_ref = np.nan_to_num(pd_ref, nan=0.978)

    pool_rows = np.flatnonzero(pool)
    cv, scores_t, _ = cross_validate(
        d["rings"][pool_rows],
        bins[pool_rows],
        label[pool_rows],
        fold[pool_rows],
        binning,
        settings,
        ctx.seed + version,
    )
    scores = scores_t.numpy().astype(np.float64)
    p_bins, p_label, p_fold = bins[pool_rows], label[pool_rows], fold[pool_rows]
    shape = (settings.folds, binning.n_bins)
    cv_pd, cv_pf, cv_sp = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for f in range(settings.folds):
        for b in range(binning.n_bins):
            m = f * settings.inits + int(
                np.argmax(cv.best_sp[f * settings.inits : (f + 1) * settings.inits, b])
            )
            in_bin = p_bins == b
            threshold = threshold_at(scores[m, in_bin & p_label & (p_fold != f)], pd_ref[b])
            accepted = scores[m] >= threshold
            cv_pd[f, b] = efficiency(accepted, in_bin & p_label & (p_fold == f))
            cv_pf[f, b] = efficiency(accepted, in_bin & ~p_label & (p_fold == f))
            cv_sp[f, b] = float(sp_index(cv_pd[f, b], cv_pf[f, b]))

    choice = np.argmax(cv.best_sp, axis=0)
    served = cv.ensemble.select(torch.from_numpy(choice))
    thresholds = np.array(
        [threshold_at(scores[choice[b], (p_bins == b) & p_label], pd_ref[b]) for b in range(binning.n_bins)]
    )

    test_rows = np.flatnonzero(is_test)
    inputs = {
        "rings": d["rings"][test_rows].astype(np.float32),
        "et": d["et"][test_rows].astype(np.float32).reshape(-1, 1),
        "eta": d["eta"][test_rows].astype(np.float32).reshape(-1, 1),
    }
    with torch.no_grad():
        discriminant = served(*(torch.from_numpy(inputs[k]) for k in ("rings", "et", "eta"))).numpy()[:, 0]
    t_bins, t_label = bins[test_rows], label[test_rows]
    nn_accept = discriminant >= thresholds[t_bins]
    t_ref = ref_accept[test_rows]
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
                threshold_at(discriminant[t_label & (t_bins == b)].astype(np.float64), float(target))
                for b in range(binning.n_bins)
            ]
        )
        scanned = discriminant >= scan[t_bins]
        roc_pd.append(efficiency(scanned, t_label))
        roc_pf.append(efficiency(scanned, ~t_label))
    example = {key: np.concatenate([values[:61], _edge_cases(key)]) for key, values in inputs.items()}
    info = export_version(SPECS["ringer"], served, version, ctx.repository, example)
    result = VersionResult(
        version=version,
        binning=binning,
        thresholds=thresholds,
        reference_pd_train=pd_ref,
        cv_pd=cv_pd,
        cv_pf=cv_pf,
        cv_sp=cv_sp,
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
            "n_cv_rows": float(pool.sum()),
        },
        roc=(np.array(roc_pf), np.array(roc_pd)),
        epochs=cv.epochs,
        sha256=info.sha256,
        opset=info.opset,
        max_abs_diff=info.max_abs_diff,
    )
    reports = ctx.reports / "ringer"
    result.figures = version_plots(result, reports)
    (reports / f"thresholds_v{version}.json").write_text(
        json.dumps(
            {
                "version": version,
                "et_edges": [e if e != float("inf") else "inf" for e in binning.et_edges],
                "eta_edges": list(binning.eta_edges),
                "bin_order": "E_T-major: bin = et_bin * n_eta + eta_bin",
                "thresholds": thresholds.tolist(),
                "reference_pd": pd_ref.tolist(),
                "t2calo_cuts": {
                    "r_eta_min": cuts.r_eta_min.tolist(),
                    "e_ratio_min": cuts.e_ratio_min.tolist(),
                    "r_had_max": cuts.r_had_max.tolist(),
                },
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    return result


def _edge_cases(key: str) -> npt.NDArray[np.float32]:
    """Three rows the served graph must handle: E_T below the first edge, |η| beyond 2.5, empty rings."""
    if key == "rings":
        rings = np.zeros((3, 100), dtype=np.float32)
        rings[:2, 72] = 5000.0
        return rings
    if key == "et":
        return np.array([[1.0], [500.0], [20.0]], dtype=np.float32)
    return np.array([[0.1], [-2.9], [1.0]], dtype=np.float32)


def build(name: str, ctx: BuildContext) -> None:
    """Generate the sample, cross-validate and export both versions, write the card and the report."""
    if name != "ringer":
        raise ValueError(f"hepsonic_models.ringer builds only 'ringer', not {name!r}")
    torch.set_num_threads(1)  # see calo_gan: more threads only oversubscribe a shared 2-core machine
    torch.manual_seed(ctx.seed)
    (ctx.reports / "ringer").mkdir(parents=True, exist_ok=True)
    data, data_seconds = _load_sample(ctx)
    settings = _training_settings(ctx.smoke)
    results = []
    timings = {}
    for version in SPECS["ringer"].versions:
        start = time.perf_counter()
        results.append(_build_version(version, data, ctx, settings))
        timings[version] = time.perf_counter() - start
    _write_documents(ctx, data, results, settings, data_seconds, timings)


def _write_documents(
    ctx: BuildContext,
    data: Arrays,
    results: list[VersionResult],
    settings: TrainingSettings,
    data_seconds: float,
    timings: dict[int, float],
) -> None:
    sample = _sample_settings(ctx.smoke)
    reports = ctx.reports / "ringer"
    metrics = {
        f"v{r.version}": {
            **r.inclusive,
            "sha256": r.sha256,
            "epochs": r.epochs,
            "seconds": timings[r.version],
            "fold_std_pd_mean": r.fold_std_pd(),
        }
        for r in results
    }
    (reports / "metrics.json").write_text(
        json.dumps({"smoke": ctx.smoke, **metrics}, indent=2) + "\n", encoding="utf-8"
    )
    command = (
        "hepsonic-build-models --only ringer" + (" --smoke" if ctx.smoke else "") + f" --seed {ctx.seed}"
    )
    smoke_note = (
        "\n> **SMOKE BUILD**: tiny data and a few epochs, for CI only. These weights are not physics.\n"
        if ctx.smoke
        else ""
    )
    n_e = int((data["label"] > 0.5).sum())
    n_j = int((data["label"] < 0.5).sum())
    jets = ", ".join(f"{n:,} events with p̂_T > {pt:g} GeV" for pt, n in sample.jet_events)
    summary_rows = "\n".join(
        f"| {r.version} | {r.binning.n_bins} | {100 * r.inclusive['pd_ref']:.2f} | {100 * r.inclusive['pf_ref']:.2f} | "
        f"{100 * r.inclusive['pd_nn']:.2f} | {100 * r.inclusive['pf_nn']:.2f} | "
        f"{r.inclusive['pf_ref'] / max(r.inclusive['pf_nn'], 1e-9):.2f}x | {'yes' if r.target_met() else '**NO**'} | "
        f"`{r.sha256}` |"
        for r in results
    )
    body = "\n\n".join(version_markdown(r, "../../reports/ringer/") for r in results)
    card = f"""# ringer — NeuralRinger-style electron trigger ensemble
{smoke_note}
**What it does.** For an electron candidate, `rings` (100 ring E_T sums in MeV: PS 8, EM1 64, EM2 8, EM3 8,
HAD1-3 4 each; build them with `hepsonic_client.physics.rings`), `et` (calibrated EM cluster E_T, GeV) and `eta`
give `discriminant` in (-1, 1); accept if it is ≥ the threshold of the candidate's (E_T, |η|) bin
(`reports/ringer/thresholds_v<version>.json`). One ONNX graph holds every bin's 100 → 5 tanh → 1 tanh net
(stacked weights gathered by the bin computed in-graph from `et` and `|eta|`; rings normalised in-graph by
|Σ rings|). E_T below the first edge uses the first E_T bin; |η| ≥ 2.5 the last |η| bin.

| version | bins | P_D ref [%] | P_F ref [%] | P_D NN [%] | P_F NN [%] | P_F ref / P_F NN | target ≥ 3x | sha256 of model.onnx |
|---|---|---|---|---|---|---|---|---|
{summary_rows}

(Independent test set, inclusive; NN thresholds per bin at the reference's P_D in that bin.)

## How the weights were made
- **Data** (generated here, seed {ctx.seed}): {sample.n_electrons:,} single electrons (E_T log-uniform 4-100 GeV,
  |η| < 2.47) and Pythia 8.317 13 TeV `HardQCD:all` jets ({jets}; harder slices populate the high-E_T bins, like
  ATLAS's JF17/35/50 samples; the slices are mixed unweighted) in the toy ATLAS-like 7-layer calorimeter
  (`hepsonic_models.calorimeter`: GFlash-style EM showers behind η-dependent dead material, hadrons as MIPs up to
  an exponential interaction point then a Gamma-profile hadronic shower with e/h = 0.7, solenoid bending of
  charged tracks, cell noise, in-time pile-up μ ~ U[15, 60] with baseline subtraction). Jet candidates are the
  hottest 0.1 x 0.1 e/gamma tower of each event (≥ 3 GeV) and the next at ΔR > 0.4. Kept: cluster E_T ≥ 4 GeV:
  {n_e:,} electrons and {n_j:,} jet candidates; {100 * _TEST_FRACTION:.0f}% held out as the test set, at most
  {_MAX_ELECTRONS_PER_BIN:,} electrons per bin in cross-validation. Generation took {data_seconds / 60:.1f} min
  (wall clock, on the build machine shared with other jobs).
- **Training** (as the ringer group): {settings.folds}-fold cross-validation x {settings.inits} initialisations,
  all bins at once, full-batch RProp on MSE to ±1 with classes balanced per bin, early stopping on the validation
  SP index (patience {settings.patience} epochs, max {settings.max_epochs}); per bin the (fold, init) with the best
  validation SP is served; its threshold is set on the cross-validation electrons at the reference P_D of that
  bin. Time: {", ".join(f"v{v} {t / 60:.1f} min" for v, t in timings.items())} on {build_machine()}; git {git_revision()}.
- **Reference**: T2Calo-like cuts (R_η ≥ c in EM2, E_ratio ≥ c in EM1, R_had ≤ c), tuned per bin on the
  cross-validation rows to P_D = 97.8%.
- **Export**: ONNX opset {results[0].opset}, dynamic batch axis; max |onnxruntime - PyTorch| on example inputs
  (incl. out-of-range E_T/η and empty rings): {", ".join(f"v{r.version} {r.max_abs_diff:.1e}" for r in results)}.
- **Rebuild**: `{command}` (or `make models ARGS="--only ringer"`).

## Validation
{body}

Numbers: `reports/ringer/metrics.json`; full report: `reports/ringer/README.md`.
"""
    write_model_card(ctx.repository, "ringer", card)
    (reports / "README.md").write_text(
        f"# ringer: validation report\n{smoke_note}\nSee the model card `model_repository/ringer/MODEL_CARD.md` for the "
        "data and training.\n\n" + "\n\n".join(version_markdown(r, "") for r in results) + "\n",
        encoding="utf-8",
    )


def data_path(ctx: BuildContext) -> Path:
    """Where the build caches its generated sample."""
    return ctx.workdir / "ringer" / f"sample_{'smoke' if ctx.smoke else 'full'}_seed{ctx.seed}.h5"
