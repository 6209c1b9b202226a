"""The back layer's cells, fitted by maximum likelihood instead of adversarially.

The back layer holds a shower's tail: one to a few 50 MeV spots per depth slice, whose energies span many
decades at low energies. The adversarial head never learned where those spots land: its hit map was lopsided,
with rows that were never hit and cells hit thirty times too often, and that alone kept the real-vs-generated
classifier above its target (validation AUC 0.766 with it, 0.728 with the back layers of training showers of the
nearest energy). A few hundred spot patterns are a small, discrete distribution, which a likelihood fits well,
so the served generator keeps the adversarial net's back-layer *energy* (which carries the correlation with the
front layers) and draws the *cells* from this model:

1. the number of hit cells, a categorical distribution given log E and log(E_back / E);
2. which cells, in order: Gumbel top-k on per-cell logits given the same two, i.e. drawing cells one after the
   other without replacement (Plackett-Luce), fitted to the hit cells ordered by energy;
3. their energy shares, by stick-breaking in that order: the k-th cell takes sigmoid(mu + s·logistic) of what is
   left (mu, s from the shower, the hit count and k), the last one the rest.

Its randomness, like the generator's, is a fixed function of ``z`` (fractional parts of fixed projections of
it), so the served model stays a deterministic function of its inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from ..calorimeter import CALOGAN_LAYERS

__all__ = ["BackLayerFit", "BackLayerModel", "BackLayerSettings", "fit_back_layer"]

_SPEC = CALOGAN_LAYERS[-1]
_CELLS = _SPEC.rows * _SPEC.columns
#: Most hit cells the model can draw (the reference's most in 100,000 showers: 13).
MAX_HITS = 24
#: log10(E_back / E) below this counts as an empty back layer (float32 holds deposits down to ~1e-38 GeV).
_LOG_FLOOR = -30.0
#: Logits of the stick-breaking fractions are fitted within +-this (float32's sigmoid saturates beyond ~17).
_LOGIT_RANGE = 60.0
_LATENT_DIM = 64
#: Seed of the fixed projections that turn z into this model's uniforms (apart from the generator's).
_PROJECTION_SEED = 97531


def _mlp(inputs: int, outputs: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, outputs)
    )


class BackLayerModel(nn.Module):
    """(z [B,64], energy [B,1] GeV, back-layer energy [B,1] GeV) -> back-layer cells [B,12,6] GeV.

    The cells sum to the given back-layer energy (0 stays 0)."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.count = _mlp(2, MAX_HITS + 1, hidden)
        self.position = _mlp(2, _CELLS, hidden)
        #: Inputs: the shower's two conditions, the hit count, the step k and log(cells left).
        self.share = _mlp(5, 2, hidden)
        projection = torch.randn(
            _LATENT_DIM, 1 + _CELLS + MAX_HITS, generator=torch.Generator().manual_seed(_PROJECTION_SEED)
        )
        self.uniform_projection: torch.Tensor
        self.register_buffer("uniform_projection", projection / projection.norm(dim=0, keepdim=True) * 5.0)

    @staticmethod
    def conditions(energy: torch.Tensor, layer_energy: torch.Tensor) -> torch.Tensor:
        """[B,2]: log10(E / 10 GeV) and log10(E_back / E) / 10 (an empty layer at -3)."""
        relative = torch.clamp(torch.log10(layer_energy / energy + 1e-30), min=_LOG_FLOOR)
        return torch.cat([torch.log10(energy / 10.0), relative / 10.0], dim=1)

    def _share_parameters(
        self, conditions: torch.Tensor, hits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and log scale of the logistic stick-breaking logit at each step k, [B, MAX_HITS] each."""
        batch = conditions.shape[0]
        step = torch.arange(MAX_HITS, dtype=conditions.dtype)[None, :].expand(batch, -1)
        count = hits[:, None].to(conditions.dtype).expand(-1, MAX_HITS)
        left = torch.log(torch.clamp(count - step, min=1.0))
        inputs = torch.cat(
            [
                conditions[:, None, :].expand(-1, MAX_HITS, -1),
                (count / 8.0)[..., None],
                (step / 8.0)[..., None],
                left[..., None],
            ],
            dim=2,
        )
        out = self.share(inputs)
        return out[..., 0], out[..., 1]

    def forward(self, z: torch.Tensor, energy: torch.Tensor, layer_energy: torch.Tensor) -> torch.Tensor:
        conditions = self.conditions(energy, layer_energy)
        projected = z @ self.uniform_projection
        uniform = torch.clamp(projected - torch.floor(projected), 1e-7, 1.0 - 1e-7)
        # 1. The hit count: inverse CDF; at least one cell when the layer holds energy, none when it is empty.
        cdf = torch.cumsum(torch.softmax(self.count(conditions), dim=1), dim=1)
        hits = (cdf < uniform[:, :1]).sum(dim=1)
        hits = torch.where(layer_energy[:, 0] > 0, torch.clamp(hits, min=1), torch.zeros_like(hits))
        # 2. The order the cells are drawn in: Gumbel noise on the logits, rank 0 = drawn first.
        gumbel = self.position(conditions) - torch.log(-torch.log(uniform[:, 1 : 1 + _CELLS]))
        rank = (gumbel[:, None, :] > gumbel[:, :, None]).sum(dim=2)
        # 3. Shares by stick-breaking over the ranks; the last hit cell takes what is left.
        location, log_scale = self._share_parameters(conditions, hits)
        noise = uniform[:, 1 + _CELLS :]
        fraction = torch.sigmoid(location + torch.exp(log_scale) * (torch.log(noise) - torch.log1p(-noise)))
        step = torch.arange(MAX_HITS)[None, :]
        fraction = torch.where(step == hits[:, None] - 1, torch.ones_like(fraction), fraction)
        kept = torch.cumsum(torch.log1p(-torch.clamp(fraction, max=1.0 - 1e-7)), dim=1)
        before = torch.exp(torch.cat([torch.zeros_like(kept[:, :1]), kept[:, :-1]], dim=1))
        shares = torch.where(step < hits[:, None], before * fraction, torch.zeros_like(fraction))
        shares = shares / (shares.sum(dim=1, keepdim=True) + 1e-30)
        # Cells ranked MAX_HITS or later are never drawn.
        shares = torch.cat([shares, torch.zeros_like(shares[:, :1]).expand(-1, _CELLS - MAX_HITS)], dim=1)
        cells = layer_energy * torch.gather(shares, 1, rank)
        return cells.reshape(-1, _SPEC.rows, _SPEC.columns)

    def negative_log_likelihood(
        self, energy: torch.Tensor, cells: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean negative log-likelihood per shower of (hit count, hit order, shares) of real back layers."""
        flat = cells.reshape(cells.shape[0], -1)
        conditions = self.conditions(energy, flat.sum(dim=1, keepdim=True))
        hits = (flat > 0).sum(dim=1).clamp(max=MAX_HITS)
        count = nn.functional.cross_entropy(self.count(conditions), hits)
        # Plackett-Luce over the hit cells ordered by energy; the unhit cells stay in every draw's denominator.
        order = torch.argsort(flat, dim=1, descending=True)
        logits = torch.gather(self.position(conditions), 1, order)
        remaining = torch.flip(torch.logcumsumexp(torch.flip(logits, [1]), dim=1), [1])
        step = torch.arange(_CELLS)[None, :]
        drawn = (step < hits[:, None]).to(logits.dtype)
        placement = -((logits - remaining) * drawn).sum(dim=1).mean()
        # Stick-breaking fractions in float64: shares reach 1e-20 and below.
        ordered = torch.gather(flat, 1, order).double()
        left = torch.flip(torch.cumsum(torch.flip(ordered, [1]), dim=1), [1])
        fraction = (ordered / torch.clamp(left, min=1e-300)).clamp(1e-30, 1.0 - 1e-12)
        target = (torch.log(fraction) - torch.log1p(-fraction)).float().clamp(-_LOGIT_RANGE, _LOGIT_RANGE)
        target = target[:, :MAX_HITS]
        location, log_scale = self._share_parameters(conditions, hits)
        scaled = (target - location) * torch.exp(-log_scale)
        logistic = scaled + 2.0 * nn.functional.softplus(-scaled) + log_scale
        broken = (step[:, :MAX_HITS] < hits[:, None] - 1).to(logistic.dtype)
        shares = (logistic * broken).sum(dim=1).mean()
        return count, placement, shares


@dataclass(frozen=True, kw_only=True)
class BackLayerSettings:
    """Adam with a cosine-decaying learning rate over ``steps`` batches."""

    steps: int = 6000
    batch_size: int = 512
    learning_rate: float = 2e-3
    hidden: int = 64


@dataclass
class BackLayerFit:
    """What the fit did (for the build record)."""

    steps: int
    seconds: float
    #: Mean negative log-likelihood of (count, order, shares) over the training showers at the end.
    final_nll: tuple[float, float, float]


def fit_back_layer(
    showers: dict[str, npt.NDArray[np.float32]], settings: BackLayerSettings, seed: int
) -> tuple[BackLayerModel, BackLayerFit]:
    """Fit a :class:`BackLayerModel` to the training showers' back layers (``layer_2``, ``energy``; GeV)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    energy = torch.from_numpy(np.asarray(showers["energy"], dtype=np.float32).reshape(-1, 1))
    cells = torch.from_numpy(np.asarray(showers["layer_2"], dtype=np.float32))
    model = BackLayerModel(hidden=settings.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    start = time.perf_counter()
    progress = tqdm(range(settings.steps), desc="calo_gan back layer (max. likelihood)", unit="step")
    for step in progress:
        index = torch.from_numpy(rng.integers(0, len(energy), size=settings.batch_size))
        count, placement, shares = model.negative_log_likelihood(energy[index], cells[index])
        loss = count + placement + shares
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
        if step % 200 == 0:
            progress.set_postfix(nll=f"{float(loss.detach()):.3f}")
    model.eval()
    with torch.no_grad():
        sample = torch.from_numpy(rng.integers(0, len(energy), size=min(len(energy), 20_000)))
        final = tuple(float(term) for term in model.negative_log_likelihood(energy[sample], cells[sample]))
    fit = BackLayerFit(
        steps=settings.steps, seconds=time.perf_counter() - start, final_nll=(final[0], final[1], final[2])
    )
    return model, fit
