"""One tagger build: data -> inputs -> training -> baseline -> export -> report and model card."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hepsonic_client.physics.jets import (
    MASS_DECORRELATED_PARAMETER,
    build_tagger_inputs,
    mass_decorrelated_cuts_to_json,
)

from ..context import BuildContext
from ..export import export_version, publish_parameters, run_served, write_model_card
from ..report import BUILD_RECORD, check_served_file, read_build_record
from ..specs import SPECS
from ._evaluate import (
    DecorrelatedPoint,
    RocSummary,
    evaluate_decorrelated,
    fit_decorrelated_cuts,
    fit_mass_tau32_baseline,
    summarise_roc,
    tau32_of,
)
from ._generate import GeneratorSettings, JetSample, generate_jets, load_jets
from ._networks import ParticleNetLite, ParticleTransformerSmall, count_parameters
from ._report import (
    HEADLINE_QCD_EFFICIENCY,
    SCULPTING_JSD_LIMIT,
    TARGET_AUC,
    TARGET_REJECTION,
    TaggerValidation,
    format_rejection,
    plot_validation,
    rejection_text,
    rejection_with_error,
    verdict,
)
from ._train import TrainingSettings, train_tagger

__all__ = ["TAGGER_NAMES", "build_tagger", "report_tagger"]

#: Training history and export facts left by the build for the report.
TAGGER_NAMES = ("particlenet_lite", "part_small")
_TRAIN_FRACTION = 0.50
_VALIDATION_FRACTION = 0.10  # the rest (40%) is the test set, used only for the final numbers


@dataclass(frozen=True)
class _Recipe:
    generator: GeneratorSettings
    training: TrainingSettings


def _recipe(name: str, ctx: BuildContext) -> _Recipe:
    if ctx.smoke:
        generator = GeneratorSettings(n_jets_per_class=40, jets_per_chunk=40, seed=ctx.seed)
        training = TrainingSettings(epochs=1, batch_size=16, learning_rate=1e-3, seed=ctx.seed, max_steps=3)
    else:
        # 200k jets: 100k to train on, and 40k QCD test jets so that 1/ε_B ~ 1000 at ε_S = 30% rests on
        # dozens of passing jets, not a handful. Epochs sized to about 20 minutes each on 2 cores.
        generator = GeneratorSettings(n_jets_per_class=100_000, jets_per_chunk=2500, seed=ctx.seed)
        if name == "particlenet_lite":
            training = TrainingSettings(epochs=6, batch_size=256, learning_rate=3e-3, seed=ctx.seed)
        else:
            training = TrainingSettings(epochs=2, batch_size=128, learning_rate=1e-3, seed=ctx.seed)
    return _Recipe(generator, training)


def _network(name: str) -> nn.Module:
    if name == "particlenet_lite":
        return ParticleNetLite()
    if name == "part_small":
        return ParticleTransformerSmall()
    raise ValueError(f"hepsonic_models.jets builds particlenet_lite and part_small, not {name!r}")


def _split(
    n_jets: int, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    order = np.random.default_rng(seed).permutation(n_jets)
    n_train = int(_TRAIN_FRACTION * n_jets)
    n_validation = int(_VALIDATION_FRACTION * n_jets)
    return order[:n_train], order[n_train : n_train + n_validation], order[n_train + n_validation :]


def _inputs(sample: JetSample) -> dict[str, npt.NDArray[np.float32]]:
    return build_tagger_inputs(sample.constituents, jet_p4=sample.jet_p4)


def _export_example(
    name: str, inputs: dict[str, npt.NDArray[np.float32]]
) -> dict[str, npt.NDArray[np.float32]]:
    """A few real jets plus a jet with a single constituent (mostly padding) for the parity check."""
    spec = SPECS[name]
    example = {t.name: inputs[t.name][:15].copy() for t in spec.inputs}
    sparse = {t.name: inputs[t.name][:1].copy() for t in spec.inputs}
    for tensor in sparse.values():
        tensor[..., 1:] = 0.0
    return {key: np.concatenate([example[key], sparse[key]]) for key in example}


def _check_name(name: str) -> None:
    if name not in TAGGER_NAMES:
        raise ValueError(f"hepsonic_models.jets builds particlenet_lite and part_small, not {name!r}")


@dataclass(frozen=True)
class _Data:
    validation: JetSample
    test: JetSample
    train: JetSample
    n_split: tuple[int, int, int]
    generation_seconds: float


def _data(recipe: _Recipe, ctx: BuildContext) -> _Data:
    mode = "smoke" if ctx.smoke else "full"
    path = ctx.workdir / "jets" / f"jets_{mode}_seed{ctx.seed}_n{recipe.generator.n_jets_per_class}.h5"
    start = time.perf_counter()
    generate_jets(recipe.generator, path, jobs=ctx.jobs)
    seconds = time.perf_counter() - start
    sample = load_jets(path)
    train_index, validation_index, test_index = _split(len(sample), ctx.seed)
    return _Data(
        validation=sample.take(validation_index),
        test=sample.take(test_index),
        train=sample.take(train_index),
        n_split=(len(train_index), len(validation_index), len(test_index)),
        generation_seconds=seconds,
    )


def build_tagger(name: str, ctx: BuildContext) -> None:
    """Build ``name`` (see :func:`hepsonic_models.jets.build`): data, training, export, then the report."""
    _check_name(name)
    started = time.perf_counter()
    recipe = _recipe(name, ctx)
    torch.set_num_threads(max(1, ctx.jobs))
    data = _data(recipe, ctx)
    spec = SPECS[name]
    names = tuple(t.name for t in spec.inputs)
    validation_inputs = _inputs(data.validation)

    torch.manual_seed(ctx.seed)
    result = train_tagger(
        _network(name),
        names,
        (_inputs(data.train), data.train.label),
        (validation_inputs, data.validation.label),
        recipe.training,
        description=name,
    )
    # The parity example comes from validation jets: the test jets are touched only by the report.
    info = export_version(spec, result.network, 1, ctx.repository, _export_example(name, validation_inputs))
    record = {
        "train_loss": result.train_loss,
        "validation_loss": result.validation_loss,
        "best_epoch": result.best_epoch,
        "training_seconds": result.seconds,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "generation_seconds": data.generation_seconds,
        "build_seconds": time.perf_counter() - started,
        "parameters": count_parameters(result.network),
        "onnx_sha256": info.sha256,
        "onnx_opset": info.opset,
        "onnx_max_abs_diff": info.max_abs_diff,
    }
    folder = ctx.reports / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    report_tagger(name, ctx)


def _onnx_top_probability(
    path: Path, name: str, inputs: dict[str, npt.NDArray[np.float32]], threads: int
) -> npt.NDArray[np.float32]:
    result: npt.NDArray[np.float32] = run_served(path, SPECS[name], inputs, threads=threads)["softmax"][
        :, 0
    ].astype(np.float32)
    return result


def report_tagger(name: str, ctx: BuildContext) -> Path:
    """Validate the served ``<repository>/<name>/1/model.onnx`` on the test jets; write report and card.

    Scores come from onnxruntime on the exported file (what Triton serves), the baseline's mass window from
    the validation jets. Needs the training record the build left in ``<reports>/<name>/``. Returns the
    report's path.
    """
    _check_name(name)
    folder = ctx.reports / name
    onnx_path = ctx.repository / name / "1" / "model.onnx"
    record = read_build_record(ctx, name, required=[onnx_path])
    recipe = _recipe(name, ctx)
    data = _data(recipe, ctx)
    threads = max(1, ctx.jobs)
    score = _onnx_top_probability(onnx_path, name, _inputs(data.test), threads)
    test, validation = data.test, data.validation
    baseline_cuts = fit_mass_tau32_baseline(validation.label, validation.jet_mass, validation.tau)
    # The mass-decorrelated cuts are fitted on the validation jets and served with the model, so a client's
    # working point is always the answering version's.
    validation_score = _onnx_top_probability(onnx_path, name, _inputs(validation), threads)
    cuts = fit_decorrelated_cuts(validation.label, validation_score, validation.jet_mass)
    publish_parameters(
        SPECS[name], ctx.repository, 1, {MASS_DECORRELATED_PARAMETER: mass_decorrelated_cuts_to_json(cuts)}
    )
    decorrelated = [
        evaluate_decorrelated(cut, test.label, score, test.jet_mass, seed=ctx.seed) for cut in cuts
    ]
    summary, plots = plot_validation(
        name,
        folder,
        labels=test.label,
        score=score,
        mass=test.jet_mass,
        network=summarise_roc(test.label, score),
        baseline=summarise_roc(test.label, baseline_cuts.score(test.jet_mass, tau32_of(test.tau))),
        baseline_cuts=baseline_cuts,
        train_loss=record["train_loss"],
        validation_loss=record["validation_loss"],
        decorrelated=decorrelated,
    )
    check_served_file(name, onnx_path, record["onnx_sha256"])
    common: dict[str, Any] = {
        "name": name,
        "ctx": ctx,
        "recipe": recipe,
        "record": record,
        "validation": summary,
        "n_split": data.n_split,
    }
    # The card next to the ONNX file links the plots in the reports folder; the report links them locally.
    card_to_report = Path(os.path.relpath(folder.resolve(), (ctx.repository / name).resolve()))
    write_model_card(
        ctx.repository, name, _card(**common, plots=[(card_to_report / p.name).as_posix() for p in plots])
    )
    report = folder / "README.md"
    report.write_text(_card(**common, plots=[p.name for p in plots]), encoding="utf-8")
    return report


def _beats(network: RocSummary, baseline: RocSummary) -> str:
    """Whether the tagger's 1/ε_B at 30% exceeds the baseline's by more than the combined counting error."""
    if np.isinf(network.rejection_at_30) and np.isinf(baseline.rejection_at_30):
        return "undetermined (no QCD jet passes either cut)"
    if np.isinf(network.rejection_at_30):
        return "yes"
    if np.isinf(baseline.rejection_at_30):
        return "no"
    combined = np.hypot(
        network.rejection_at_30 / np.sqrt(network.n_background / network.rejection_at_30),
        baseline.rejection_at_30 / np.sqrt(baseline.n_background / baseline.rejection_at_30),
    )
    return "yes" if network.rejection_at_30 - baseline.rejection_at_30 > combined else "no"


def _rejection_with_error(point: DecorrelatedPoint) -> str:
    if point.n_background_pass == 0:
        return "> (no QCD jet passes)"
    return rejection_with_error(1.0 / point.background_efficiency, point.n_background_pass)


def _headline_decorrelated_row(point: DecorrelatedPoint | None) -> str:
    if point is None:
        return f"| QCD mass sculpting by the mass-decorrelated cut | not measured | | <= {SCULPTING_JSD_LIMIT} | n/a |"
    return (
        f"| QCD mass sculpting by the mass-decorrelated cut (QCD efficiency {point.cut.qcd_efficiency:.0%} at "
        f"every mass, see below): JSD | {point.jsd:.3f} (counting alone: {point.jsd_random:.3f}), at "
        f"ε_S = {point.signal_efficiency:.1%} and 1/ε_B = {_rejection_with_error(point)} | | "
        f"<= {SCULPTING_JSD_LIMIT} | {verdict(point.jsd <= SCULPTING_JSD_LIMIT)} |"
    )


def _decorrelated_section(points: tuple[DecorrelatedPoint, ...], n_validation: int) -> list[str]:
    rows = [
        (
            f"| {point.cut.qcd_efficiency:.1%} | {point.background_efficiency:.2%} | "
            f"{_rejection_with_error(point)} | {point.signal_efficiency:.1%} | {point.jsd:.3f} | "
            f"{point.jsd_random:.3f} |"
        )
        for point in points
    ]
    return [
        "## Mass-decorrelated working points",
        "",
        (
            "A fixed cut on P(top) keeps mostly QCD jets near the top mass, which destroys the mass sidebands a "
            "background estimate needs. These cuts instead follow the jet mass, so that the same fraction of QCD "
            "jets passes at every mass (DDT-style): at each mass the threshold is a quantile of the tagger's "
            f"logit over the 5% of the QCD jets among the {n_validation:,} validation jets that are nearest in "
            "mass. The version "
            f"publishes them as the model parameter `{MASS_DECORRELATED_PARAMETER}`; a job uses them with "
            "`hepsonic_client.served_mass_decorrelated_cut(client, tags.provenance, 0.01)"
            ".passes(tags.p_top, tags.jet_mass)`."
        ),
        "",
        "| QCD efficiency (fitted) | on the test jets | 1/ε_B | ε_S | JSD(QCD mass) | JSD of a random QCD subset of that size |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        (
            f"The headline is the {HEADLINE_QCD_EFFICIENCY:.0%} point. The last column is what counting statistics "
            "alone give: a cut that did not sculpt at all would still show about that JSD."
        ),
        "",
    ]


def _detector_line(generator: GeneratorSettings) -> str:
    detector = generator.detector
    if detector is None:
        return "- Detector: none (Pythia's visible final-state particles are clustered directly)."
    return (
        "- Detector: Delphes-like energy flow (`hepsonic_models/jets/_detector.py`): tracks for charged particles "
        f"with pT > {detector.track_pt_min} GeV (efficiency {detector.track_efficiency:.0%}, σ(pT)/pT = "
        f"{detector.track_resolution_constant} ⊕ {detector.track_resolution_slope}·pT); ECAL towers "
        f"{detector.ecal_cell_eta} × 2π/{detector.ecal_cells_phi} for photons (σ/E = "
        f"{detector.ecal_stochastic:.0%}/√E ⊕ {detector.ecal_constant:.1%}, threshold {detector.ecal_threshold} GeV); "
        f"HCAL towers {detector.hcal_cell_eta} × 2π/{detector.hcal_cells_phi} for neutral and untracked charged "
        f"hadrons (σ/E = {detector.hcal_stochastic:.0%}/√E ⊕ {detector.hcal_constant:.0%}, threshold "
        f"{detector.hcal_threshold} GeV); towers are massless at their centres."
    )


def _card(
    *,
    name: str,
    ctx: BuildContext,
    recipe: _Recipe,
    record: dict[str, Any],
    validation: TaggerValidation,
    n_split: tuple[int, int, int],
    plots: list[str],
) -> str:
    network, baseline = validation.network, validation.baseline
    title = {"particlenet_lite": "ParticleNet-Lite", "part_small": "ParT-small"}[name]
    smoke_warning = (
        "\n> **SMOKE BUILD**: tiny data set and a few optimiser steps, made to exercise the pipeline. "
        "These weights are NOT a physics model; rebuild without `--smoke`.\n"
        if ctx.smoke
        else ""
    )
    auc_met = network.auc >= TARGET_AUC
    # With no QCD jet passing, only the lower bound (the number of QCD test jets) is known.
    measured_rejection = (
        network.rejection_lower_bound if np.isinf(network.rejection_at_30) else network.rejection_at_30
    )
    rejection_met = measured_rejection >= TARGET_REJECTION
    enough_jets = n_split[2] >= 20_000
    generator = recipe.generator
    lines = [
        f"# {name}: {title} top-quark tagger",
        smoke_warning,
        (
            "Boosted hadronic top-quark jets vs QCD jets, served by Triton as `softmax` = (P(top), P(QCD)). "
            "Inputs built by `hepsonic_client.physics.jets.build_tagger_inputs` (the same function a "
            "reconstruction job uses); interface in `models/hepsonic_models/specs.py`."
        ),
        "",
        "## How these weights were made",
        "",
        "Rebuild (deterministic for the seed; data cached in `--workdir`):",
        "",
        "```",
        f"hepsonic-build-models {'--smoke ' if ctx.smoke else ''}--only {name} --seed {ctx.seed} --jobs {ctx.jobs}",
        "# the report alone, from the served ONNX file and the cached test jets:",
        f"hepsonic-build-models --report-only --only {name} {'--smoke ' if ctx.smoke else ''}--seed {ctx.seed}",
        "```",
        "",
        (
            f"- Architecture: {title}, {record['parameters']:,} trainable parameters "
            f"({'k = 7, EdgeConv (32,32,32) -> (64,64,64), mean pool, FC 128, dropout 0.1' if name == 'particlenet_lite' else 'd = 64, 4 heads, 3 particle-attention + 1 class-attention blocks, pair features 4->32->32->4'})."
        ),
        (
            f"- Generator: Pythia 8.317 (pythia8mc), pp at {generator.sqrt_s_gev / 1000:.0f} TeV; signal "
            "`Top:gg2ttbar`, `Top:qqbar2ttbar` with W -> q q' only; background `HardQCD:all`; "
            f"pT-hat > {generator.pt_hat_min:.0f} GeV; MPI {'on' if generator.mpi else 'off'}, no pile-up."
        ),
        _detector_line(generator),
        (
            f"- Jets: {'energy-flow objects' if generator.detector else 'visible final-state particles'} "
            f"with |η| < {generator.particle_eta_max}, anti-kT "
            f"R = {generator.jet_radius} (FastJet 3.5); pT in [{generator.jet_pt_min:.0f}, {generator.jet_pt_max:.0f}] "
            f"GeV, |η| < {generator.jet_eta_max}; top label = top and its b, q, q' within ΔR < "
            f"{generator.match_radius} of the jet axis; leading 64 constituents by pT, zero-padded."
        ),
        (
            f"- Data: {generator.n_jets_per_class:,} jets per class, master seed {ctx.seed} (Pythia seed per "
            f"chunk of {generator.jets_per_chunk} jets derived from it), generated in {record['generation_seconds']:.0f} s "
            f"(0 s = reused from the cache) on {ctx.jobs} processes."
        ),
        (
            f"- Split (random, seed {ctx.seed}): {n_split[0]:,} training / {n_split[1]:,} validation / "
            f"{n_split[2]:,} test jets. The best epoch and the baseline's mass window are chosen on the "
            "validation jets; the test jets are used only for the numbers below."
        ),
        (
            f"- Training: AdamW (weight decay {recipe.training.weight_decay}), one-cycle LR max "
            f"{recipe.training.learning_rate}, batch {recipe.training.batch_size}, {len(record['train_loss'])} "
            f"epoch(s){f' capped at {recipe.training.max_steps} steps' if recipe.training.max_steps else ''}, "
            f"best epoch {record['best_epoch']}, torch seed {ctx.seed}; {record['training_seconds']:.0f} s on "
            f"{record['threads']} CPU thread(s) ({record['cpu']}, shared machine)."
        ),
        f"- Whole build (generation, training, export): {record['build_seconds']:.0f} s.",
        (
            f"- Export: ONNX opset {record['onnx_opset']}, `1/model.onnx` sha256 `{record['onnx_sha256']}`; "
            f"onnxruntime vs PyTorch max |diff| {record['onnx_max_abs_diff']:.2e} on validation jets and a "
            "one-constituent (padded) jet. The numbers below are computed with onnxruntime on this file."
        ),
        *[f"- Note: {note}" for note in record.get("notes", [])],
        "",
        "## Validation on the test jets",
        "",
        "| metric | this model | mass + τ32 baseline | target | status |",
        "|---|---|---|---|---|",
        f"| AUC | {network.auc:.4f} | {baseline.auc:.4f} | >= {TARGET_AUC} | {verdict(auc_met)} |",
        (
            f"| 1/ε_B at ε_S = 30% | {format_rejection(network)} | {format_rejection(baseline)} | >= "
            f"{TARGET_REJECTION:.0f} | {verdict(rejection_met)} |"
        ),
        (
            f"| 1/ε_B at ε_S = 50% | {rejection_text(network, 0.5)} | "
            f"{rejection_text(baseline, 0.5, is_baseline=True)} | | |"
        ),
        (
            "| beats the baseline at ε_S = 30% (beyond the counting errors) | "
            f"{_beats(network, baseline)} | | yes | {verdict(_beats(network, baseline) == 'yes')} |"
        ),
        (
            f"| test jets (top / QCD) | {network.n_signal:,} / {network.n_background:,} | same jets | >= 20,000 "
            f"| {verdict(enough_jets)} |"
        ),
        (
            "| QCD mass sculpting by a fixed cut on P(top): JSD(QCD passing at ε_S = 50%, all QCD) | "
            f"{validation.mass_sculpting_jsd:.3f} | | (none: a fixed cut keeps the mass the tagger learned) | "
            "sculpts |"
        ),
        _headline_decorrelated_row(validation.headline_decorrelated),
        "",
        (
            f"Baseline: jet mass in [{validation.baseline_cuts.mass_low:.0f}, "
            f"{validation.baseline_cuts.mass_high:.0f}] GeV (window chosen on the validation jets) and a cut "
            "on τ32 = τ3/τ2 (N-subjettiness, β = 1, R0 = 0.8, one-pass kT axes, all constituents)."
        ),
        "Reference (MODELS.md, published on 1.2M Delphes jets): ParticleNet-Lite AUC 0.9844, 1/ε_B(30%) 1262.",
        "",
        *_decorrelated_section(validation.decorrelated, n_split[1]),
        "## Plots",
        "",
        *[f"![{Path(plot).stem}]({plot})" for plot in plots],
        "",
        "## Settings (machine-readable)",
        "",
        "```",
        f"generator: {asdict(generator)}",
        f"training: {asdict(recipe.training)}",
        "```",
    ]
    return "\n".join(lines) + "\n"
