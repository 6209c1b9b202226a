"""``hepsonic-build-models --report-only``: reports and cards come back from the exported ONNX files alone; and
``--refit``: what follows calo_gan's training is redone on top of the served net."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hepsonic_client.physics.showers import calo_gan_inputs
from hepsonic_models.build import main as build_main
from hepsonic_models.calo_gan import CaloGanGenerator
from hepsonic_models.calo_gan._build import load_served_generator
from hepsonic_models.export import export_version
from hepsonic_models.specs import SPECS

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


def _copy_smoke_build(build, root: Path) -> None:  # type: ignore[no-untyped-def]
    """The session's smoke build (repository, reports, data), copied into ``root`` as ``_folders`` names them."""
    shutil.copytree(build.repository, root / "repo")
    shutil.copytree(build.reports, root / "reports")
    shutil.copytree(build.workdir, root / "data")


@pytest.fixture(scope="module")
def smoke_root(calo_smoke_build, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """A smoke build of ringer, calo_gan (the session's, copied) and pv_finder, in one tree."""
    assert calo_smoke_build.exit_code == 0
    root = tmp_path_factory.mktemp("report_only")
    _copy_smoke_build(calo_smoke_build, root)
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


def test_refit_reads_the_net_back_from_the_served_file_and_refits_only_the_back_layer(
    calo_smoke_build,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    assert calo_smoke_build.exit_code == 0
    _copy_smoke_build(calo_smoke_build, tmp_path)
    served = tmp_path / "repo" / "calo_gan" / "1" / "model.onnx"
    built = _sha256(served)
    record_path = tmp_path / "reports" / "calo_gan" / "training.json"
    built_record = json.loads(record_path.read_text(encoding="utf-8"))
    (tmp_path / "repo" / "calo_gan" / "MODEL_CARD.md").unlink()

    assert build_main(["--smoke", "--refit", "--only", "calo_gan", *_folders(tmp_path)]) == 0

    # The same seed and showers repeat the back-layer fit exactly: the file comes back bit for bit only if the
    # net read back from it is exactly the trained one.
    assert _sha256(served) == built
    record = json.loads(record_path.read_text(encoding="utf-8"))
    assert record["training"] == built_record["training"]
    assert record["back_layer"]["steps"] == built_record["back_layer"]["steps"] > 0
    assert "machine" in record["back_layer"]
    assert built in (tmp_path / "repo" / "calo_gan" / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_a_net_exported_without_a_back_layer_model_reads_back_exactly(tmp_path: Path) -> None:
    torch.manual_seed(3)
    generator = CaloGanGenerator()
    floors = [0.01, 0.001, 1e-6]
    generator.cell_floor.copy_(torch.tensor(floors))
    generator.outer_spot.fill_(0.05)
    example = calo_gan_inputs(np.geomspace(1.0, 100.0, 8), seed=1)
    export_version(SPECS["calo_gan"], generator, 1, tmp_path, example, atol=1e-4)
    loaded = load_served_generator(tmp_path / "calo_gan" / "1" / "model.onnx", floors)
    assert loaded.back_layer is None
    for name, tensor in generator.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_refit_of_a_model_without_one_and_refit_with_report_only_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build_main(["--smoke", "--refit", "--only", "ringer", *_folders(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ringer: FAILED: model 'ringer': 'hepsonic_models.ringer' has no refit(name, ctx) function" in out
    assert "Traceback" not in out
    with pytest.raises(SystemExit) as info:
        build_main(["--refit", "--report-only", "--only", "calo_gan"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
