"""``build("calo_gan", ctx)``: generate showers, train, export version 1, then write the report.

What only training knows (steps, time, export parity) goes into the build record
``<reports>/calo_gan/training.json``; the validation itself is :func:`._report.report_calo_gan`, which
generates from the exported ONNX file, so a build and a later ``--report-only`` run share one path.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import torch

from hepsonic_client.physics.showers import calo_gan_inputs

from ..context import BuildContext
from ..export import export_version
from ..report import BUILD_RECORD, build_machine, git_revision
from ..specs import SPECS
from ._data import reference_samples, sample, sizes, training_settings
from ._report import report_calo_gan
from ._train import train_generator
from ._validate import selection_score

__all__ = ["build_calo_gan"]


def build_calo_gan(ctx: BuildContext) -> None:
    """Generate showers, train, export version 1, record the build, validate, write the card and the report."""
    spec = SPECS["calo_gan"]
    # One thread: on a shared 2-core machine more threads only oversubscribe (seen: 10x slower steps).
    torch.set_num_threads(1)
    train, data_seconds = sample(ctx, "train", sizes(ctx.smoke)["train"], ctx.seed, None)
    # Generated (or found in the cache) here, so the record holds the whole data cost.
    data_seconds += reference_samples(ctx)[1]
    validation, seconds = reference_samples(ctx, validation=True)
    data_seconds += seconds

    settings = training_settings(ctx.smoke)
    generator, summary = train_generator(
        train, settings, ctx.seed, select=lambda g: selection_score(g, validation, ctx.seed)
    )
    example = calo_gan_inputs(np.geomspace(1.0, 100.0, 16), ctx.seed)
    # Cells reach ~30 GeV, where float32 resolves ~2e-6: allow 1e-4 absolute (~3e-6 relative) instead of the
    # default 1e-5, which differing summation orders in onnxruntime and PyTorch can exceed (seen: 1.3e-5).
    info = export_version(spec, generator, 1, ctx.repository, example, atol=1e-4)

    reports = ctx.reports / "calo_gan"
    reports.mkdir(parents=True, exist_ok=True)
    record = {
        "smoke": ctx.smoke,
        "seed": ctx.seed,
        "sha256": info.sha256,
        "opset": info.opset,
        "max_abs_diff": info.max_abs_diff,
        "training": {
            "steps": summary.steps,
            "seconds": summary.seconds,
            "cell_floor_gev": generator.cell_floor.tolist(),
            "outer_spot_gev": float(generator.outer_spot),
            "selected_step": summary.selected_step,
            "selection": summary.selection,
            **asdict(settings),
        },
        "generation_seconds": data_seconds,
        "machine": build_machine(),
        "git_revision": git_revision(),
        "notes": [],
    }
    (reports / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    report_calo_gan(ctx)
