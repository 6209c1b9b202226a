"""The conditional shower generator (served) and its critic (training only).

The generator factorises a shower into three layer energies and three normalised cell patterns:
``cells = E_layer x relu(pattern) / Σ relu(pattern)``. That keeps every output ≥ 0, allows exactly empty cells
(sparsity), and lets the energy-conservation term act directly on the layer energies. Each cell's pattern logit
gets its own noise (a fixed function of z, scaled per cell from the shower's hidden state), so cells at a
shower's edge switch on and off independently, as the parametrisation's spots do: that couples occupancy to
the lateral spread as in the reference (classifier AUC 0.851 instead of 0.883). Cells under a per-layer
floor (``cell_floor``, set from the training showers once training is over) are emptied, a zero suppression: the
parametrisation deposits energy in spots, so a hit cell never holds a sliver of a spot, while the generator
sprinkles such slivers over the outer strips of layer 0 and widens its showers there.

The back layer holds the shower's tail: a few spots, each carrying a whole depth slice's sampled energy, and
such energies span many decades (a Gamma with shape << 1: below 3 GeV the reference's back-layer energy ranges
from 1e-12 to 0.1 GeV). The back layer's energy and each of its cells' shares are therefore also multiplied by
``u^s`` (u uniform, a fixed function of z; s >= 0 from the hidden state), the lower tail of such a Gamma. Without
it the layer's energy could not fall below e^-12 of the incident one, and a linear pattern turned faint cells
off: 54% of back layers lay in a single phi column instead of 18%.

Layer 0's outer rows (more than 80 mm from the shower axis) catch only stray spots of the shower's halo, so a hit
cell there holds one whole spot, rarely two: 56% of the reference's hold 48-50 MeV. The generator's were
continuous (10-100 MeV), and the classifier's strongest observable was the width those rows give (dropping it:
AUC 0.798 -> 0.760 on validation showers). Once training is over, their cells are therefore made whole spots
(``outer_spot``, the training showers' median there): rounded up or down at random (u, a fixed function of z),
never below one, and the difference is taken from or given to the middle row, so the layer keeps its energy.
Layer 1's halo (cells whose nearer edge lies 120 mm or more from the axis) gets the same whole spots, rounded at
random without the floor of one (which would widen the layer), the inner cells keeping its energy: the trained
net left slivers of 5-30 MeV there (validation AUC 0.783 -> 0.770).

Once the net is trained, the back layer's cells come from a model fitted by maximum likelihood
(``back_layer``, :mod:`._back_layer`), which spreads the net's back-layer energy over them: the adversarial head
never learned where the tail's few spots land (validation AUC 0.766 -> 0.736).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..calorimeter import CALOGAN_LAYERS
from ._back_layer import BackLayerModel

__all__ = ["LATENT_DIM", "CaloGanCritic", "CaloGanGenerator", "condition", "critic_inputs", "outer_rows"]

LATENT_DIM = 64
_CELLS = [spec.rows * spec.columns for spec in CALOGAN_LAYERS]
_BACK = len(_CELLS) - 1
#: Layer 0's rows beside the one that holds the shower axis.
_OUTER_ROWS = (0, 2)
#: Layer 1's halo: cells three or more cells (120 mm) away from the four around the axis, in eta or in phi.
_HALO_RING = 3.5


def outer_rows(layer_0: torch.Tensor) -> torch.Tensor:
    """Layer 0's outer rows, ``[B, 2, columns]`` of a ``[B, 3, columns]`` layer."""
    return layer_0[:, _OUTER_ROWS, :]


def _uniforms(z: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """Uniforms in [0, 1), a fixed function of z: the fractional parts of fixed projections of it."""
    projected = z @ projection
    return projected - torch.floor(projected)


def _whole_spots(cells: torch.Tensor, spot: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """``cells`` rounded up or down at random to whole spots (unbiased: up with the chance of the remainder)."""
    return spot * torch.floor(cells / torch.clamp(spot, min=1e-12) + uniform)


def condition(energy_gev: torch.Tensor) -> torch.Tensor:
    """The conditioning variable: log10(E / 10 GeV), in [-1, 1] over the 1-100 GeV range."""
    return torch.log10(energy_gev / 10.0)


class CaloGanGenerator(nn.Module):
    """(z [B,64], energy [B,1] GeV) -> (layer_0 [B,3,96], layer_1 [B,12,12], layer_2 [B,12,6]) in GeV."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(LATENT_DIM + 1, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
        )
        self.patterns = nn.ModuleList(nn.Linear(hidden, cells) for cells in _CELLS)
        self.log_fractions = nn.Linear(hidden, len(_CELLS))
        #: Per-layer minimum cell energy [GeV]; smaller deposits are set to 0 (0 = no floor).
        self.cell_floor: torch.Tensor
        self.register_buffer("cell_floor", torch.zeros(len(_CELLS)))
        # Start near the typical longitudinal split (layer 1 dominates) so early steps learn shapes, not scale.
        with torch.no_grad():
            self.log_fractions.weight.mul_(0.1)
            self.log_fractions.bias.copy_(torch.log(torch.tensor([0.25, 0.74, 0.01])))
        # Per-cell noise, a fixed function of z: cos of fixed random projections of z, |w| = 5 so that each is
        # close to independent of the others (the served model stays a deterministic function of its inputs).
        projection = torch.randn(LATENT_DIM, sum(_CELLS), generator=torch.Generator().manual_seed(12345))
        self.noise_projection: torch.Tensor
        self.register_buffer("noise_projection", projection / projection.norm(dim=0, keepdim=True) * 5.0)
        #: Per-cell noise amplitudes, from the shower's hidden state; they start small.
        scales = [nn.Linear(hidden, cells) for cells in _CELLS]
        with torch.no_grad():
            for scale in scales:
                scale.weight.mul_(0.1)
                scale.bias.fill_(-2.0)
        self.noise_scales = nn.ModuleList(scales)
        # The back layer's amplitude noise: uniforms as the fractional part of other fixed projections of z
        # (|w| = 5: the fractional part of a N(0, 25) variable is uniform to far below float precision).
        # Column 0 is the layer energy's, the others its cells'.
        uniform = torch.randn(LATENT_DIM, 1 + _CELLS[_BACK], generator=torch.Generator().manual_seed(54321))
        self.uniform_projection: torch.Tensor
        self.register_buffer("uniform_projection", uniform / uniform.norm(dim=0, keepdim=True) * 5.0)
        #: Exponents s of the back layer's u^s (its energy, then each cell); they start near 0 (no effect).
        self.back_exponents = nn.Linear(hidden, 1 + _CELLS[_BACK])
        with torch.no_grad():
            self.back_exponents.weight.mul_(0.1)
            self.back_exponents.bias.fill_(-3.0)
        #: The energy of one spot in layer 0's outer rows [GeV] (0 = cells left as they are; set after training).
        self.outer_spot: torch.Tensor
        self.register_buffer("outer_spot", torch.zeros(()))
        # The rounding's uniforms, one per outer cell, made as the back layer's are.
        columns = CALOGAN_LAYERS[0].columns
        rounding = torch.randn(LATENT_DIM, 2 * columns, generator=torch.Generator().manual_seed(24680))
        self.rounding_projection: torch.Tensor
        self.register_buffer("rounding_projection", rounding / rounding.norm(dim=0, keepdim=True) * 5.0)
        halo_rounding = torch.randn(LATENT_DIM, _CELLS[1], generator=torch.Generator().manual_seed(13579))
        self.halo_rounding_projection: torch.Tensor
        self.register_buffer(
            "halo_rounding_projection", halo_rounding / halo_rounding.norm(dim=0, keepdim=True) * 5.0
        )
        spec = CALOGAN_LAYERS[1]
        rows = torch.arange(spec.rows) - (spec.rows - 1) / 2
        columns_1 = torch.arange(spec.columns) - (spec.columns - 1) / 2
        ring = torch.maximum(rows.abs()[:, None], columns_1.abs()[None, :])
        self.halo: torch.Tensor
        self.register_buffer("halo", ring >= _HALO_RING)
        #: The back layer's cells, fitted by maximum likelihood once the net is trained; while None (training),
        #: the net's own back-layer head spreads the energy.
        self.back_layer: BackLayerModel | None = None

    def forward(
        self, z: torch.Tensor, energy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.trunk(torch.cat([z, condition(energy)], dim=1))
        # Layer energies relative to the incident energy, bounded to (0, e^1) of it: a wild latent cannot
        # produce an unphysical shower.
        log_fractions = torch.clamp(self.log_fractions(hidden), -12.0, 1.0)
        log_uniform = torch.log(torch.clamp(_uniforms(z, self.uniform_projection), 1e-12, 1.0))
        back_log_scale = nn.functional.softplus(self.back_exponents(hidden)) * log_uniform  # log(u^s) <= 0
        log_fractions = torch.cat(
            [log_fractions[:, :_BACK], log_fractions[:, _BACK:] + back_log_scale[:, :1]], dim=1
        )
        layer_energy = energy * torch.exp(log_fractions)
        noise = math.sqrt(2.0) * torch.cos(z @ self.noise_projection)
        outputs = []
        start = 0
        for index, (spec, head) in enumerate(zip(CALOGAN_LAYERS, self.patterns, strict=True)):
            cell_noise = noise[:, start : start + spec.rows * spec.columns]
            start += spec.rows * spec.columns
            scale = nn.functional.softplus(self.noise_scales[index](hidden))
            pattern = torch.relu(head(hidden) + scale * cell_noise)
            if index == _BACK:
                pattern = pattern * torch.exp(back_log_scale[:, 1:])
            pattern = pattern / (pattern.sum(dim=1, keepdim=True) + 1e-6)
            cells = pattern * layer_energy[:, index : index + 1]
            cells = torch.where(cells >= self.cell_floor[index], cells, torch.zeros_like(cells))
            outputs.append(cells.reshape(-1, spec.rows, spec.columns))
        back = outputs[_BACK]
        if self.back_layer is not None:
            back = self.back_layer(z, energy, layer_energy[:, _BACK:])
        return self._whole_outer_spots(outputs[0], z), self._whole_halo_spots(outputs[1], z), back

    def _whole_outer_spots(self, layer_0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Layer 0 with its outer rows' hit cells made whole spots (see the module docstring); unchanged while
        ``outer_spot`` is 0. Branch-free, so the exported graph holds both cases."""
        spot = self.outer_spot
        outer = outer_rows(layer_0)
        uniform = _uniforms(z, self.rounding_projection).reshape(outer.shape)
        whole = torch.clamp(_whole_spots(outer, spot, uniform), min=spot)  # never below one spot
        rounded = torch.where((outer > 0) & (spot > 0), whole, outer)
        # The middle row gives (or takes) the difference in proportion to its cells, never going below 0. (Not
        # detached as layer 1's is: the committed net was trained with this graph, and detaching changes training.)
        middle = layer_0[:, 1, :]
        surplus = (outer - rounded).sum(dim=(1, 2))
        middle = torch.clamp(
            middle + surplus[:, None] * middle / (middle.sum(dim=1, keepdim=True) + 1e-12), min=0.0
        )
        return torch.stack([rounded[:, 0], middle, rounded[:, 1]], dim=1)

    def _whole_halo_spots(self, layer_1: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Layer 1 with its halo cells rounded at random to whole spots (see the module docstring); unchanged,
        gradients included, while ``outer_spot`` is 0: the difference the inner cells take is detached, so the
        training graph computes exactly what it did without this step (a GAN carries a 1e-7 change far)."""
        spot = self.outer_spot
        uniform = _uniforms(z, self.halo_rounding_projection).reshape(layer_1.shape)
        rounded = torch.where(self.halo & (spot > 0), _whole_spots(layer_1, spot, uniform), layer_1)
        inner = torch.where(self.halo, torch.zeros_like(rounded), rounded)
        surplus = (layer_1 - rounded).sum(dim=(1, 2)).detach()
        share = inner / (inner.sum(dim=(1, 2), keepdim=True) + 1e-12)
        return torch.clamp(rounded + surplus[:, None, None] * share, min=0.0)


def critic_inputs(
    layers: tuple[torch.Tensor, torch.Tensor, torch.Tensor], energy_gev: torch.Tensor
) -> torch.Tensor:
    """What the critic sees: per-layer normalised patterns (sqrt-compressed), log layer fractions, log E."""
    parts = []
    log_fractions = []
    for layer in layers:
        flat = layer.reshape(layer.shape[0], -1)
        total = flat.sum(dim=1, keepdim=True)
        parts.append(torch.sqrt(flat / (total + 1e-6) + 1e-8))
        log_fractions.append(torch.log(total / energy_gev + 1e-6))
    return torch.cat([*parts, torch.cat(log_fractions, dim=1), condition(energy_gev)], dim=1)


class CaloGanCritic(nn.Module):
    """WGAN critic on :func:`critic_inputs` plus ``extra_features`` columns (the trainer's shower shapes).

    No normalisation layers: the gradient penalty needs per-sample gradients."""

    def __init__(self, hidden: int = 256, extra_features: int = 0) -> None:
        super().__init__()
        width = sum(_CELLS) + len(_CELLS) + 1 + extra_features
        self.net = nn.Sequential(
            nn.Linear(width, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden // 2),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        score: torch.Tensor = self.net(features).squeeze(1)
        return score
