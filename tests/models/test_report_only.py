"""``hepsonic-build-models --report-only``: reports and cards come back from the exported ONNX files alone."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hepsonic_models.build import main as build_main

_MODELS = ("ringer", "calo_gan", "pv_finder")
#: What a build leaves for the report (its record, ringer's operating points): kept when the report goes.
_BUILD_OUTPUTS = ("training.json", "thresholds_v1.json", "thresholds_v2.json")
#: Timing measurements, taken again by every report.
_CALO_SPEED_KEYS = ("parametrisation_showers_per_s", "generator_showers_per_s", "speed_up")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table_rows(markdown: str) -> list[str]:
    """The Markdown table rows of a card or report (the metrics), without the speed table's timings."""
    return [line for line in markdown.splitlines() if line.startswith("|") and "showers/s" not in line]


def _folders(root: Path) -> list[str]:
    return [
        "--repository",
        str(root / "repo"),
        "--workdir",
        str(root / "data"),
        "--reports",
        str(root / "reports"),
        "--seed",
        "7",
        "--jobs",
        "1",
    ]


@pytest.fixture(scope="module")
def smoke_root(calo_smoke_build, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """A smoke build of ringer, calo_gan (the session's, copied) and pv_finder, in one tree."""
    assert calo_smoke_build.exit_code == 0
    root = tmp_path_factory.mktemp("report_only")
    shutil.copytree(calo_smoke_build.repository, root / "repo")
    shutil.copytree(calo_smoke_build.reports, root / "reports")
    shutil.copytree(calo_smoke_build.workdir, root / "data")
    assert build_main(["--smoke", "--only", "pv_finder", *_folders(root)]) == 0
    return root


def test_report_only_rebuilds_reports_and_cards_without_touching_the_models(smoke_root: Path) -> None:
    repo, reports = smoke_root / "repo", smoke_root / "reports"
    served = {path: _sha256(path) for path in sorted(repo.glob("*/*/model.onnx"))}
    configs = {path: path.read_text(encoding="utf-8") for path in sorted(repo.glob("*/config.pbtxt"))}
    assert len(served) == 4  # ringer 1 and 2, calo_gan 1, pv_finder 1
    built_cards = {name: (repo / name / "MODEL_CARD.md").read_text(encoding="utf-8") for name in _MODELS}
    built_metrics = {
        name: json.loads((reports / name / "metrics.json").read_text(encoding="utf-8"))
        for name in ("ringer", "calo_gan")
    }
    built_pv_report = (reports / "pv_finder" / "README.md").read_text(encoding="utf-8")
    for name in _MODELS:
        for path in (reports / name).iterdir():
            if path.name not in _BUILD_OUTPUTS:
                path.unlink()
        (repo / name / "MODEL_CARD.md").unlink()

    assert build_main(["--smoke", "--report-only", "--only", *_MODELS, *_folders(smoke_root)]) == 0

    assert {path: _sha256(path) for path in served} == served
    assert {path: path.read_text(encoding="utf-8") for path in configs} == configs
    for name in _MODELS:
        card = (repo / name / "MODEL_CARD.md").read_text(encoding="utf-8")
        assert "SMOKE BUILD" in card
        assert _table_rows(card) == _table_rows(built_cards[name]), name
        assert len(_table_rows(card)) > 3, name
        for sha256 in (value for path, value in served.items() if path.parts[-3] == name):
            assert sha256 in card
        figures = list((reports / name).glob("*.png"))
        assert len(figures) >= 4, name
        assert all(figure.read_bytes()[:4] == b"\x89PNG" for figure in figures)
    assert (
        json.loads((reports / "ringer" / "metrics.json").read_text(encoding="utf-8"))
        == built_metrics["ringer"]
    )
    calo = json.loads((reports / "calo_gan" / "metrics.json").read_text(encoding="utf-8"))
    for key in _CALO_SPEED_KEYS:
        assert calo.pop(key) > 0
        built_metrics["calo_gan"].pop(key)
    assert calo == built_metrics["calo_gan"]
    pv_report = (reports / "pv_finder" / "README.md").read_text(encoding="utf-8")
    assert _table_rows(pv_report) == _table_rows(built_pv_report)
    assert "--report-only --only pv_finder --smoke --seed 7" in pv_report


def test_report_only_without_a_build_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build_main(["--smoke", "--report-only", "--only", "calo_gan", *_folders(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "calo_gan: FAILED: model 'calo_gan':" in out
    assert "model.onnx is missing; build the model first" in out
