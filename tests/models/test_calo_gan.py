"""calo_gan: the parametrised CaloGAN calorimeter, latent sampling, the generator, metrics, smoke pipeline."""

from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hepsonic_client.physics.showers import LAYER_SHAPES, calo_gan_inputs, sample_latent
from hepsonic_models.calo_gan import FEATURE_NAMES, BackLayerModel, CaloGanGenerator, shower_features
from hepsonic_models.calo_gan._back_layer import BackLayerSettings, fit_back_layer
from hepsonic_models.calo_gan._model import outer_rows
from hepsonic_models.calo_gan._train import (
    TrainingSettings,
    _conservation,
    cell_floors,
    outer_spot_energy,
    train_generator,
)
from hepsonic_models.calorimeter import simulate_calogan_showers
from hepsonic_models.report import separation_power


def test_parametrised_showers_have_calogan_layout_and_conserve_energy() -> None:
    showers = simulate_calogan_showers(np.full(300, 50.0), seed=1)
    for key, shape in LAYER_SHAPES.items():
        assert showers[key].shape == (300, *shape)
        assert (showers[key] >= 0).all()
    total = sum(showers[key].sum(axis=(1, 2)) for key in LAYER_SHAPES)
    response = total / 50.0
    assert response.mean() == pytest.approx(1.0, abs=0.03)
    # Sampling term ~11%/sqrt(E): about 1.6% at 50 GeV.
    assert 0.008 < response.std() < 0.03
    again = simulate_calogan_showers(np.full(300, 50.0), seed=1)
    np.testing.assert_array_equal(showers["layer_1"], again["layer_1"])


def test_latent_sampling_is_reproducible_and_energy_checked() -> None:
    np.testing.assert_array_equal(sample_latent(5, 3), sample_latent(5, 3))
    assert not np.array_equal(sample_latent(5, 3), sample_latent(5, 3, stream=1))
    inputs = calo_gan_inputs([1.0, 100.0], seed=0)
    assert inputs["z"].shape == (2, 64)
    assert inputs["energy"].dtype == np.float32
    with pytest.raises(
        ValueError, match=r"calo_gan: input 'energy' must be in \[1, 100\] GeV, got \[150.0\]"
    ):
        calo_gan_inputs([50.0, 150.0], seed=0)


def test_generator_outputs_are_non_negative() -> None:
    torch.manual_seed(0)
    generator = CaloGanGenerator().eval()
    inputs = calo_gan_inputs(np.linspace(1, 100, 8), seed=1)
    with torch.no_grad():
        layers = generator(torch.from_numpy(inputs["z"]), torch.from_numpy(inputs["energy"]))
    for layer, (key, shape) in zip(layers, LAYER_SHAPES.items(), strict=True):
        assert tuple(layer.shape[1:]) == shape, key
        assert float(layer.min()) >= 0.0


def test_the_back_layer_can_span_many_decades_as_a_shower_tail_does() -> None:
    """The back layer's energy (and its cells' shares) carry a u^s factor: with large exponents, the layer's
    energy reaches far below the e^-12 of the incident energy that the other layers are bounded by, as the
    reference's Gamma-distributed tail does; with the initial small exponents it barely changes."""
    torch.manual_seed(0)
    generator = CaloGanGenerator().eval()
    inputs = calo_gan_inputs(np.full(2000, 2.0), seed=5)
    args = torch.from_numpy(inputs["z"]), torch.from_numpy(inputs["energy"])
    with torch.no_grad():
        initial = generator(*args)[2].sum(dim=(1, 2)) / 2.0
        generator.back_exponents.bias.fill_(10.0)  # s ~ 10: u^10 spans ten decades for u in [0.1, 1]
        heavy = generator(*args)[2].sum(dim=(1, 2)) / 2.0
    assert bool(torch.isfinite(heavy).all())
    assert float(heavy.min()) >= 0.0
    assert float(initial.min()) > math.exp(-12.0) * 0.5  # small exponents: about the bounded fraction
    decades = torch.log10(heavy[heavy > 0])
    assert float(decades.max() - decades.min()) > 8.0
    assert float((heavy < math.exp(-12.0)).float().mean()) > 0.3


def test_cells_under_the_floor_are_emptied_and_the_floor_comes_from_the_training_cells() -> None:
    torch.manual_seed(0)
    generator = CaloGanGenerator().eval()
    inputs = calo_gan_inputs(np.linspace(1, 100, 64), seed=3)
    args = torch.from_numpy(inputs["z"]), torch.from_numpy(inputs["energy"])
    with torch.no_grad():
        free = generator(*args)
        generator.cell_floor.copy_(torch.tensor([0.02, 0.001, 0.0]))
        floored = generator(*args)
    for index, (before, after) in enumerate(zip(free, floored, strict=True)):
        floor = float(generator.cell_floor[index])
        kept = before >= floor
        torch.testing.assert_close(after[kept], before[kept])
        assert not bool(after[~kept].any())
    assert int(((free[0] > 0) & (free[0] < 0.02)).sum()) > 0  # the floor had something to remove

    showers = {key: np.zeros((2, 10), np.float32) for key in ("layer_0", "layer_1", "layer_2")}
    showers["layer_0"][0, :] = np.arange(1, 11)  # hit cells 1..10 GeV, the rest empty
    showers["layer_1"][1, :5] = 2.0
    floors = cell_floors(showers, 10.0)
    np.testing.assert_allclose(floors.numpy(), [np.percentile(np.arange(1, 11), 10.0), 2.0, 0.0])


def test_layer_0_outer_cells_become_whole_spots_and_the_layer_keeps_its_energy() -> None:
    """With ``outer_spot`` set, every hit cell of layer 0's outer rows holds a whole number (>= 1) of spots,
    rounded both ways; no cell is switched on or off; the middle row absorbs the difference, so each layer keeps
    its energy; the back layer does not change. With ``outer_spot`` 0 the generator is as before."""
    torch.manual_seed(0)
    generator = CaloGanGenerator().eval()
    with torch.no_grad():  # a trained net's middle row holds most of the layer
        generator.patterns[0].bias[96:192] += 1.0
    inputs = calo_gan_inputs(np.geomspace(5.0, 100.0, 256), seed=4)
    args = torch.from_numpy(inputs["z"]), torch.from_numpy(inputs["energy"])
    spot = 0.05
    with torch.no_grad():
        free = generator(*args)
        generator.outer_spot.fill_(spot)
        whole = generator(*args)
        generator.outer_spot.zero_()
        again = generator(*args)
    for before, after in zip(free, again, strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=0)
    before_outer, after_outer = outer_rows(free[0]), outer_rows(whole[0])
    hit = before_outer > 0
    assert int(hit.sum()) > 1000  # an untrained net hits most cells: plenty to round
    assert torch.equal(after_outer > 0, hit)
    spots = after_outer[hit] / spot
    torch.testing.assert_close(spots, torch.round(spots), rtol=0, atol=1e-3)
    assert float(spots.min()) >= 1.0 - 1e-3
    assert bool((after_outer[hit] > before_outer[hit] + 1e-6).any())
    assert bool((after_outer[hit] < before_outer[hit] - 1e-6).any())
    # The middle row pays for what the rounding adds, down to 0: where it can, the layer keeps its energy.
    added = (after_outer - before_outer).sum(dim=(1, 2))
    payable = added < free[0][:, 1].sum(dim=1)
    assert int(payable.sum()) > 100
    torch.testing.assert_close(
        whole[0][payable].sum(dim=(1, 2)), free[0][payable].sum(dim=(1, 2)), rtol=1e-5, atol=1e-6
    )
    assert float(whole[0].min()) >= 0.0
    torch.testing.assert_close(whole[2], free[2], rtol=0, atol=0)

    showers = {"layer_0": np.zeros((3, 3, 96), np.float32)}
    showers["layer_0"][0, 0, :4] = [0.04, 0.05, 0.05, 0.1]  # outer rows: median 0.05
    showers["layer_0"][1, 2, 7] = 0.05
    showers["layer_0"][2, 1, :] = 7.0  # the middle row does not count
    assert outer_spot_energy(showers) == pytest.approx(0.05)


def test_layer_1_halo_cells_become_whole_spots_and_training_does_not_see_it() -> None:
    """With ``outer_spot`` set, layer 1's halo cells hold whole spots (some emptied, some rounded up), the inner
    cells keep the layer's energy. With it 0 the step is the identity, gradients included, bit for bit."""
    torch.manual_seed(0)
    generator = CaloGanGenerator().eval()
    inputs = calo_gan_inputs(np.geomspace(5.0, 100.0, 256), seed=6)
    z, energy = torch.from_numpy(inputs["z"]), torch.from_numpy(inputs["energy"])
    spot = 0.05
    with torch.no_grad():
        free = generator(z, energy)[1]
        generator.outer_spot.fill_(spot)
        whole = generator(z, energy)[1]
        generator.outer_spot.zero_()
    halo = generator.halo
    assert int(halo.sum()) == 144 - 36  # all but the 6 x 6 cells around the axis
    before, after = free[:, halo], whole[:, halo]
    spots = after / spot
    torch.testing.assert_close(spots, torch.round(spots), rtol=0, atol=1e-3)
    assert bool(((before > 0) & (after == 0)).any())
    assert bool((after > before + 1e-6).any())
    torch.testing.assert_close(whole.sum(dim=(1, 2)), free.sum(dim=(1, 2)), rtol=1e-5, atol=1e-6)
    assert float(whole.min()) >= 0.0

    def gradients(model: CaloGanGenerator) -> list[torch.Tensor]:
        model.zero_grad()
        layers = model(z, energy)
        sum((layer**2).sum() for layer in layers).backward()  # type: ignore[union-attr]
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    with_step = gradients(generator)
    generator._whole_halo_spots = lambda layer_1, _z: layer_1  # type: ignore[method-assign]
    without_step = gradients(generator)
    assert len(with_step) == len(without_step) > 0
    for a, b in zip(with_step, without_step, strict=True):
        assert torch.equal(a, b)


def test_the_back_layer_model_spreads_exactly_the_energy_it_is_given() -> None:
    torch.manual_seed(0)
    model = BackLayerModel().eval()
    n = 400
    energy = torch.linspace(1.0, 100.0, n)[:, None]
    layer_energy = torch.cat([torch.zeros(100), torch.logspace(-20, 0, n - 100)])[:, None]
    with torch.no_grad():
        cells = model(torch.from_numpy(sample_latent(n, seed=1)), energy, layer_energy)
    assert cells.shape == (n, 12, 6)
    assert float(cells.min()) >= 0.0
    totals = cells.sum(dim=(1, 2))
    torch.testing.assert_close(totals[100:], layer_energy[100:, 0], rtol=1e-5, atol=0.0)
    assert float(totals[:100].abs().max()) == 0.0  # an empty layer stays empty
    assert int(((cells > 0).sum(dim=(1, 2))[100:] >= 1).sum()) == n - 100


def test_the_back_layer_fit_learns_how_many_cells_are_hit_where_and_their_shares() -> None:
    # Toy back layers: below 50 GeV one hit in cell (5, 2); above, 70% in (6, 3) and 30% in (5, 3).
    rng = np.random.default_rng(4)
    energy = rng.uniform(1.0, 100.0, 4000).astype(np.float32)
    cells = np.zeros((4000, 12, 6), dtype=np.float32)
    low = energy < 50.0
    back = 0.01 * energy
    cells[low, 5, 2] = back[low]
    cells[~low, 6, 3] = 0.7 * back[~low]
    cells[~low, 5, 3] = 0.3 * back[~low]
    showers = {"energy": energy[:, None], "layer_2": cells}
    model, fit = fit_back_layer(showers, BackLayerSettings(steps=400, batch_size=256), seed=5)
    assert fit.steps == 400
    assert fit.final_nll[0] < 0.2  # the hit count is all but certain given the energy (uniform: 3.2)
    test_energy = torch.tensor([[20.0]] * 300 + [[80.0]] * 300)
    with torch.no_grad():
        generated = model(
            torch.from_numpy(sample_latent(600, seed=6)), test_energy, 0.01 * test_energy
        ).numpy()
    hits = (generated > 0).sum(axis=(1, 2))
    assert (hits[:300] == 1).mean() > 0.95
    assert (hits[300:] == 2).mean() > 0.95
    assert (generated[:300, 5, 2] > 0).mean() > 0.95
    two = generated[300:]
    assert ((two[:, 6, 3] > 0) & (two[:, 5, 3] > 0)).mean() > 0.9
    larger = np.maximum(two[:, 6, 3], two[:, 5, 3]) / 0.8
    assert np.median(larger) == pytest.approx(0.7, abs=0.05)


def test_the_served_generator_takes_its_back_layer_from_the_fitted_model() -> None:
    torch.manual_seed(1)
    generator = CaloGanGenerator().eval()
    z = torch.from_numpy(sample_latent(64, seed=2))
    energy = torch.linspace(2.0, 90.0, 64)[:, None]
    with torch.no_grad():
        before = generator(z, energy)
        back_layer = BackLayerModel().eval()
        generator.back_layer = back_layer
        after = generator(z, energy)
        expected = back_layer(z, energy, before[2].sum(dim=(1, 2))[:, None])
    for old, new in zip(before[:2], after[:2], strict=True):
        torch.testing.assert_close(new, old, rtol=0, atol=0)
    assert not torch.equal(after[2], before[2])
    # The back layer keeps the net's energy (before the net's own floor, which is 0 here).
    torch.testing.assert_close(after[2], expected, rtol=1e-5, atol=1e-7)


def test_energy_conservation_term_compares_the_spread_per_energy_group() -> None:
    # Real: 5% resolution at low energy, 1% at high; fake: the two swapped. Over the whole batch the values
    # agree, so only a per-group term sees that the fake's resolution runs the wrong way with energy.
    generator = torch.Generator().manual_seed(0)
    energy = torch.cat([torch.full((512, 1), 5.0), torch.full((512, 1), 80.0)])
    unit = torch.randn(512, generator=generator)
    real = torch.cat([0.05 * unit, 0.01 * unit])
    fake = torch.cat([0.01 * unit, 0.05 * unit])  # the same values as real, in the other energy group
    assert float(_conservation(fake, real, energy, 1)) < 1e-10
    assert float(_conservation(fake, real, energy, 2)) > 1e-4
    assert float(_conservation(real, real, energy, 2)) == 0.0


def test_training_keeps_the_best_scored_checkpoint_with_its_floor_in_place() -> None:
    showers = simulate_calogan_showers(np.linspace(5.0, 60.0, 256), seed=2)
    settings = TrainingSettings(max_steps=6, batch_size=32, select_every=3)
    floors_seen = []
    spots_seen = []

    back_layers_seen = []
    back_layer = BackLayerModel()

    def prefer_step_3(generator: CaloGanGenerator) -> float:
        floors_seen.append(generator.cell_floor.clone())
        spots_seen.append(float(generator.outer_spot))
        back_layers_seen.append(generator.back_layer)
        return 0.2 if len(floors_seen) == 1 else 0.7

    chosen, summary = train_generator(showers, settings, seed=3, select=prefer_step_3, back_layer=back_layer)
    assert back_layers_seen == [back_layer, back_layer]
    assert chosen.back_layer is back_layer
    assert [step for step, _ in summary.selection] == [3, 6]
    assert summary.selected_step == 3
    expected_floors = cell_floors(showers, settings.cell_floor_percentile)
    for floor in floors_seen:  # scored as served: behind the cell floor (and with whole outer spots)
        torch.testing.assert_close(floor, expected_floors)
    assert spots_seen == [pytest.approx(outer_spot_energy(showers))] * 2
    assert outer_spot_energy(showers) > 0.0
    assert float(chosen.outer_spot) == pytest.approx(outer_spot_energy(showers))
    # Scoring draws no random numbers, so the kept checkpoint is exactly a 3-step training.
    three_steps, _ = train_generator(showers, TrainingSettings(max_steps=3, batch_size=32), seed=3)
    assert three_steps.back_layer is None
    for name, tensor in three_steps.state_dict().items():
        torch.testing.assert_close(chosen.state_dict()[name], tensor, rtol=0, atol=0)
    last, _ = train_generator(showers, TrainingSettings(max_steps=6, batch_size=32), seed=3)
    assert not torch.equal(last.patterns[0].weight, chosen.patterns[0].weight)


def test_separation_power_and_features() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert separation_power(a, a) == 0.0
    assert separation_power(a, a + 100.0) > 0.97
    assert 0.0 < separation_power(a, rng.normal(0.3, 1.0, 5000)) < 0.1
    showers = simulate_calogan_showers(np.full(50, 20.0), seed=2)
    features = shower_features(showers, showers["energy"])
    assert features.shape == (50, len(FEATURE_NAMES))
    np.testing.assert_allclose(features[:, 3:6].sum(axis=1), 1.0, rtol=1e-6)


def test_smoke_pipeline_exports_served_generator(calo_smoke_build) -> None:
    assert calo_smoke_build.exit_code == 0
    model = calo_smoke_build.repository / "calo_gan" / "1" / "model.onnx"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outputs = session.run(None, calo_gan_inputs([5.0, 50.0, 95.0], seed=4))
    assert [o.shape for o in outputs] == [(3, 3, 96), (3, 12, 12), (3, 12, 6)]
    assert min(float(o.min()) for o in outputs) >= 0.0
    metrics = json.loads((calo_smoke_build.reports / "calo_gan" / "metrics.json").read_text())
    assert set(metrics["separation"]) == {"spectrum", "10 GeV", "50 GeV", "90 GeV"}
    assert metrics["speed_up"] > 0
    for name in (
        "shower_shapes.png",
        "response.png",
        "mean_showers.png",
        "feature_correlations.png",
        "back_layer_hits.png",
        "README.md",
    ):
        assert (calo_smoke_build.reports / "calo_gan" / name).stat().st_size > 0
    training = json.loads((calo_smoke_build.reports / "calo_gan" / "training.json").read_text())["training"]
    assert [step for step, _ in training["selection"]] == [5, 10]
    assert training["selected_step"] in (5, 10)
    card = (calo_smoke_build.repository / "calo_gan" / "MODEL_CARD.md").read_text()
    assert f"Checkpoint kept: step {training['selected_step']}" in card
