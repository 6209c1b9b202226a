"""ringer: ring building, the stacked-bin graph, SP, the T2Calo reference, and the smoke pipeline."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hepsonic_client.physics.rings import N_RINGS, RING_LAYERS, rings_from_cells, rings_from_grids
from hepsonic_models.calorimeter import RingerSampleSettings, write_ringer_sample
from hepsonic_models.ringer import BINNINGS, RingerEnsemble, sp_index, tune_t2calo
from hepsonic_models.ringer._train import best_sp

GRID_SHAPES = [(15, 5), (127, 5), (15, 15), (15, 15), (7, 7), (7, 7), (7, 7)]


def test_hundred_rings_in_seven_layers() -> None:
    assert N_RINGS == 100
    assert [layer.n_rings for layer in RING_LAYERS] == [8, 64, 8, 8, 4, 4, 4]


def test_grid_and_cell_rings_agree() -> None:
    rng = np.random.default_rng(3)
    batch = 3
    grids = [rng.exponential(100.0, size=(batch, *shape)) for shape in GRID_SHAPES]
    eta = rng.uniform(-2.4, 2.4, batch)
    from_grids = rings_from_grids(grids, eta)
    for b in range(batch):
        energy, cell_eta, cell_phi, layer = [], [], [], []
        for k, (spec, shape) in enumerate(zip(RING_LAYERS, GRID_SHAPES, strict=True)):
            ie, ip = np.meshgrid(
                np.arange(shape[0]) - shape[0] // 2, np.arange(shape[1]) - shape[1] // 2, indexing="ij"
            )
            energy.append(grids[k][b].ravel())
            cell_eta.append((eta[b] + ie * spec.deta).ravel())
            cell_phi.append((1.0 + ip * spec.dphi).ravel())
            layer.append(np.full(ie.size, k))
        from_cells = rings_from_cells(
            np.concatenate(energy),
            np.concatenate(cell_eta),
            np.concatenate(cell_phi),
            np.concatenate(layer),
            eta0=float(eta[b]),
            phi0=1.0,
        )
        np.testing.assert_allclose(from_cells, from_grids[b], rtol=1e-5, atol=1e-3)


def test_single_cell_lands_in_ring_zero_as_et() -> None:
    rings = rings_from_cells([1000.0], [1.0], [0.0], [2], eta0=1.0, phi0=0.0)
    assert rings[8 + 64] == pytest.approx(1000.0 / np.cosh(1.0), rel=1e-6)
    assert rings.sum() == pytest.approx(rings[72])
    with pytest.raises(ValueError, match="layer indices"):
        rings_from_cells([1.0], [0.0], [0.0], [7], eta0=0.0, phi0=0.0)


@pytest.mark.parametrize(
    ("version", "et", "eta", "expected"),
    [
        (1, 15.0, 0.0, 0),
        (1, 3.0, 0.5, 0),  # below the first edge: first E_T bin
        (1, 20.0, -0.8, 1 * 5 + 1),
        (1, 1000.0, 2.49, 4 * 5 + 4),
        (1, 45.0, 3.0, 3 * 5 + 4),  # beyond |eta| 2.5: last eta bin
        (2, 4.0, 1.4, 0 * 5 + 2),
        (2, 9.99, 1.54, 1 * 5 + 3),
        (2, 55.0, 2.4, 7 * 5 + 4),
    ],
)
def test_bin_index(version: int, et: float, eta: float, expected: int) -> None:
    module = RingerEnsemble(BINNINGS[version])
    index = module.bin_index(torch.tensor([[et]]), torch.tensor([[eta]]))
    assert int(index[0]) == expected


def test_forward_uses_the_candidates_bin_and_norm1() -> None:
    binning = BINNINGS[1]
    module = RingerEnsemble(binning, generator=torch.Generator().manual_seed(0))
    rings = torch.rand(4, 100) * 1000
    et = torch.tensor([[16.0], [25.0], [35.0], [80.0]])
    eta = torch.tensor([[0.1], [-1.0], [1.45], [2.0]])
    with torch.no_grad():
        got = module(rings, et, eta)
    for row in range(4):
        b = int(module.bin_index(et[row : row + 1], eta[row : row + 1])[0])
        x = rings[row] / rings[row].sum()
        with torch.no_grad():
            hidden = torch.tanh(x @ module.w1[0, b] + module.b1[0, b])
            expected = torch.tanh(hidden @ module.w2[0, b] + module.b2[0, b])
        assert float(got[row, 0]) == pytest.approx(float(expected), abs=1e-6)


def test_sp_index() -> None:
    assert float(sp_index(1.0, 0.0)) == pytest.approx(1.0)
    assert float(sp_index(0.978, 0.3691)) == pytest.approx(0.7949, abs=1e-3)
    scores = torch.tensor([[0.9, 0.8, -0.7, -0.9]])
    signal = torch.tensor([[True, True, False, False]])
    assert float(best_sp(scores, signal, torch.ones_like(signal))[0]) == pytest.approx(1.0)


def test_t2calo_tuning_reaches_target_pd() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    bins = rng.integers(0, 2, n)
    electron = rng.uniform(size=n) < 0.5
    r_eta = np.where(electron, rng.normal(0.95, 0.02, n), rng.normal(0.8, 0.1, n))
    e_ratio = np.where(electron, rng.normal(0.8, 0.1, n), rng.normal(0.4, 0.3, n))
    r_had = np.where(electron, rng.exponential(0.01, n), rng.exponential(0.2, n))
    cuts = tune_t2calo(bins, electron, r_eta, e_ratio, r_had, n_bins=2)
    accepted = cuts.accept(bins, r_eta, e_ratio, r_had)
    for b in range(2):
        assert accepted[electron & (bins == b)].mean() == pytest.approx(0.978, abs=0.005)
        assert accepted[~electron & (bins == b)].mean() < 0.5


def test_sample_is_deterministic_for_a_seed(tmp_path) -> None:
    settings = RingerSampleSettings(n_electrons=60, jet_events=())
    first = write_ringer_sample(tmp_path / "a.h5", settings, seed=5)
    second = write_ringer_sample(tmp_path / "b.h5", settings, seed=5)
    other = write_ringer_sample(tmp_path / "c.h5", settings, seed=6)

    with h5py.File(first) as a, h5py.File(second) as b, h5py.File(other) as c:
        assert a["rings"].shape[1] == 100
        np.testing.assert_array_equal(a["rings"][:], b["rings"][:])
        assert not np.array_equal(a["et"][:], c["et"][:])
        assert (a["label"][:] == 1).all()
        # The cluster calibration puts single electrons at about their true E_T (4-100 GeV).
        assert 3.0 < np.median(a["et"][:]) < 100.0


def test_smoke_pipeline_exports_both_versions(calo_smoke_build) -> None:
    assert calo_smoke_build.exit_code == 0
    model_dir = calo_smoke_build.repository / "ringer"
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.version_policy.WhichOneof("policy_choice") == "all"
    assert {"sha256/1", "sha256/2"} <= set(config.parameters)
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "SMOKE BUILD" in card
    assert config.parameters["sha256/2"].string_value in card
    reports = calo_smoke_build.reports / "ringer"
    for name in ("roc_v1.png", "roc_v2.png", "pf_per_bin_v2.png", "README.md", "thresholds_v2.json"):
        assert (reports / name).stat().st_size > 0
    thresholds = json.loads((reports / "thresholds_v2.json").read_text())
    assert len(thresholds["thresholds"]) == BINNINGS[2].n_bins
    # Every fold model was run on the test set at its own operation-set thresholds.
    record = json.loads((reports / "training.json").read_text())
    for version in ("1", "2"):
        folds = record["versions"][version]["cross_validation"]
        assert len(folds["test_pd"]) == len(folds["test_pf"]) == folds["folds"] == 2
        assert all(0.0 <= value <= 1.0 for value in folds["test_pd"] + folds["test_pf"])
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["v2"]["fold_std_pd_test_inclusive"] >= 0.0
    assert "Fold to fold (2 fold models" in card
