"""``build("pv_finder", ctx)``: generate crossings, train the U-Net, choose the peak finders, score, export."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..context import BuildContext
from ..export import export_version, write_model_card
from ..specs import SPECS
from ._evaluate import FP_BUDGET, choose_finder, evaluate, scan_curve
from ._generator import GeneratorSettings, generate_collisions, ideal_vertex_efficiency, simulate_crossings
from ._metrics import Truth
from ._net import PVUNet
from ._report import BuildSummary, MethodScore, model_card, write_report
from ._train import TrainSettings, make_targets, predict, train

__all__ = ["FULL", "SMOKE", "PVBuildConfig", "build"]

MODEL_NAME = "pv_finder"
#: Random streams of the three independent samples.
_TRAIN, _VAL, _TEST = 1, 2, 3

#: Peak-finder scans. NN: pv_prob in [0, 1]; KDE-only: tracks per mm. Integrals in value x mm (for the KDE:
#: tracks in the peak).
NN_THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.02), 2)
NN_INTEGRALS = (0.0, 0.02, 0.05, 0.1, 0.15)
KDE_THRESHOLDS = np.round(np.geomspace(0.5, 500.0, 61), 3)
KDE_INTEGRALS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
MIN_WIDTHS = (1, 2, 3, 4)


@dataclass(frozen=True, kw_only=True)
class PVBuildConfig:
    """Sample sizes and training settings of one build mode."""

    n_train: int
    n_val: int
    n_test: int
    train: TrainSettings
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)


FULL = PVBuildConfig(n_train=8000, n_val=1000, n_test=2000, train=TrainSettings(steps=1200))
SMOKE = PVBuildConfig(
    n_train=16,
    n_val=6,
    n_test=6,
    train=TrainSettings(steps=3, batch_size=4, crop_bins=512, validate_every=3),
)


def _truth(sample: object) -> Truth:
    return Truth(sample.pv_z, sample.pv_ntracks, sample.pv_offsets)  # type: ignore[attr-defined]


def build(name: str, ctx: BuildContext, *, config: PVBuildConfig | None = None) -> None:
    """Build ``pv_finder`` version 1 into ``ctx.repository``, its card, and its report in ``ctx.reports``."""
    if name != MODEL_NAME:
        msg = f"hepsonic_models.pv builds only {MODEL_NAME!r}, not {name!r}"
        raise ValueError(msg)
    config = config or (SMOKE if ctx.smoke else FULL)
    if ctx.smoke:
        config = replace(config, train=replace(config.train, threads=1))
    start = time.perf_counter()
    workdir = Path(ctx.workdir) / MODEL_NAME
    samples = {}
    for label, stream, size in (
        ("train", _TRAIN, config.n_train),
        ("val", _VAL, config.n_val),
        ("test", _TEST, config.n_test),
    ):
        samples[label] = simulate_crossings(
            config.generator,
            size,
            seed=ctx.seed,
            stream=stream,
            workdir=workdir,
            jobs=ctx.jobs,
            desc=f"pv_finder {label}",
        )
    generation_s = sum(sample.generation_s for sample in samples.values())
    truths = {label: _truth(sample) for label, sample in samples.items()}

    settings = config.train
    data = {}
    for label in ("train", "val"):
        target, weight = make_targets(
            truths[label],
            sigma_mm=settings.target_sigma_mm,
            min_tracks=settings.min_tracks,
            mask_radius_mm=settings.mask_radius_mm,
        )
        data[label] = (samples[label].kde, target, weight)
    torch.manual_seed(ctx.seed)
    model = PVUNet()
    result = train(model, data["train"], data["val"], settings, seed=ctx.seed)

    # Peak-finder cuts for both methods are chosen on the validation sample only.
    val_prob = predict(model, samples["val"].kde)
    nn_choice = choose_finder(val_prob, truths["val"], NN_THRESHOLDS, NN_INTEGRALS, MIN_WIDTHS)
    val_kde = np.ascontiguousarray(samples["val"].kde[:, 0])
    kde_choice = choose_finder(val_kde, truths["val"], KDE_THRESHOLDS, KDE_INTEGRALS, MIN_WIDTHS)

    test_prob = predict(model, samples["test"].kde)
    test_kde = np.ascontiguousarray(samples["test"].kde[:, 0])
    scores = {
        "nn": MethodScore(
            choice=nn_choice,
            test=evaluate(test_prob, truths["test"], nn_choice.finder),
            curve=scan_curve(test_prob, truths["test"], nn_choice.finder, NN_THRESHOLDS),
        ),
        "kde": MethodScore(
            choice=kde_choice,
            test=evaluate(test_kde, truths["test"], kde_choice.finder),
            curve=scan_curve(test_kde, truths["test"], kde_choice.finder, KDE_THRESHOLDS),
        ),
    }

    # What perfect track-to-vertex association could do with this detector model (a ceiling, not a method).
    test_collisions = generate_collisions(
        config.generator,
        int(truths["test"].pv_z.size),
        seed=ctx.seed,
        stream=_TEST,
        workdir=workdir,
        jobs=ctx.jobs,
    )
    ceiling = ideal_vertex_efficiency(config.generator, test_collisions, seed=ctx.seed)

    spec = SPECS[MODEL_NAME]
    info = export_version(spec, model, 1, Path(ctx.repository), {"kde": samples["test"].kde[:4]})
    summary = BuildSummary(
        ctx=ctx,
        config=config,
        samples={label: sample.n_crossings for label, sample in samples.items()},
        n_true_pvs={label: int(t.pv_z.size) for label, t in truths.items()},
        generation_s=generation_s,
        train=result,
        scores=scores,
        export=info,
        n_parameters=sum(p.numel() for p in model.parameters()),
        total_s=time.perf_counter() - start,
        fp_budget=FP_BUDGET,
        ideal_efficiency=ceiling[0],
        ideal_median_dz_mm=ceiling[1],
    )
    report_dir = Path(ctx.reports) / MODEL_NAME
    write_report(report_dir, summary, samples["test"], test_prob)
    write_model_card(Path(ctx.repository), MODEL_NAME, model_card(summary))
