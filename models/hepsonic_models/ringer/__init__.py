"""``ringer``: ATLAS NeuralRinger-style electron trigger ensemble (v1 Run-2 binning, v2 Run-3 binning).

Data: single electrons vs jet candidates in the toy ATLAS-like calorimeter of
:mod:`hepsonic_models.calorimeter`; training: :mod:`._train`; reference: :mod:`._reference`.
``build(name, ctx)`` trains and exports both versions, then writes the report; ``report(name, ctx)`` (also
``hepsonic-build-models --report-only --only ringer``) redoes the report and model card from the served ONNX
files, the cached sample and the build's record, without retraining.
"""

from __future__ import annotations

from pathlib import Path

from ..context import BuildContext
from ._build import build_ringer
from ._data import data_path
from ._model import BINNINGS, Binning, RingerEnsemble
from ._reference import T2CaloCuts, tune_t2calo
from ._report import report_ringer
from ._train import TrainingSettings, cross_validate, sp_index

__all__ = [
    "BINNINGS",
    "Binning",
    "RingerEnsemble",
    "T2CaloCuts",
    "TrainingSettings",
    "build",
    "cross_validate",
    "data_path",
    "report",
    "sp_index",
    "tune_t2calo",
]


def _check_name(name: str) -> None:
    if name != "ringer":
        raise ValueError(f"hepsonic_models.ringer builds only 'ringer', not {name!r}")


def build(name: str, ctx: BuildContext) -> None:
    """Generate the sample, cross-validate and export both versions, write the card and the report."""
    _check_name(name)
    build_ringer(ctx)


def report(name: str, ctx: BuildContext) -> Path:
    """Validate the exported versions on the test rows; write the report and the model card; return the
    report's path."""
    _check_name(name)
    return report_ringer(ctx)
