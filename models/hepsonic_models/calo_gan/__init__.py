"""``calo_gan``: conditional generator of CaloGAN-geometry positron showers, trained on the GFlash-style
parametrisation of :mod:`hepsonic_models.calorimeter`, served as a fast-simulation replacement for it.

``report(name, ctx)`` (also ``hepsonic-build-models --report-only --only calo_gan``) redoes the validation
report and model card from the served ONNX file and the cached showers, without retraining;
``refit(name, ctx)`` (``--refit``) fits the back-layer model again on top of the served net and re-exports.
"""

from __future__ import annotations

from pathlib import Path

from ..context import BuildContext
from ._back_layer import BackLayerModel
from ._build import build_calo_gan, refit_calo_gan
from ._features import FEATURE_NAMES, shower_features
from ._model import CaloGanCritic, CaloGanGenerator
from ._report import report_calo_gan
from ._train import TrainingSettings, train_generator
from ._validate import generate, generate_served

__all__ = [
    "FEATURE_NAMES",
    "BackLayerModel",
    "CaloGanCritic",
    "CaloGanGenerator",
    "TrainingSettings",
    "build",
    "generate",
    "generate_served",
    "refit",
    "report",
    "shower_features",
    "train_generator",
]


def _check_name(name: str) -> None:
    if name != "calo_gan":
        raise ValueError(f"hepsonic_models.calo_gan builds only 'calo_gan', not {name!r}")


def build(name: str, ctx: BuildContext) -> None:
    """Generate showers, train, export version 1, validate, write the card and the report."""
    _check_name(name)
    build_calo_gan(ctx)


def report(name: str, ctx: BuildContext) -> Path:
    """Validate the exported generator on the held-out showers; write the report and the model card; return
    the report's path."""
    _check_name(name)
    return report_calo_gan(ctx)


def refit(name: str, ctx: BuildContext) -> None:
    """Fit the back layer again on top of the served net, export version 1 with it, then validate and write the
    card and the report (no adversarial training)."""
    _check_name(name)
    refit_calo_gan(ctx)
