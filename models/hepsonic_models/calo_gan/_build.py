"""``build("calo_gan", ctx)``: generate showers, fit the back layer, train, export version 1, then write the
report; ``refit("calo_gan", ctx)``: fit the back layer again on top of the served net, export, report.

What only training knows (steps, time, export parity) goes into the build record
``<reports>/calo_gan/training.json``; the validation itself is :func:`._report.report_calo_gan`, which
generates from the exported ONNX file, so a build and a later ``--report-only`` run share one path.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from hepsonic_client.physics.showers import calo_gan_inputs

from ..context import BuildContext
from ..export import ExportInfo, export_version
from ..report import BUILD_RECORD, BuildRecordError, build_machine, git_revision
from ..specs import SPECS
from ._back_layer import BackLayerModel, BackLayerSettings, fit_back_layer
from ._data import Showers, reference_samples, sample, sizes, training_settings
from ._model import CaloGanGenerator
from ._report import read_served_record, report_calo_gan, served_onnx
from ._train import train_generator
from ._validate import selection_score

__all__ = ["build_calo_gan", "load_served_generator", "refit_calo_gan"]


#: The net's back-layer pattern heads, which a graph with a back-layer model never uses.
_PRUNED_WITH_BACK_LAYER = ("patterns.2.", "noise_scales.2.")


def _back_layer_settings(smoke: bool) -> BackLayerSettings:
    return BackLayerSettings(steps=20, batch_size=128) if smoke else BackLayerSettings()


def _training_showers(ctx: BuildContext) -> tuple[Showers, float]:
    return sample(ctx, "train", sizes(ctx.smoke)["train"], ctx.seed, None)


def _fit_back_layer(ctx: BuildContext, train: Showers) -> tuple[BackLayerModel, dict[str, Any]]:
    """The fitted back-layer model and what the build record keeps of its fit."""
    settings = _back_layer_settings(ctx.smoke)
    model, fit = fit_back_layer(train, settings, ctx.seed)
    return model, {**asdict(settings), "seconds": fit.seconds, "final_nll": list(fit.final_nll)}


def _export(ctx: BuildContext, generator: CaloGanGenerator) -> ExportInfo:
    example = calo_gan_inputs(np.geomspace(1.0, 100.0, 16), ctx.seed)
    # Cells reach ~30 GeV, where float32 resolves ~2e-6: allow 1e-4 absolute (~3e-6 relative) instead of the
    # default 1e-5, which differing summation orders in onnxruntime and PyTorch can exceed (seen: 1.3e-5).
    return export_version(SPECS["calo_gan"], generator, 1, ctx.repository, example, atol=1e-4)


def build_calo_gan(ctx: BuildContext) -> None:
    """Generate showers, fit the back layer, train, export version 1, record the build, validate, write the
    card and the report."""
    # One thread: on a shared 2-core machine more threads only oversubscribe (seen: 10x slower steps).
    torch.set_num_threads(1)
    train, data_seconds = _training_showers(ctx)
    # Generated (or found in the cache) here, so the record holds the whole data cost.
    data_seconds += reference_samples(ctx)[1]
    validation, seconds = reference_samples(ctx, validation=True)
    data_seconds += seconds

    # Fitted first, so that checkpoints are scored with the back layer they will be served with.
    back_layer, back_layer_record = _fit_back_layer(ctx, train)
    settings = training_settings(ctx.smoke)
    generator, summary = train_generator(
        train,
        settings,
        ctx.seed,
        select=lambda g: selection_score(g, validation, ctx.seed),
        back_layer=back_layer,
    )
    info = _export(ctx, generator)
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
        "back_layer": back_layer_record,
        "generation_seconds": data_seconds,
        "machine": build_machine(),
        "git_revision": git_revision(),
        "notes": [],
    }
    _write_record(ctx, record)
    report_calo_gan(ctx)


def refit_calo_gan(ctx: BuildContext) -> None:
    """Fit the back layer again on top of the served net (its weights read back from ``model.onnx``), export
    version 1 with it, update the build record and redo the report: minutes instead of the hour of training."""
    torch.set_num_threads(1)
    onnx_path = served_onnx(ctx)
    record = read_served_record(ctx, onnx_path)
    generator = load_served_generator(onnx_path, record["training"]["cell_floor_gev"])
    train, _ = _training_showers(ctx)
    generator.back_layer, back_layer_record = _fit_back_layer(ctx, train)
    info = _export(ctx, generator)
    record.update(
        sha256=info.sha256,
        opset=info.opset,
        max_abs_diff=info.max_abs_diff,
        back_layer={**back_layer_record, "machine": build_machine(), "git_revision": git_revision()},
    )
    _write_record(ctx, record)
    report_calo_gan(ctx)


def load_served_generator(onnx_path: Path, cell_floor_gev: list[float]) -> CaloGanGenerator:
    """The net of an exported generator, its weights read back from the ONNX file's initializers, without its
    back-layer model. The cell floors are folded into the graph as constants, so they come from the build
    record. A file exported with a back-layer model lacks the net's own back-layer pattern heads (unused, so
    pruned from the graph): they come back as zeros."""
    generator = CaloGanGenerator()
    stored = {
        tensor.name: torch.from_numpy(numpy_helper.to_array(tensor).copy())
        for tensor in onnx.load(str(onnx_path)).graph.initializer
    }
    state = generator.state_dict()
    pruned = _PRUNED_WITH_BACK_LAYER if any(name.startswith("back_layer.") for name in stored) else ()
    missing = [
        name for name in state if name not in stored and name != "cell_floor" and not name.startswith(pruned)
    ]
    if missing:
        raise BuildRecordError(f"model 'calo_gan': {onnx_path} lacks the net's weights {missing}")
    for name, tensor in state.items():
        if name in stored:
            state[name] = stored[name].reshape(tensor.shape)
        elif name != "cell_floor":
            state[name] = torch.zeros_like(tensor)
    state["cell_floor"] = torch.tensor(cell_floor_gev, dtype=torch.float32)
    generator.load_state_dict(state)
    return generator.eval()


def _write_record(ctx: BuildContext, record: dict[str, Any]) -> None:
    reports = ctx.reports / "calo_gan"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
