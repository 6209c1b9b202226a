"""The build CLI, and the committed model repository (configs parse, match the graphs, carry their sha256)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hepsonic_models import build
from hepsonic_models.export import (
    check_onnx_against_spec,
    expected_config,
    numpy_dtype,
    sha256_file,
    version_folders,
)
from hepsonic_models.specs import SPECS

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
COMMITTED = (
    sorted(p.name for p in REPOSITORY.iterdir() if (p / "config.pbtxt").is_file())
    if REPOSITORY.is_dir()
    else []
)


def test_missing_family_is_a_clear_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(build.FAMILIES, "ringer", "hepsonic_models.not_written_yet")
    code = build.main(
        [
            "--only",
            "ringer",
            "--repository",
            str(tmp_path),
            "--workdir",
            str(tmp_path),
            "--reports",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "model 'ringer': its builder module 'hepsonic_models.not_written_yet' does not exist" in out
    assert "Traceback" not in out


def test_unknown_model_is_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build.main(["--only", "no_such_model"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_served_model_has_a_builder() -> None:
    assert set(build.FAMILIES) == set(SPECS)


@pytest.mark.parametrize("name", ["ringer", "calo_gan"])
def test_my_models_are_committed(name: str) -> None:
    assert name in COMMITTED, f"model_repository/{name} is missing: run hepsonic-build-models --only {name}"


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_model_matches_spec_graph_and_hashes(name: str) -> None:
    spec = SPECS[name]
    text = (REPOSITORY / name / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == spec.max_batch_size
    assert [(i.name, list(i.dims)) for i in config.input] == [(t.name, list(t.dims)) for t in spec.inputs]
    assert [(o.name, list(o.dims)) for o in config.output] == [(t.name, list(t.dims)) for t in spec.outputs]
    versions = version_folders(REPOSITORY, name)
    assert set(spec.versions) <= set(versions)
    hashes = {v: sha256_file(path) for v, path in versions.items()}
    assert text == expected_config(spec, REPOSITORY), "config.pbtxt is stale: re-export the model"
    assert (REPOSITORY / name / "MODEL_CARD.md").is_file()
    rng = np.random.default_rng(0)
    for version, path in versions.items():
        assert config.parameters[f"sha256/{version}"].string_value == hashes[version]
        check_onnx_against_spec(spec, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {t.name: rng.uniform(0.5, 2.0, size=(3, *t.dims)).astype(numpy_dtype(t)) for t in spec.inputs}
        for output in session.run(None, feeds):
            assert output.shape[0] == 3
            assert np.isfinite(output).all()


def test_the_build_machine_names_its_processor(tmp_path: Path) -> None:
    from hepsonic_models.report import build_machine, cpu_model  # noqa: PLC0415

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n"
    )
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Gold 6338"
    here = cpu_model()
    assert build_machine().startswith(
        f"{platform.machine()} {platform.system()}" + (f" ({here})" if here else "")
    )
