"""The served ringer graph: every (E_T, |η|) bin's 100 → 5 tanh → 1 tanh net, stacked, bin chosen in-graph."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hepsonic_client.physics.rings import N_RINGS

__all__ = ["BINNINGS", "HIDDEN", "Binning", "RingerEnsemble"]

#: Hidden neurons per bin (the ringer group's choice for the online chain).
HIDDEN = 5


@dataclass(frozen=True, kw_only=True)
class Binning:
    """Phase-space bins: E_T edges (GeV, last = ∞) x |η| edges. Values outside fall into the nearest bin."""

    et_edges: tuple[float, ...]
    eta_edges: tuple[float, ...]

    @property
    def n_et(self) -> int:
        return len(self.et_edges) - 1

    @property
    def n_eta(self) -> int:
        return len(self.eta_edges) - 1

    @property
    def n_bins(self) -> int:
        return self.n_et * self.n_eta

    def et_label(self, index: int) -> str:
        high = self.et_edges[index + 1]
        return f"{self.et_edges[index]:g}-{high:g}" if high != float("inf") else f">{self.et_edges[index]:g}"

    def eta_label(self, index: int) -> str:
        return f"{self.eta_edges[index]:g}-{self.eta_edges[index + 1]:g}"


_ETA_EDGES = (0.0, 0.8, 1.37, 1.54, 2.37, 2.5)
#: Served versions: 1 = Run-2 binning (25 nets), 2 = Run-3 binning (40 nets).
BINNINGS: dict[int, Binning] = {
    1: Binning(et_edges=(15.0, 20.0, 30.0, 40.0, 50.0, float("inf")), eta_edges=_ETA_EDGES),
    2: Binning(et_edges=(4.0, 7.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, float("inf")), eta_edges=_ETA_EDGES),
}


class RingerEnsemble(nn.Module):
    """(rings [B,100] MeV, et [B,1] GeV, eta [B,1]) -> discriminant [B,1] in (-1, 1).

    Rings are normalised in-graph by |Σ rings| ("norm1"); the bin index is computed from et and |eta| and
    used to gather that bin's weights, so one ONNX graph serves every bin. ``models`` > 1 stacks independent
    ensembles (the folds x initialisations of training); the served graph has ``models == 1``.
    """

    et_inner_edges: torch.Tensor
    eta_inner_edges: torch.Tensor

    def __init__(
        self, binning: Binning, *, models: int = 1, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.binning = binning
        n_bins = binning.n_bins
        bound1, bound2 = 1.0 / N_RINGS**0.5, 1.0 / HIDDEN**0.5

        def uniform(*shape: int, bound: float) -> nn.Parameter:
            return nn.Parameter((torch.rand(*shape, generator=generator) * 2 - 1) * bound)

        self.w1 = uniform(models, n_bins, N_RINGS, HIDDEN, bound=bound1)
        self.b1 = uniform(models, n_bins, HIDDEN, bound=bound1)
        self.w2 = uniform(models, n_bins, HIDDEN, bound=bound2)
        self.b2 = uniform(models, n_bins, bound=bound2)
        self.register_buffer("et_inner_edges", torch.tensor(binning.et_edges[1:-1], dtype=torch.float32))
        self.register_buffer("eta_inner_edges", torch.tensor(binning.eta_edges[1:-1], dtype=torch.float32))

    @staticmethod
    def normalise(rings: torch.Tensor) -> torch.Tensor:
        """norm1: rings / |Σ rings| (guarded against empty or noise-only candidates)."""
        return rings / torch.clamp(torch.abs(rings.sum(dim=1, keepdim=True)), min=1.0)

    def bin_index(self, et: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        """Flat bin index (E_T-major) of each candidate; et and eta of shape [B, 1]."""
        et_bin = (et >= self.et_inner_edges).to(torch.int64).sum(dim=1)
        eta_bin = (torch.abs(eta) >= self.eta_inner_edges).to(torch.int64).sum(dim=1)
        return et_bin * self.binning.n_eta + eta_bin

    def forward(self, rings: torch.Tensor, et: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        index = self.bin_index(et, eta)
        x = self.normalise(rings)
        w1 = self.w1[0][index]  # [B, 100, 5]
        hidden = torch.tanh(torch.bmm(x.unsqueeze(1), w1).squeeze(1) + self.b1[0][index])
        return torch.tanh(
            (hidden * self.w2[0][index]).sum(dim=1, keepdim=True) + self.b2[0][index].unsqueeze(1)
        )

    def forward_binned(self, x: torch.Tensor) -> torch.Tensor:
        """Training path: normalised rings grouped by bin [n_bins, n, 100] -> outputs [models, n_bins, n]."""
        hidden = torch.tanh(torch.einsum("bnd,mbdh->mbnh", x, self.w1) + self.b1.unsqueeze(2))
        return torch.tanh(torch.einsum("mbnh,mbh->mbn", hidden, self.w2) + self.b2.unsqueeze(2))

    def select(self, choice: torch.Tensor) -> RingerEnsemble:
        """A single-model ensemble taking, for every bin b, the weights of stacked model ``choice[b]``."""
        single = RingerEnsemble(self.binning)
        bins = torch.arange(self.binning.n_bins)
        with torch.no_grad():
            single.w1.copy_(self.w1[choice, bins].unsqueeze(0))
            single.b1.copy_(self.b1[choice, bins].unsqueeze(0))
            single.w2.copy_(self.w2[choice, bins].unsqueeze(0))
            single.b2.copy_(self.b2[choice, bins].unsqueeze(0))
        return single
