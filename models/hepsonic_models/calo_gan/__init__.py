"""``calo_gan``: conditional generator of CaloGAN-geometry positron showers, trained on the GFlash-style
parametrisation of :mod:`hepsonic_models.calorimeter`, served as a fast-simulation replacement for it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import torch

from hepsonic_client.physics.showers import calo_gan_inputs

from ..calorimeter import write_calogan_file
from ..context import BuildContext
from ..export import export_version, write_model_card
from ..report import build_machine, git_revision
from ..specs import SPECS
from ._features import FEATURE_NAMES, shower_features
from ._model import CaloGanCritic, CaloGanGenerator
from ._train import TrainingSettings, TrainingSummary, train_generator
from ._validate import ValidationResult, generate, report_markdown, validate_generator

__all__ = [
    "FEATURE_NAMES",
    "CaloGanCritic",
    "CaloGanGenerator",
    "TrainingSettings",
    "build",
    "generate",
    "shower_features",
    "train_generator",
]

Showers = dict[str, npt.NDArray[np.float32]]


def _sizes(smoke: bool) -> dict[str, int]:
    if smoke:
        return {"train": 1000, "test": 600, "fixed": 200}
    return {"train": 100_000, "test": 20_000, "fixed": 10_000}


def _settings(smoke: bool) -> TrainingSettings:
    if smoke:
        return TrainingSettings(max_steps=10, max_seconds=10.0, batch_size=128)
    # A fixed step count keeps the build reproducible; the time limit only guards a very slow machine.
    return TrainingSettings(max_steps=2500, max_seconds=1080.0)


def _load(path: Path) -> tuple[Showers, float]:
    with h5py.File(path, "r") as stream:
        seconds = float(stream.attrs.get("generation_seconds", float("nan")))
        return {key: np.asarray(stream[key][:], dtype=np.float32) for key in stream}, seconds


def _sample(ctx: BuildContext, label: str, n: int, seed: int, fixed: float | None) -> tuple[Showers, float]:
    """A cached (or freshly generated) sample and the seconds its generation took."""
    path = ctx.workdir / "calo_gan" / f"{label.replace(' ', '')}_n{n}_seed{seed}.h5"
    if not path.exists():
        write_calogan_file(path, n, seed, fixed_energy_gev=fixed, jobs=ctx.jobs, desc=f"showers {label}")
    return _load(path)


def build(name: str, ctx: BuildContext) -> None:
    """Generate showers, train, export version 1, validate, write the card and the report."""
    if name != "calo_gan":
        raise ValueError(f"hepsonic_models.calo_gan builds only 'calo_gan', not {name!r}")
    spec = SPECS[name]
    # One thread: on a shared 2-core machine more threads only oversubscribe (seen: 10x slower steps).
    torch.set_num_threads(1)
    sizes = _sizes(ctx.smoke)
    train, data_seconds = _sample(ctx, "train", sizes["train"], ctx.seed, None)
    spectrum, seconds = _sample(ctx, "test", sizes["test"], ctx.seed + 1, None)
    references = {"spectrum": spectrum}
    data_seconds += seconds
    for offset, energy in enumerate((10.0, 50.0, 90.0), start=2):
        sample, seconds = _sample(ctx, f"E{energy:g}", sizes["fixed"], ctx.seed + offset, energy)
        references[f"{energy:g} GeV"] = sample
        data_seconds += seconds

    settings = _settings(ctx.smoke)
    generator, summary = train_generator(train, settings, ctx.seed)
    example = calo_gan_inputs(np.geomspace(1.0, 100.0, 16), ctx.seed)
    # Cells reach ~30 GeV, where float32 resolves ~2e-6: allow 1e-4 absolute (~3e-6 relative) instead of the
    # default 1e-5, which differing summation orders in onnxruntime and PyTorch can exceed (seen: 1.3e-5).
    info = export_version(spec, generator, 1, ctx.repository, example, atol=1e-4)

    reports = ctx.reports / name
    reports.mkdir(parents=True, exist_ok=True)
    result = validate_generator(generator, references, info.path, reports, ctx.seed)
    _write_outputs(
        ctx, sizes, settings, summary, result, info.sha256, info.opset, info.max_abs_diff, data_seconds
    )


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if np.isfinite(value) else "not recorded in the cached sample"


def _write_outputs(
    ctx: BuildContext,
    sizes: dict[str, int],
    settings: TrainingSettings,
    summary: TrainingSummary,
    result: ValidationResult,
    sha256: str,
    opset: int,
    max_abs_diff: float,
    data_seconds: float,
) -> None:
    reports = ctx.reports / "calo_gan"
    metrics = {
        "separation": result.separation,
        "response": result.response,
        "classifier_auc": result.classifier_auc,
        "parametrisation_showers_per_s": result.parametrisation_per_s,
        "generator_showers_per_s": result.generator_per_s,
        "speed_up": result.speed_up,
        "training": {"steps": summary.steps, "seconds": summary.seconds, **asdict(settings)},
        "sha256": sha256,
        "smoke": ctx.smoke,
    }
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    command = (
        "hepsonic-build-models --only calo_gan" + (" --smoke" if ctx.smoke else "") + f" --seed {ctx.seed}"
    )
    smoke_note = (
        "\n> **SMOKE BUILD**: tiny data and a few training steps, for CI only. These weights are not physics.\n"
        if ctx.smoke
        else ""
    )
    body = report_markdown(result, figures_prefix="")
    header = f"""# calo_gan: validation report
{smoke_note}
Generated showers vs an independent, held-out sample of the GFlash-style parametrisation (the reference), at
fixed energies 10, 50, 90 GeV ({sizes["fixed"]:,} each) and over the 1-100 GeV spectrum ({sizes["test"]:,}).
The classifier is a gradient-boosted tree on the {len(FEATURE_NAMES)} shower observables plus log E, trained on
half of the (reference, generated) spectrum sample and evaluated on the other half.
"""
    (reports / "README.md").write_text(header + "\n" + body + "\n", encoding="utf-8")
    card = f"""# calo_gan — conditional calorimeter shower generator (fast simulation)
{smoke_note}
**What it does.** Given a latent vector `z` (64 x N(0,1), sampled by the caller: use
`hepsonic_client.physics.showers.calo_gan_inputs(energies, seed)` so runs are reproducible) and the incident
positron energy `energy` (GeV, 1-100), returns the deposited energy (GeV, ≥ 0) in the three layers of the CaloGAN
calorimeter: `layer_0` [3, 96], `layer_1` [12, 12], `layer_2` [12, 6].

**Geometry** (exactly CaloGAN's): 480 x 480 mm, 80 x (2 mm Pb + 4 mm LAr) = 480 mm deep, layers 90 / 347 / 43 mm;
normal incidence at the centre. X0_eff = 15.6 mm, R_M,eff = 24 mm.

## How the weights were made
- **Training data:** {sizes["train"]:,} showers, energy uniform in 1-100 GeV, from the GFlash-style parametrisation in
  `hepsonic_models.calorimeter` (Grindhammer-Peters Gamma longitudinal profile with correlated fluctuations,
  core + tail radial profile, 40 depth slices, Gamma-distributed sampling fluctuations 11%/sqrt(E), energy spots of
  50 MeV); cells in GeV, seed {ctx.seed}. Test samples: independent seeds {ctx.seed + 1}-{ctx.seed + 4}.
- **Net:** MLP trunk (65 → 256 → 256 → 256, LeakyReLU) with per-layer pattern heads and a layer-energy head;
  cells = E_layer x relu(pattern)/Σ relu(pattern). Critic: MLP on normalised patterns + log layer fractions + log E.
- **Loss:** WGAN-GP (λ_GP = {settings.gradient_penalty}, {settings.critic_steps} critic steps per generator step,
  Adam lr {settings.learning_rate}, batch {settings.batch_size}) + energy-conservation term (weight
  {settings.energy_weight}: batch mean and spread of log(E_tot/E), generated vs real) + feature matching (weight
  {settings.feature_weight}: mean and spread of differentiable layer fractions, depth, widths, soft occupancy and
  peak-cell share in {settings.feature_groups} energy groups per batch, in units of the real spread).
- **Training:** {summary.steps:,} generator steps in {summary.seconds / 60:.1f} min (data generation
  {_seconds(data_seconds)}) on {build_machine()}; torch seed {ctx.seed}; git {git_revision()}.
- **Export:** ONNX opset {opset}, dynamic batch axis, max |onnxruntime - PyTorch| = {max_abs_diff:.1e} GeV on example
  inputs (1-100 GeV; cells up to ~30 GeV, so this is float32 round-off; checked against 1e-4). `1/model.onnx` sha256 `{sha256}`.
- **Rebuild:** `{command}` (or `make models ARGS="--only calo_gan"`).

## Validation (held-out parametrised showers)
{report_markdown(result, figures_prefix="../../reports/calo_gan/")}

Full report: `reports/calo_gan/README.md`; numbers: `reports/calo_gan/metrics.json`.
"""
    write_model_card(ctx.repository, "calo_gan", card)
