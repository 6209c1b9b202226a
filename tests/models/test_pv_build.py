"""pv_finder smoke pipeline (Pythia -> KDE -> training -> export -> report) and ONNX vs PyTorch parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hepsonic_client.physics.vertices import (
    N_BINS,
    PEAK_FINDER_PARAMETER,
    VERTEX_FIT_PARAMETER,
    PeakFinder,
    VertexFit,
    build_kde,
    toy_tracks,
)
from hepsonic_models.context import BuildContext
from hepsonic_models.export import export_version, sha256_file
from hepsonic_models.pv import GeneratorSettings, PVUNet, build, generate_collisions
from hepsonic_models.specs import SPECS


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    root = tmp_path_factory.mktemp("pv_smoke")
    ctx = BuildContext(
        smoke=True,
        seed=7,
        workdir=root / "work",
        repository=root / "repo",
        reports=root / "reports",
        jobs=2,
    )
    build("pv_finder", ctx)
    return ctx


def test_smoke_build_exports_a_servable_model(smoke_build: BuildContext) -> None:
    model_dir = smoke_build.repository / "pv_finder"
    onnx_path = model_dir / "1" / "model.onnx"
    config = text_format.Parse(
        (model_dir / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig()
    )
    assert config.name == "pv_finder"
    assert config.platform == "onnxruntime_onnx"
    assert [(i.name, list(i.dims)) for i in config.input] == [("kde", [2, N_BINS])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("pv_prob", [N_BINS])]
    assert config.parameters["sha256/1"].string_value == sha256_file(onnx_path)

    card = (model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    # The operating point in the card is the one the config publishes to clients.
    finder = PeakFinder.from_json(config.parameters[f"{PEAK_FINDER_PARAMETER}/1"].string_value)
    assert f"PeakFinder(threshold={finder.threshold:g}, " in card
    fit = VertexFit.from_json(config.parameters[f"{VERTEX_FIT_PARAMETER}/1"].string_value)
    assert f"min_width={finder.min_width})` and the vertex fit `{fit!r}`, published in `config.pbtxt`" in card
    assert "SMOKE BUILD" in card
    assert sha256_file(onnx_path) in card
    assert "hepsonic-build-models" in card

    # The served graph takes a KDE from the client library and returns probabilities.
    rng = np.random.default_rng(0)
    kde = np.stack([build_kde(toy_tracks(rng.normal(100, 50, 10), np.full(10, 30), rng)) for _ in range(3)])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (prob,) = session.run(["pv_prob"], {"kde": kde})
    assert prob.shape == (3, N_BINS)
    assert prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1))


def test_smoke_build_writes_the_report(smoke_build: BuildContext) -> None:
    report = smoke_build.reports / "pv_finder"
    text = (report / "README.md").read_text(encoding="utf-8")
    assert "SMOKE" in text
    assert "Target (efficiency >= 95% at <= 0.1 FP/event)" in text
    for name in ("efficiency_vs_fp", "z_resolution", "efficiency_vs_ntracks", "example_event", "training"):
        png = report / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"({name}.png)" in text


def test_generator_is_deterministic_and_in_acceptance(smoke_build: BuildContext) -> None:
    settings = GeneratorSettings()
    workdir = smoke_build.workdir / "pv_finder"  # reuses the cached Pythia MPI initialisation
    first = generate_collisions(settings, 6, seed=99, stream=5, workdir=workdir, jobs=1)
    second = generate_collisions(settings, 8, seed=99, stream=5, workdir=workdir, jobs=1)
    n = int(first.offsets[-1])
    assert n > 0
    np.testing.assert_array_equal(first.offsets, second.offsets[:7])
    np.testing.assert_array_equal(first.pz, second.pz[:n])
    pt = np.hypot(first.px, first.py)
    eta = np.arcsinh(first.pz / pt)
    assert np.all((eta > 2) & (eta < 5))
    assert np.all(np.sqrt(pt**2 + first.pz**2) > 0.1)


def test_onnx_matches_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = PVUNet()
    # Non-trivial BatchNorm statistics, so that the exported eval-mode graph is really exercised.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    rng = np.random.default_rng(1)
    kde = np.stack([build_kde(toy_tracks(rng.normal(100, 60, 10), np.full(10, 40), rng)) for _ in range(4)])
    info = export_version(SPECS["pv_finder"], model, 1, tmp_path, {"kde": kde}, atol=1e-5)
    assert info.max_abs_diff <= 1e-5
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    other = np.stack([build_kde(toy_tracks(rng.normal(100, 60, 5), np.full(5, 10), rng)) for _ in range(5)])
    (onnx_out,) = session.run(["pv_prob"], {"kde": other})
    with torch.no_grad():
        torch_out = model.eval()(torch.from_numpy(other)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5, rtol=0)
