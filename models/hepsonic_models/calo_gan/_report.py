"""``report("calo_gan", ctx)``: the validation report and model card from the served ONNX file.

Inputs: ``<repository>/calo_gan/1/model.onnx`` (run with onnxruntime, as Triton serves it), the cached
held-out parametrised showers (regenerated deterministically when missing) and the build record
``<reports>/calo_gan/training.json`` (training steps and time, export parity). Nothing is retrained.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from ..context import BuildContext
from ..export import write_model_card
from ..report import build_machine, check_served_file, read_build_record
from ._data import FIXED_ENERGIES_GEV, VALIDATION_SEED_OFFSET, reference_samples, sizes
from ._features import FEATURE_NAMES
from ._train import TrainingSettings
from ._validate import ValidationResult, report_markdown, validate_generator

__all__ = ["read_served_record", "report_calo_gan", "served_onnx"]

#: The build record (what only training knows), next to the report.


def served_onnx(ctx: BuildContext) -> Path:
    """The served generator's ONNX file in ``ctx.repository``."""
    return ctx.repository / "calo_gan" / "1" / "model.onnx"


def read_served_record(ctx: BuildContext, onnx_path: Path) -> dict[str, Any]:
    """The build record, once it is known to describe ``onnx_path`` (the sha256 it recorded)."""
    record = read_build_record(ctx, "calo_gan", required=[onnx_path])
    check_served_file("calo_gan", onnx_path, record["sha256"])
    return record


def report_calo_gan(ctx: BuildContext) -> Path:
    """Validate the served generator against the held-out showers; write report, metrics and card; return
    the report's path."""
    onnx_path = served_onnx(ctx)
    record = read_served_record(ctx, onnx_path)
    references, _ = reference_samples(ctx)
    reports = ctx.reports / "calo_gan"
    reports.mkdir(parents=True, exist_ok=True)
    result = validate_generator(onnx_path, references, reports, ctx.seed, threads=max(1, ctx.jobs))
    return _write_outputs(ctx, record, result)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if np.isfinite(value) else "not recorded in the cached sample"


def _floor_text(training: dict[str, Any]) -> str:
    """The generator's cell floors, as the build recorded them (older records have none)."""
    floors = training.get("cell_floor_gev")
    if floors is None:
        return ""
    values = " / ".join(f"{1000 * floor:.3g}" for floor in floors)
    return (
        f" after training ({values} MeV in layers 0 / 1 / 2: the {training['cell_floor_percentile']:g}% quantile of "
        "the training showers' hit-cell energies; a zero suppression, since the parametrisation deposits energy in "
        "spots)" + _outer_spot_text(training)
    )


def _outer_spot_text(training: dict[str, Any]) -> str:
    """The spot energy of layer 0's outer rows, as the build recorded it (older records have none)."""
    spot = training.get("outer_spot_gev")
    if not spot:
        return ""
    return (
        f"; and the hit cells of layer 0's outer rows made whole spots of {1000 * spot:.1f} MeV (the training "
        "showers' median there), rounded up or down at random and never below one, the middle row keeping the "
        "layer's energy; layer 1's halo (cells 120 mm or more from the axis) rounded the same way, without the floor "
        "of one, its inner cells keeping the layer's energy"
    )


def _back_layer_text(record: dict[str, Any]) -> str:
    """The back-layer model's card entry, as the build (or a refit) recorded it (older records have none)."""
    fit = record.get("back_layer")
    if not fit:
        return ""
    nll = " / ".join(f"{value:.3f}" for value in fit["final_nll"])
    refit = (
        f" Refitted with `--refit` on {fit['machine']}, git {fit['git_revision']}, on top of the net trained above."
        if "git_revision" in fit
        else ""
    )
    return f"""
- **Back layer's cells:** not the net's back-layer head (which sets only the layer's energy) but a model fitted by
  maximum likelihood to the training showers' back layers, as the adversarial head never learned where the
  tail's few spots land (its hit map was lopsided, with never-hit rows). Given log E and log(E_back/E): the
  number of hit cells (categorical, at most 24), which cells in order (Gumbel top-k on per-cell logits, i.e.
  Plackett-Luce, fitted to the hit cells ordered by energy) and their shares (stick-breaking, logistic noise on
  each step's logit); three MLPs (64 wide, SiLU), its randomness a fixed function of z. Adam lr
  {fit["learning_rate"]}, cosine decay, {fit["steps"]:,} steps of {fit["batch_size"]} showers in
  {fit["seconds"]:.0f} s; final negative log-likelihood per shower (count / order / shares): {nll}.{refit}"""


def _selection_text(training: dict[str, Any], seed: int) -> str:
    """How the kept checkpoint was chosen (empty for builds that kept the last step)."""
    scores = training.get("selection") or []
    if not scores:
        return ""
    listed = ", ".join(f"{int(step):,}: {score:.3f}" for step, score in scores)
    first = seed + VALIDATION_SEED_OFFSET
    return (
        f"\n  Checkpoint kept: step {int(training['selected_step']):,}, the best of those scored every "
        f"{int(training['select_every']):,} steps on validation showers (seeds {first}-{first + len(FIXED_ENERGIES_GEV)}, never the "
        "test ones): classifier AUC there, + 1 when another target is missed there. Scores by step: "
        f"{listed}."
    )


def _write_outputs(ctx: BuildContext, record: dict[str, Any], result: ValidationResult) -> Path:
    reports = ctx.reports / "calo_gan"
    n = sizes(ctx.smoke)
    training = record["training"]
    # The settings the model was trained with (the record's), not the current defaults.
    names = {f.name for f in fields(TrainingSettings)}
    settings = TrainingSettings(**{k: v for k, v in training.items() if k in names})
    sha256 = record["sha256"]
    machine = build_machine()  # where the speeds below were measured (this run, not the build's)
    metrics = {
        "separation": result.separation,
        "response": result.response,
        "classifier_auc": result.classifier_auc,
        "parametrisation_showers_per_s": result.parametrisation_per_s,
        "generator_showers_per_s": result.generator_per_s,
        "speed_up": result.speed_up,
        "speed_machine": machine,
        "training": training,
        "sha256": sha256,
        "smoke": ctx.smoke,
    }
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    smoke_flag = " --smoke" if ctx.smoke else ""
    command = f"hepsonic-build-models --only calo_gan{smoke_flag} --seed {ctx.seed}"
    refit_command = f"hepsonic-build-models --refit --only calo_gan{smoke_flag} --seed {ctx.seed}"
    report_command = f"hepsonic-build-models --report-only --only calo_gan{smoke_flag} --seed {ctx.seed}"
    smoke_note = (
        "\n> **SMOKE BUILD**: tiny data and a few training steps, for CI only. These weights are not physics.\n"
        if ctx.smoke
        else ""
    )
    notes = "".join(f"\n> Note: {note}\n" for note in record.get("notes", []))
    body = report_markdown(result, figures_prefix="")
    header = f"""# calo_gan: validation report
{smoke_note}{notes}
Generated showers vs an independent, held-out sample of the GFlash-style parametrisation (the reference), at
fixed energies 10, 50, 90 GeV ({n["fixed"]:,} each) and over the 1-100 GeV spectrum ({n["test"]:,}).
The classifier is a gradient-boosted tree on the {len(FEATURE_NAMES)} shower observables plus log E, trained on
half of the (reference, generated) spectrum sample and evaluated on the other half.
Generated showers come from the served `model.onnx` in onnxruntime (latents from
`hepsonic_client.physics.showers.sample_latent`); `{report_command}` redoes this report from the cached
showers without retraining. Speeds are measured when the report is written, here on {machine} (shared): their
ratio depends on the processor (the parametrisation is numpy, the generator onnxruntime; 63x and 9x on two 2-core
machines).
"""
    readme = reports / "README.md"
    readme.write_text(header + "\n" + body + "\n", encoding="utf-8")
    h = settings.generator_hidden
    critic_shapes = (
        " + the standardised shower shapes of the feature matching (their joint distribution per energy is what"
        " a classifier tests)"
        if settings.critic_features
        else ""
    )
    card = f"""# calo_gan — conditional calorimeter shower generator (fast simulation)
{smoke_note}{notes}
**What it does.** Given a latent vector `z` (64 x N(0,1), sampled by the caller: use
`hepsonic_client.physics.showers.calo_gan_inputs(energies, seed)` so runs are reproducible) and the incident
positron energy `energy` (GeV, 1-100), returns the deposited energy (GeV, ≥ 0) in the three layers of the CaloGAN
calorimeter: `layer_0` [3, 96], `layer_1` [12, 12], `layer_2` [12, 6].

**Geometry** (exactly CaloGAN's): 480 x 480 mm, 80 x (2 mm Pb + 4 mm LAr) = 480 mm deep, layers 90 / 347 / 43 mm;
normal incidence at the centre. X0_eff = 15.6 mm, R_M,eff = 24 mm.

## How the weights were made
- **Training data:** {n["train"]:,} showers, energy uniform in 1-100 GeV, from the GFlash-style parametrisation in
  `hepsonic_models.calorimeter` (Grindhammer-Peters Gamma longitudinal profile with correlated fluctuations,
  core + tail radial profile, 40 depth slices, Gamma-distributed sampling fluctuations 11%/sqrt(E), energy spots of
  50 MeV); cells in GeV, seed {ctx.seed}. Test samples: independent seeds {ctx.seed + 1}-{ctx.seed + 4}.
- **Net:** MLP trunk (65 → {h} → {h} → {h}, LeakyReLU) with per-layer pattern heads and a layer-energy head;
  each cell's pattern logit gets its own noise, sqrt(2) cos(z·w_cell) with fixed random w_cell (|w| = 5), scaled
  per cell by softplus of a head on the trunk (so the served model stays a deterministic function of z);
  cells = E_layer x relu(pattern)/Σ relu(pattern), cells under a per-layer floor emptied{_floor_text(training)}.
  The back layer's energy (and, in training, its cells' shares) is also multiplied by u^s (u = frac(z·w), uniform; s ≥ 0 from
  heads on the trunk): a shower's tail leaves a few spots whose energies span ten decades at low energies.
  Critic: MLP ({settings.critic_hidden} wide) on normalised patterns + log layer fractions + log E{critic_shapes}.{_back_layer_text(record)}
- **Loss:** WGAN-GP (λ_GP = {settings.gradient_penalty}, {settings.critic_steps} critic steps per generator step,
  Adam lr {settings.learning_rate}, batch {settings.batch_size}) + energy-conservation term (weight
  {settings.energy_weight}: mean and spread of log(E_tot/E), generated vs real, in units of the real spread, in
  {settings.energy_groups} energy groups per batch) + feature matching (weight
  {settings.feature_weight}: mean and spread of differentiable layer fractions, depth, widths, soft occupancy and
  peak-cell share, and the back layer's log energy, hit-cell count and log widths, in {settings.feature_groups}
  energy groups per batch, in units of the real spread).
- **Training:** {training["steps"]:,} generator steps in {training["seconds"] / 60:.1f} min (data generation
  {_seconds(float(record["generation_seconds"]))}) on {record["machine"]}; torch seed {ctx.seed}; git {record["git_revision"]}.{_selection_text(training, ctx.seed)}
- **Export:** ONNX opset {record["opset"]}, dynamic batch axis, max |onnxruntime - PyTorch| = {record["max_abs_diff"]:.1e} GeV on example
  inputs (1-100 GeV; cells up to ~30 GeV, so this is float32 round-off; checked against 1e-4). `1/model.onnx` sha256 `{sha256}`.
- **Rebuild:** `{command}` (or `make models ARGS="--only calo_gan"`). **Refit** the back layer only, on
  top of the served net (minutes): `{refit_command}`.
- **Report only:** `{report_command}` (showers generated by this `model.onnx` in onnxruntime, as served).

## Validation (held-out parametrised showers)
{report_markdown(result, figures_prefix="../../reports/calo_gan/")}

Full report: `reports/calo_gan/README.md`; numbers: `reports/calo_gan/metrics.json`.
"""
    write_model_card(ctx.repository, "calo_gan", card)
    return readme
