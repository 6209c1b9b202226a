"""Jet taggers: architectures, ONNX parity on padded jets, and the smoke pipeline generator -> report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hepsonic_client.physics.jets import (
    MASS_DECORRELATED_PARAMETER,
    build_tagger_inputs,
    mass_decorrelated_cuts_from_json,
)
from hepsonic_models import build as build_cli
from hepsonic_models import jets
from hepsonic_models.context import BuildContext
from hepsonic_models.export import export_version, sha256_file
from hepsonic_models.jets._generate import GeneratorSettings, _generate_chunk
from hepsonic_models.jets._networks import ParticleNetLite, ParticleTransformerSmall, count_parameters
from hepsonic_models.specs import SPECS

pytestmark = [
    # The legacy ONNX exporter's tracer warns about Python-level shape arithmetic; the export is checked below.
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def _random_jets(n_jets: int, n_particles: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    constituents = np.zeros((n_jets, 80, 4))
    for jet, count in enumerate(n_particles):
        pt = rng.exponential(20.0, count) + 0.5
        eta = rng.normal(0.3, 0.3, count)
        phi = rng.normal(3.0, 0.3, count)  # straddles +-pi
        mass = 0.14
        constituents[jet, :count] = np.stack(
            [
                pt * np.cos(phi),
                pt * np.sin(phi),
                pt * np.sinh(eta),
                np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2),
            ],
            axis=1,
        )
    return build_tagger_inputs(constituents)


def test_architectures_have_the_published_sizes() -> None:
    assert count_parameters(ParticleNetLite()) == 26_416
    assert 210_000 <= count_parameters(ParticleTransformerSmall()) <= 230_000


def test_padded_points_are_never_neighbours() -> None:
    torch.manual_seed(0)
    network = ParticleNetLite().eval()
    inputs = _random_jets(2, [10, 10])
    tensors = {key: torch.from_numpy(value) for key, value in inputs.items()}
    reference = network(tensors["pf_points"], tensors["pf_features"], tensors["pf_mask"])
    # Padded slots hold zeros; putting garbage there must not change anything once the mask says "padding".
    garbage = {key: value.clone() for key, value in tensors.items()}
    garbage["pf_points"][..., 10:] = 0.01
    garbage["pf_features"][..., 10:] = 3.0
    changed = network(garbage["pf_points"], garbage["pf_features"], garbage["pf_mask"])
    torch.testing.assert_close(changed, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["particlenet_lite", "part_small"])
def test_onnx_parity_including_padded_jets(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    network = ParticleNetLite() if name == "particlenet_lite" else ParticleTransformerSmall()
    # A few optimiser-free forward passes in train mode move the BatchNorm statistics off their defaults.
    network.train()
    warm = _random_jets(8, [64, 40, 20, 5, 64, 30, 2, 50], seed=2)
    with torch.no_grad():
        network(*(torch.from_numpy(warm[t.name]) for t in SPECS[name].inputs))
    inputs = _random_jets(5, [64, 33, 8, 1, 2], seed=3)
    example = {t.name: inputs[t.name] for t in SPECS[name].inputs}
    info = export_version(SPECS[name], network, 1, tmp_path, example)
    assert info.max_abs_diff <= 1e-5

    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    fresh = _random_jets(3, [1, 7, 64], seed=4)
    (softmax,) = session.run(["softmax"], {t.name: fresh[t.name] for t in SPECS[name].inputs})
    assert np.isfinite(softmax).all()
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0, atol=1e-6)
    with torch.no_grad():
        expected = network.eval()(*(torch.from_numpy(fresh[t.name]) for t in SPECS[name].inputs))
    np.testing.assert_allclose(softmax, expected.numpy(), rtol=0, atol=1e-5)


def test_smoke_build_generator_to_report(tmp_path: Path) -> None:
    ctx = BuildContext(
        smoke=True,
        seed=7,
        workdir=tmp_path / "work",
        repository=tmp_path / "repo",
        reports=tmp_path / "reports",
        jobs=2,
    )
    for name in jets.TAGGERS:
        jets.build(name, ctx)
        model_dir = ctx.repository / name
        config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.name == name
        digest = sha256_file(model_dir / "1" / "model.onnx")
        assert config.parameters["sha256/1"].string_value == digest
        # The mass-decorrelated working points are served with the version they were fitted for.
        published = config.parameters[f"{MASS_DECORRELATED_PARAMETER}/1"].string_value
        assert [c.qcd_efficiency for c in mass_decorrelated_cuts_from_json(published)] == [
            0.005,
            0.01,
            0.02,
            0.05,
        ]
        card = (model_dir / "MODEL_CARD.md").read_text()
        assert digest in card
        assert "SMOKE BUILD" in card
        assert f"hepsonic-build-models --smoke --only {name} --seed 7" in card
        for plot in ("roc.png", "mass_sculpting.png", "score.png", "loss.png", "README.md"):
            assert (ctx.reports / name / plot).stat().st_size > 0
        # The card's plot links resolve from where the card lies.
        links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)
        assert len(links) == 4
        for link in links:
            assert (model_dir / link).is_file(), link
    # One data set serves both taggers.
    assert len(list((ctx.workdir / "jets").glob("*.h5"))) == 1

    # The report alone, from the served ONNX file: same card, byte for byte.
    card_before = (ctx.repository / "part_small" / "MODEL_CARD.md").read_text()
    (ctx.reports / "part_small" / "roc.png").unlink()
    folders = [
        "--workdir",
        str(ctx.workdir),
        "--repository",
        str(ctx.repository),
        "--reports",
        str(ctx.reports),
    ]
    assert (
        build_cli.main(
            ["--report-only", "--only", "part_small", "--smoke", "--seed", "7", "--jobs", "2", *folders]
        )
        == 0
    )
    assert (ctx.reports / "part_small" / "roc.png").is_file()
    assert (ctx.repository / "part_small" / "MODEL_CARD.md").read_text() == card_before


def test_report_without_a_built_model_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--report-only",
        "--only",
        "particlenet_lite",
        "--repository",
        str(tmp_path),
        "--reports",
        str(tmp_path),
        "--workdir",
        str(tmp_path),
    ]
    assert build_cli.main(args) == 1
    assert "build the model first" in capsys.readouterr().out


def test_generator_is_deterministic_for_a_seed() -> None:
    settings = GeneratorSettings(n_jets_per_class=3, seed=5)
    first = _generate_chunk((settings, "qcd", 123, 3))
    second = _generate_chunk((settings, "qcd", 123, 3))
    assert first["label"].tolist() == [0, 0, 0]
    for key, value in first.items():
        np.testing.assert_array_equal(value, second[key], err_msg=key)
    pt = first["jet_pt"]
    assert ((pt >= 500) & (pt < 700)).all()
    assert (first["n_constituents"] >= 3).all()


def test_unknown_model_is_refused(tmp_path: Path) -> None:
    ctx = BuildContext(smoke=True, seed=1, workdir=tmp_path, repository=tmp_path, reports=tmp_path)
    with pytest.raises(ValueError, match="not 'ringer'"):
        jets.build("ringer", ctx)
