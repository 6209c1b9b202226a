"""What every model family's ``build`` receives: the one interface between the CLI and the builders.

Each family module (``hepsonic_models.ringer``, ``.calo_gan``, ``.jets``, ``.pv``) exposes::

    def build(name: str, ctx: BuildContext) -> None

which generates its data (deterministic for ``ctx.seed``), trains, validates against its baseline, exports every
version of model ``name`` into ``ctx.repository`` (``hepsonic_models.export``), writes the model card and the
validation report under ``ctx.reports / name``, leaving a build record
(``hepsonic_models.report.BUILD_RECORD``) there; and::

    def report(name: str, ctx: BuildContext) -> Path

which redoes that report and card from the served ONNX file(s), the build record and the cached test data,
without training (``hepsonic-build-models --report-only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BuildContext"]


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """Settings shared by every model build."""

    #: Tiny data and a few steps: exercises generator -> train -> export -> validate in CI, in seconds.
    smoke: bool
    seed: int
    #: Scratch space for generated data sets and checkpoints (not committed).
    workdir: Path
    #: The Triton model repository to export into (``model_repository/`` for the real build).
    repository: Path
    #: Where validation reports (Markdown + PNG) go, one folder per model.
    reports: Path
    #: Worker processes for event generation.
    jobs: int = 2
