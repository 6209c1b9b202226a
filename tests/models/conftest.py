"""Fixtures of the model-builder tests: one shared smoke build of ringer and calo_gan per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hepsonic_models.build import main as build_main


@dataclass(frozen=True)
class SmokeBuild:
    """Folders of a ``hepsonic-build-models --smoke --only ringer calo_gan`` run, and its exit code."""

    repository: Path
    reports: Path
    workdir: Path
    exit_code: int


@pytest.fixture(scope="session")
def calo_smoke_build(tmp_path_factory: pytest.TempPathFactory) -> SmokeBuild:
    """The smoke pipelines of ringer and calo_gan (generate -> train -> export -> validate), once per session."""
    root = tmp_path_factory.mktemp("calo_smoke")
    build = SmokeBuild(
        repository=root / "repo", reports=root / "reports", workdir=root / "data", exit_code=-1
    )
    code = build_main(
        [
            "--smoke",
            "--only",
            "ringer",
            "calo_gan",
            "--repository",
            str(build.repository),
            "--workdir",
            str(build.workdir),
            "--reports",
            str(build.reports),
            "--jobs",
            "1",
            "--seed",
            "7",
        ]
    )
    return SmokeBuild(
        repository=build.repository, reports=build.reports, workdir=build.workdir, exit_code=code
    )
