"""The served network: a small 1D U-Net over the 4000-bin KDE (never pv-finder's 4000x4000 dense layers)."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

__all__ = ["PVUNet"]


def _conv_block(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(inplace=True),
    )


class PVUNet(nn.Module):
    """1D U-Net: 4 levels (channels 16/32/64/64), kernel 7, BatchNorm + ReLU, skip connections, nearest-neighbour upsampling (198k parameters).

    Input ``kde`` [batch, 2, L] (L divisible by 8; the served L is 4000), output ``pv_prob`` [batch, L]
    (sigmoid). The KDE spans orders of magnitude (one track to tens of tracks per 100 um), so the graph
    first compresses it with log1p; the input stays the raw KDE that the client library builds.
    """

    def __init__(self, channels: tuple[int, int, int, int] = (16, 32, 64, 64), kernel_size: int = 7) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        k = kernel_size
        self.down1 = nn.Sequential(_conv_block(2, c1, k), _conv_block(c1, c1, k))
        self.down2 = nn.Sequential(_conv_block(c1, c2, k), _conv_block(c2, c2, k))
        self.down3 = nn.Sequential(_conv_block(c2, c3, k), _conv_block(c3, c3, k))
        self.bottom = nn.Sequential(_conv_block(c3, c4, k), _conv_block(c4, c4, k))
        self.pool = nn.MaxPool1d(2)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.merge3 = _conv_block(c4 + c3, c3, k)
        self.merge2 = _conv_block(c3 + c2, c2, k)
        self.merge1 = _conv_block(c2 + c1, c1, k)
        self.head = nn.Conv1d(c1, 1, 1)
        # Start from "no vertex anywhere" (p ~ 0.02), as almost every bin is empty: training then spends its
        # steps on the vertices instead of first learning the background level.
        nn.init.constant_(cast(torch.Tensor, self.head.bias), -4.0)

    def logits(self, kde: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output [batch, L] (training uses it for a numerically stable loss)."""
        x = torch.log1p(torch.clamp(kde, min=0.0))
        skip1 = self.down1(x)
        skip2 = self.down2(self.pool(skip1))
        skip3 = self.down3(self.pool(skip2))
        x = self.bottom(self.pool(skip3))
        x = self.merge3(torch.cat([self.up(x), skip3], dim=1))
        x = self.merge2(torch.cat([self.up(x), skip2], dim=1))
        x = self.merge1(torch.cat([self.up(x), skip1], dim=1))
        logits: torch.Tensor = self.head(x).squeeze(1)
        return logits

    def forward(self, kde: torch.Tensor) -> torch.Tensor:
        """``pv_prob`` [batch, L]: per-bin probability that a primary vertex lies there (target shape)."""
        return torch.sigmoid(self.logits(kde))
