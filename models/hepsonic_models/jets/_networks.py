"""The two jet-tagger networks, written for a clean ONNX export.

* :class:`ParticleNetLite`: ParticleNet (Qu & Gouskos, arXiv:1902.08570) in its "Lite" configuration,
  k = 7, EdgeConv (32, 32, 32) -> (64, 64, 64), mean pooling over the mask, FC 128 with dropout 0.1.
* :class:`ParticleTransformerSmall`: Particle Transformer (Qu, Li, Qian, arXiv:2202.03772) at d = 64, 4 heads,
  3 particle-attention + 1 class-attention blocks, pairwise features (ln kT, ln z, ln ΔR, ln m²) embedded
  4 -> 32 -> 32 -> 4 as a per-head attention bias.

Both take the spec's inputs positionally and return ``softmax`` = (P(top), P(QCD)).
ONNX safety: padded particles are pushed far away (1e9) so they are never kNN neighbours; attention is
written out by hand (no fused ``nn.MultiheadAttention`` fast path) with a finite mask value; the pairwise ΔR
is taken from ``pf_points`` so the graph needs no atan2 (which gives NaN at (0, 0) in ONNX).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ParticleNetLite", "ParticleTransformerSmall", "count_parameters"]

_FAR_AWAY = 1e9
_MASKED_LOGIT = -1e9


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _knn(points: Tensor, k: int) -> Tensor:
    """Indices (B, P, k) of the k nearest other points of each point; ``points`` is (B, C, P)."""
    inner = -2 * torch.matmul(points.transpose(1, 2), points)
    square = (points**2).sum(dim=1, keepdim=True)
    distance = square.transpose(1, 2) + inner + square
    return (-distance).topk(k=k + 1, dim=-1)[1][:, :, 1:]


def _gather_neighbours(features: Tensor, index: Tensor) -> Tensor:
    """Features (B, C, P, k) of the neighbours ``index`` (B, P, k) of each point."""
    batch, channels, n_points = features.shape
    k = index.shape[-1]
    offset = torch.arange(batch, device=features.device).view(-1, 1, 1) * n_points
    flat_index = (index + offset).reshape(-1)
    flat = features.transpose(1, 2).reshape(batch * n_points, channels)
    return flat[flat_index].view(batch, n_points, k, channels).permute(0, 3, 1, 2)


class _EdgeConv(nn.Module):
    def __init__(self, k: int, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        channels = 2 * in_channels
        for width in widths:
            layers += [nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.edge_mlp = nn.Sequential(*layers)
        self.shortcut: nn.Module = (
            nn.Sequential(nn.Conv1d(in_channels, widths[-1], 1, bias=False), nn.BatchNorm1d(widths[-1]))
            if in_channels != widths[-1]
            else nn.Identity()
        )
        self.activation = nn.ReLU()

    def forward(self, points: Tensor, features: Tensor) -> Tensor:
        neighbours = _gather_neighbours(features, _knn(points, self.k))
        centre = features.unsqueeze(-1).expand_as(neighbours)
        edges = self.edge_mlp(torch.cat([centre, neighbours - centre], dim=1))
        output: Tensor = self.activation(self.shortcut(features) + edges.mean(dim=-1))
        return output


class ParticleNetLite(nn.Module):
    """ParticleNet-Lite: 26,416 parameters with 7 input features and 2 classes."""

    def __init__(self, n_features: int = 7, n_classes: int = 2, k: int = 7) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_features)
        self.edge_convs = nn.ModuleList(
            [_EdgeConv(k, n_features, (32, 32, 32)), _EdgeConv(k, 32, (64, 64, 64))]
        )
        self.head = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, n_classes))

    def logits(self, pf_points: Tensor, pf_features: Tensor, pf_mask: Tensor) -> Tensor:
        """Class logits (B, 2)."""
        shift = (pf_mask == 0).to(pf_points.dtype) * _FAR_AWAY
        features = self.input_norm(pf_features) * pf_mask
        points = pf_points
        for index, conv in enumerate(self.edge_convs):
            coordinates = (points if index == 0 else features) + shift
            features = conv(coordinates, features) * pf_mask
        counts = pf_mask.sum(dim=-1).clamp(min=1.0)
        pooled = features.sum(dim=-1) / counts
        output: Tensor = self.head(pooled)
        return output

    def forward(self, pf_points: Tensor, pf_features: Tensor, pf_mask: Tensor) -> Tensor:
        return torch.softmax(self.logits(pf_points, pf_features, pf_mask), dim=1)


def _pair_features(points: Tensor, vectors: Tensor, eps: float = 1e-8) -> Tensor:
    """(B, 4, P, P) ln kT, ln z, ln ΔR, ln m² of every particle pair.

    ΔR comes from ``points`` (B, 2, P) (Δη, Δφ to the jet axis, already wrapped by the input builder), so no
    atan2 is needed in the graph; pT and the pair mass come from ``vectors`` (B, 4, P).
    """
    pt = torch.sqrt(vectors[:, 0:1] ** 2 + vectors[:, 1:2] ** 2 + eps)
    pt_i, pt_j = pt.unsqueeze(-1), pt.unsqueeze(-2)
    separation = points.unsqueeze(-1) - points.unsqueeze(-2)
    delta_r = torch.sqrt((separation**2).sum(dim=1, keepdim=True) + eps)
    pt_min = torch.minimum(pt_i, pt_j)
    kt = pt_min * delta_r
    z = pt_min / (pt_i + pt_j + eps)
    total = vectors.unsqueeze(-1) + vectors.unsqueeze(-2)
    mass2 = total[:, 3] ** 2 - total[:, 0] ** 2 - total[:, 1] ** 2 - total[:, 2] ** 2
    return torch.cat(
        [
            torch.log(kt.clamp(min=eps)),
            torch.log(z.clamp(min=eps)),
            torch.log(delta_r.clamp(min=eps)),
            torch.log(mass2.unsqueeze(1).clamp(min=eps)),
        ],
        dim=1,
    )


class _Attention(nn.Module):
    """Plain multi-head attention with an additive (B, H, Q, K) bias."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, keys: Tensor, bias: Tensor) -> Tensor:
        batch, n_query, dim = queries.shape
        n_key = keys.shape[1]
        head_dim = dim // self.heads
        q = self.query(queries).view(batch, n_query, self.heads, head_dim).transpose(1, 2)
        k = self.key(keys).view(batch, n_key, self.heads, head_dim).transpose(1, 2)
        v = self.value(keys).view(batch, n_key, self.heads, head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale + bias
        attended = torch.matmul(torch.softmax(scores, dim=-1), v)
        output: Tensor = self.out(attended.transpose(1, 2).reshape(batch, n_query, dim))
        return output


class _Block(nn.Module):
    """ParT block: normed attention with post-attention norm, then a normed GELU feed-forward."""

    def __init__(self, dim: int, heads: int, expansion: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.attention = _Attention(dim, heads)
        self.norm_post = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, expansion * dim),
            nn.GELU(),
            nn.LayerNorm(expansion * dim),
            nn.Dropout(dropout),
            nn.Linear(expansion * dim, dim),
        )

    def forward(self, x: Tensor, context: Tensor, bias: Tensor) -> Tensor:
        normed_context = self.norm_in(context)
        normed_x = normed_context if x is context else self.norm_in(x)
        x = x + self.dropout(self.norm_post(self.attention(normed_x, normed_context, bias)))
        output: Tensor = x + self.dropout(self.ffn(self.norm_ffn(x)))
        return output


class ParticleTransformerSmall(nn.Module):
    """ParT at d = 64: about 220k parameters."""

    def __init__(self, n_features: int = 7, n_classes: int = 2, dim: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.input_norm = nn.BatchNorm1d(n_features)
        self.embed = nn.Sequential(
            nn.LayerNorm(n_features),
            nn.Linear(n_features, dim),
            nn.GELU(),
            nn.LayerNorm(dim),
            nn.Linear(dim, 2 * dim),
            nn.GELU(),
            nn.LayerNorm(2 * dim),
            nn.Linear(2 * dim, dim),
        )
        self.pair_embed = nn.Sequential(
            nn.BatchNorm2d(4),
            nn.Conv2d(4, 32, 1),
            nn.BatchNorm2d(32),
            nn.GELU(),
            nn.Conv2d(32, 32, 1),
            nn.BatchNorm2d(32),
            nn.GELU(),
            nn.Conv2d(32, heads, 1),
        )
        self.particle_blocks = nn.ModuleList([_Block(dim, heads) for _ in range(3)])
        self.class_block = _Block(dim, heads)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.class_token, std=0.02)
        self.norm_out = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def logits(self, pf_points: Tensor, pf_features: Tensor, pf_vectors: Tensor, pf_mask: Tensor) -> Tensor:
        """Class logits (B, 2)."""
        batch = pf_features.shape[0]
        features = self.input_norm(pf_features) * pf_mask
        x = self.embed(features.transpose(1, 2)) * pf_mask.transpose(1, 2)
        pair_mask = pf_mask.unsqueeze(-1) * pf_mask.unsqueeze(-2)
        key_bias = (1.0 - pf_mask.unsqueeze(1)) * _MASKED_LOGIT
        pair_bias = (
            self.pair_embed(_pair_features(pf_points * pf_mask, pf_vectors * pf_mask)) * pair_mask + key_bias
        )
        for block in self.particle_blocks:
            x = block(x, x, pair_bias) * pf_mask.transpose(1, 2)
        token = self.class_token.expand(batch, -1, -1)
        context = torch.cat([token, x], dim=1)
        ones = torch.ones_like(pf_mask[:, :, :1])
        class_bias = (1.0 - torch.cat([ones, pf_mask], dim=-1).unsqueeze(1)) * _MASKED_LOGIT
        token = self.class_block(token, context, class_bias)
        output: Tensor = self.head(self.norm_out(token[:, 0]))
        return output

    def forward(self, pf_points: Tensor, pf_features: Tensor, pf_vectors: Tensor, pf_mask: Tensor) -> Tensor:
        return torch.softmax(self.logits(pf_points, pf_features, pf_vectors, pf_mask), dim=1)
