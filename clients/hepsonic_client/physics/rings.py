"""Ringer inputs from calorimeter cells: the 100 concentric rings of the ATLAS NeuralRinger.

Ring ``i`` of a layer holds the transverse energy of the cells whose distance to the layer's hottest cell is
``round(max(|Δη|/δη, |Δφ|/δφ)) == i`` (δη, δφ: the layer's ring widths), each cell's energy times
``1/cosh(η_cell)``. Layers in order: PS 8, EM1 64, EM2 8, EM3 8, HAD1 4, HAD2 4, HAD3 4 rings (100 in all).
Cells beyond the last ring are not counted. Energies in MeV, as the served ``ringer`` model expects.

Two entry points, one definition:

* :func:`rings_from_cells` for an arbitrary list of cells around one candidate (what a reconstruction job has);
* :func:`rings_from_grids` for a batch of candidates whose cells lie on a regular per-layer grid centred on the
  candidate (what the hepsonic toy calorimeter produces). Both use :data:`RING_LAYERS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "N_RINGS",
    "RING_LAYERS",
    "RingLayer",
    "rings_from_cells",
    "rings_from_grids",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class RingLayer:
    """One calorimeter layer as the ringer sees it."""

    name: str
    n_rings: int
    #: Ring width in η and φ (equal to the cell size of the toy calorimeter's grid for that layer).
    deta: float
    dphi: float
    #: Search window (half-widths in η, φ) for the hottest cell, around the candidate's position.
    seed_window: tuple[float, float] = (0.05, 0.05)


RING_LAYERS: tuple[RingLayer, ...] = (
    RingLayer(name="PS", n_rings=8, deta=0.025, dphi=0.1),
    RingLayer(name="EM1", n_rings=64, deta=0.003125, dphi=0.1),
    RingLayer(name="EM2", n_rings=8, deta=0.025, dphi=0.025),
    RingLayer(name="EM3", n_rings=8, deta=0.05, dphi=0.025),
    RingLayer(name="HAD1", n_rings=4, deta=0.1, dphi=0.1),
    RingLayer(name="HAD2", n_rings=4, deta=0.1, dphi=0.1),
    RingLayer(name="HAD3", n_rings=4, deta=0.2, dphi=0.1),
)

#: Number of rings over all layers (the served input ``rings`` has this length).
N_RINGS = sum(layer.n_rings for layer in RING_LAYERS)


def _wrap_phi(dphi: FloatArray) -> FloatArray:
    return np.asarray((dphi + np.pi) % (2 * np.pi) - np.pi)


def rings_from_cells(
    energy: npt.ArrayLike,
    eta: npt.ArrayLike,
    phi: npt.ArrayLike,
    layer: npt.ArrayLike,
    *,
    eta0: float,
    phi0: float,
) -> npt.NDArray[np.float32]:
    """The 100 rings (MeV, E_T) of one candidate at (``eta0``, ``phi0``) from its cells.

    ``energy`` (MeV), ``eta``, ``phi`` and ``layer`` (index into :data:`RING_LAYERS`) describe one cell each.
    Layers without a cell above zero inside the seed window give zero rings.
    """
    cell_energy = np.asarray(energy, dtype=np.float64)
    cell_eta = np.asarray(eta, dtype=np.float64)
    cell_phi = np.asarray(phi, dtype=np.float64)
    cell_layer = np.asarray(layer)
    shapes = {cell_energy.shape, cell_eta.shape, cell_phi.shape, cell_layer.shape}
    if len(shapes) != 1 or cell_energy.ndim != 1:
        raise ValueError(
            f"rings_from_cells: energy, eta, phi and layer must be 1-d arrays of one length, got shapes "
            f"{cell_energy.shape}, {cell_eta.shape}, {cell_phi.shape}, {cell_layer.shape}"
        )
    if cell_layer.size and (cell_layer.min() < 0 or cell_layer.max() >= len(RING_LAYERS)):
        raise ValueError(
            f"rings_from_cells: layer indices must be in [0, {len(RING_LAYERS)}), got {cell_layer}"
        )
    rings = np.zeros(N_RINGS, dtype=np.float64)
    offset = 0
    for index, spec in enumerate(RING_LAYERS):
        in_layer = cell_layer == index
        e, h, p = cell_energy[in_layer], cell_eta[in_layer], cell_phi[in_layer]
        in_window = (np.abs(h - eta0) <= spec.seed_window[0] + 1e-9) & (
            np.abs(_wrap_phi(p - phi0)) <= spec.seed_window[1] + 1e-9
        )
        if in_window.any():
            hottest = np.flatnonzero(in_window)[np.argmax(e[in_window])]
            distance = np.maximum(
                np.abs(h - h[hottest]) / spec.deta, np.abs(_wrap_phi(p - p[hottest])) / spec.dphi
            )
            ring = np.rint(distance).astype(np.int64)
            keep = ring < spec.n_rings
            np.add.at(rings, offset + ring[keep], e[keep] / np.cosh(h[keep]))
        offset += spec.n_rings
    return rings.astype(np.float32)


def _chebyshev_ring_index(n_eta: int, n_phi: int, seed_eta: int, seed_phi: int) -> npt.NDArray[np.int64]:
    ieta = np.abs(np.arange(n_eta) - seed_eta)[:, None]
    iphi = np.abs(np.arange(n_phi) - seed_phi)[None, :]
    ring: npt.NDArray[np.int64] = np.maximum(ieta, iphi).astype(np.int64)
    return ring


def rings_from_grids(grids: Sequence[npt.ArrayLike], eta: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Rings of a batch of candidates from per-layer cell grids centred on each candidate.

    ``grids[k]`` has shape ``(batch, n_eta, n_phi)`` with odd ``n_eta``, ``n_phi``: the energies (MeV) of layer
    ``k``'s cells, cell size = that layer's ring widths, the candidate in the central cell; ``eta`` is the η of
    the central cells, ``(batch,)`` (one for every layer) or ``(batch, 7)`` (per layer). Returns ``(batch, 100)`` float32. Gives the same rings as :func:`rings_from_cells` on those cells.
    """
    if len(grids) != len(RING_LAYERS):
        raise ValueError(f"rings_from_grids: need {len(RING_LAYERS)} layer grids, got {len(grids)}")
    centre_eta = np.asarray(eta, dtype=np.float64)
    if centre_eta.ndim == 1:
        centre_eta = np.repeat(centre_eta[:, None], len(RING_LAYERS), axis=1)
    if centre_eta.ndim != 2 or centre_eta.shape[1] != len(RING_LAYERS):
        raise ValueError(
            f"rings_from_grids: eta must be (batch,) or (batch, {len(RING_LAYERS)}), got {centre_eta.shape}"
        )
    parts = []
    for layer_index, (spec, raw) in enumerate(zip(RING_LAYERS, grids, strict=True)):
        candidate_eta = centre_eta[:, layer_index]
        grid = np.asarray(raw, dtype=np.float64)
        if (
            grid.ndim != 3
            or grid.shape[0] != candidate_eta.size
            or grid.shape[1] % 2 == 0
            or grid.shape[2] % 2 == 0
        ):
            raise ValueError(
                f"rings_from_grids: layer {spec.name} grid must be (batch={candidate_eta.size}, odd, odd), "
                f"got {grid.shape}"
            )
        batch, n_eta, n_phi = grid.shape
        ce, cp = n_eta // 2, n_phi // 2
        # Hottest cell inside the seed window around the centre (as rings_from_cells does).
        we = min(ce, round(spec.seed_window[0] / spec.deta))
        wp = min(cp, round(spec.seed_window[1] / spec.dphi))
        window = grid[:, ce - we : ce + we + 1, cp - wp : cp + wp + 1].reshape(batch, -1)
        flat = np.argmax(window, axis=1)
        seed_eta = ce - we + flat // (2 * wp + 1)
        seed_phi = cp - wp + flat % (2 * wp + 1)
        cell_eta = candidate_eta[:, None] + (np.arange(n_eta) - ce)[None, :] * spec.deta
        transverse = grid / np.cosh(cell_eta)[:, :, None]
        layer_rings = np.zeros((batch, spec.n_rings), dtype=np.float64)
        # Few distinct seed positions: group candidates by seed and use one ring-index map per group.
        seed_key = seed_eta * n_phi + seed_phi
        for key in np.unique(seed_key):
            members = np.flatnonzero(seed_key == key)
            ring = _chebyshev_ring_index(n_eta, n_phi, int(key) // n_phi, int(key) % n_phi).reshape(-1)
            keep = ring < spec.n_rings
            one_hot = np.zeros((keep.sum(), spec.n_rings))
            one_hot[np.arange(keep.sum()), ring[keep]] = 1.0
            layer_rings[members] = transverse[members].reshape(len(members), -1)[:, keep] @ one_hot
        parts.append(layer_rings)
    rings = np.concatenate(parts, axis=1)
    return rings.astype(np.float32)
