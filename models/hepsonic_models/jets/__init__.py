"""Jet taggers ``particlenet_lite`` and ``part_small``: Pythia 8 + FastJet data, training, baseline, report.

``build(name, ctx)`` is the entry point used by ``hepsonic-build-models``; ``report(name, ctx)`` (also
``hepsonic-build-models --report-only --only NAME``) redoes the validation report and model card from the served
ONNX file and the cached test jets. The heavy modules (torch, the trainers) are imported only when one of them
runs, so the generator's worker processes start light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import BuildContext

__all__ = ["TAGGERS", "build", "report"]

#: The served models this package builds.
TAGGERS: tuple[str, ...] = ("particlenet_lite", "part_small")


def build(name: str, ctx: BuildContext) -> None:
    """Generate (or reuse) the jets, train ``name``, export it, then validate it and write report and card."""
    from ._build import build_tagger  # noqa: PLC0415 -- keep the package import light (see docstring)

    build_tagger(name, ctx)


def report(name: str, ctx: BuildContext) -> Path:
    """Validate the exported ``name`` on the test jets; write the report and model card; return the report."""
    from ._build import report_tagger  # noqa: PLC0415 -- keep the package import light (see docstring)

    return report_tagger(name, ctx)
