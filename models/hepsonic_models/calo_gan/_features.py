"""Shower-shape observables of CaloGAN-geometry showers (the quantities the validation compares)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from ..calorimeter import CALOGAN_LAYERS

__all__ = ["FEATURE_NAMES", "SPARSITY_THRESHOLD_GEV", "shower_features"]

#: A cell counts as hit above this deposit (GeV): 1 MeV.
SPARSITY_THRESHOLD_GEV = 0.001

_WIDTH_MM = 480.0


def _feature_names() -> list[str]:
    names = [f"E_{i} [GeV]" for i in range(3)] + [f"f_{i}" for i in range(3)]
    names += ["E_tot/E", "depth"]
    for i in range(3):
        names += [f"width_eta_{i} [mm]", f"width_phi_{i} [mm]", f"occupancy_{i}", f"max_cell_frac_{i}"]
    return names


#: Names of the columns returned by :func:`shower_features`, in order.
FEATURE_NAMES: list[str] = _feature_names()


def _widths(layer: npt.NDArray[np.float64], axis: int, cell_mm: float) -> npt.NDArray[np.float64]:
    profile = layer.sum(axis=3 - axis)
    positions = (np.arange(profile.shape[1]) + 0.5) * cell_mm
    total = np.maximum(profile.sum(axis=1), 1e-12)
    mean = (profile * positions).sum(axis=1) / total
    second = (profile * positions**2).sum(axis=1) / total
    return np.asarray(np.sqrt(np.maximum(second - mean**2, 0.0)))


def shower_features(
    layers: Mapping[str, npt.ArrayLike], energy_gev: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """``(n_showers, len(FEATURE_NAMES))`` observables: layer energies and fractions, E_tot/E, depth, widths,
    occupancy and the hottest cell's share per layer. Everything in GeV."""
    energy = np.asarray(energy_gev, dtype=np.float64).reshape(-1)
    grids = [np.asarray(layers[spec.key], dtype=np.float64) for spec in CALOGAN_LAYERS]
    layer_energy = np.stack([grid.sum(axis=(1, 2)) for grid in grids], axis=1)
    total = np.maximum(layer_energy.sum(axis=1), 1e-12)
    columns = [layer_energy[:, i] for i in range(3)]
    columns += [layer_energy[:, i] / total for i in range(3)]
    columns += [total / energy, (layer_energy[:, 1] + 2 * layer_energy[:, 2]) / total]
    for spec, grid in zip(CALOGAN_LAYERS, grids, strict=True):
        layer_total = np.maximum(grid.sum(axis=(1, 2)), 1e-12)
        columns += [
            _widths(grid, 1, _WIDTH_MM / spec.rows),
            _widths(grid, 2, _WIDTH_MM / spec.columns),
            (grid > SPARSITY_THRESHOLD_GEV).mean(axis=(1, 2)),
            grid.max(axis=(1, 2)) / layer_total,
        ]
    return np.stack(columns, axis=1)
