"""``build("ringer", ctx)``: reference tuning, cross-validation and export of both versions, then the report.

What only training can know (fold tables, epochs, export parity, times) goes into the build record
``<reports>/ringer/training.json`` and the operating points into ``thresholds_v<version>.json``; everything
measured on the test set is left to :func:`._report.report_ringer`, which reads the exported ONNX files, so a
build and a later ``--report-only`` run write the report through one path.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..context import BuildContext
from ..export import export_version
from ..report import BUILD_RECORD, build_machine, git_revision
from ..specs import SPECS
from ._data import Arrays, load_sample, training_settings, version_rows
from ._evaluate import FoldTable, efficiency, threshold_at
from ._reference import tune_t2calo
from ._report import report_ringer, thresholds_path
from ._train import TrainingSettings, cross_validate, sp_index

__all__ = ["build_ringer"]


def _edge_cases(key: str) -> npt.NDArray[np.float32]:
    """Three rows the served graph must handle: E_T below the first edge, |η| beyond 2.5, empty rings."""
    if key == "rings":
        rings = np.zeros((3, 100), dtype=np.float32)
        rings[:2, 72] = 5000.0
        return rings
    if key == "et":
        return np.array([[1.0], [500.0], [20.0]], dtype=np.float32)
    return np.array([[0.1], [-2.9], [1.0]], dtype=np.float32)


def _train_version(
    version: int, data: Arrays, ctx: BuildContext, settings: TrainingSettings
) -> dict[str, Any]:
    """Tune the reference, cross-validate, export; write the thresholds file; return the record entry."""
    rows = version_rows(version, data, ctx.seed, settings.folds)
    binning, d, label, bins, fold = rows.binning, rows.data, rows.is_electron, rows.bins, rows.fold
    pool = rows.in_cv

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
    test_rows = np.flatnonzero(rows.is_test)
    t_bins, t_label = bins[test_rows], label[test_rows]
    test_inputs = [
        torch.from_numpy(d[key][test_rows].astype(np.float32)).reshape(test_rows.size, -1)
        for key in ("rings", "et", "eta")
    ]

    def operation_thresholds(model_of_bin: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Per bin, the threshold of stacked model ``model_of_bin[b]`` at the reference P_D on the operation
        set (every cross-validation electron of the bin), as the ringer group sets it."""
        return np.array(
            [
                threshold_at(scores[model_of_bin[b], (p_bins == b) & p_label], pd_ref[b])
                for b in range(binning.n_bins)
            ]
        )

    shape = (settings.folds, binning.n_bins)
    cv_pd, cv_pf, cv_sp = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    test_pd, test_pf = np.zeros(settings.folds), np.zeros(settings.folds)
    for f in range(settings.folds):
        # The fold's model: per bin its best initialisation.
        fold_choice = f * settings.inits + np.argmax(
            cv.best_sp[f * settings.inits : (f + 1) * settings.inits], axis=0
        )
        fold_thresholds = operation_thresholds(fold_choice)
        accepted = scores[fold_choice[p_bins], np.arange(p_bins.size)] >= fold_thresholds[p_bins]
        for b in range(binning.n_bins):
            in_val = (p_bins == b) & (p_fold == f)
            cv_pd[f, b] = efficiency(accepted, in_val & p_label)
            cv_pf[f, b] = efficiency(accepted, in_val & ~p_label)
            cv_sp[f, b] = float(sp_index(cv_pd[f, b], cv_pf[f, b]))
        with torch.no_grad():
            test_scores = cv.ensemble.select(torch.from_numpy(fold_choice))(*test_inputs)[:, 0].numpy()
        test_accepted = test_scores >= fold_thresholds[t_bins]
        test_pd[f] = efficiency(test_accepted, t_label)
        test_pf[f] = efficiency(test_accepted, ~t_label)

    choice = np.argmax(cv.best_sp, axis=0)
    served = cv.ensemble.select(torch.from_numpy(choice))
    thresholds = operation_thresholds(choice)
    # ONNX-vs-PyTorch parity example: the first test candidates (inputs only; no label is looked at).
    first = np.flatnonzero(rows.is_test)[:61]
    inputs = {
        "rings": d["rings"][first].astype(np.float32),
        "et": d["et"][first].astype(np.float32).reshape(-1, 1),
        "eta": d["eta"][first].astype(np.float32).reshape(-1, 1),
    }
    example = {key: np.concatenate([values, _edge_cases(key)]) for key, values in inputs.items()}
    info = export_version(SPECS["ringer"], served, version, ctx.repository, example)
    thresholds_path(ctx, version).write_text(
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
    folds = FoldTable.from_folds(
        cv_pd, cv_pf, cv_sp, test_pd=test_pd, test_pf=test_pf, source="recorded by the build"
    )
    return {
        "sha256": info.sha256,
        "opset": info.opset,
        "max_abs_diff": info.max_abs_diff,
        "epochs": cv.epochs,
        "cross_validation": folds.to_json(),
    }


def build_ringer(ctx: BuildContext) -> None:
    """Generate (or reuse) the sample, cross-validate and export both versions, then write report and card."""
    torch.set_num_threads(1)  # see calo_gan: more threads only oversubscribe a shared 2-core machine
    torch.manual_seed(ctx.seed)
    reports = ctx.reports / "ringer"
    reports.mkdir(parents=True, exist_ok=True)
    data, data_seconds = load_sample(ctx)
    settings = training_settings(ctx.smoke)
    versions: dict[str, dict[str, Any]] = {}
    for version in SPECS["ringer"].versions:
        start = time.perf_counter()
        entry = _train_version(version, data, ctx, settings)
        versions[str(version)] = {**entry, "seconds": time.perf_counter() - start}
    record = {
        "smoke": ctx.smoke,
        "seed": ctx.seed,
        "generation_seconds": data_seconds,
        "machine": build_machine(),
        "git_revision": git_revision(),
        "versions": versions,
        "notes": [],
    }
    (reports / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    report_ringer(ctx)
