"""The CaloGAN calorimeter (Paganini, de Oliveira, Nachman 2018) with GFlash-style showers.

Geometry exactly CaloGAN's: a 480 x 480 mm block of 80 x (2 mm Pb + 4 mm LAr), read out in three layers
90 / 347 / 43 mm deep with 3x96, 12x12 and 12x6 cells. Particles (positrons) enter at the centre at normal
incidence. Cell values are deposited energy calibrated to the full (absorber + active) energy. Everything is in
GeV (CaloGAN's own files keep the cells in MeV), so the served model's outputs stay O(1-100) and float32
round-off stays below 1e-5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from .._parallel import map_ordered
from ._gflash import EmMedium, sample_em_profiles, slice_fractions, spots_from_slices

__all__ = [
    "CALOGAN_LAYERS",
    "CALOGAN_MEDIUM",
    "CaloGanLayer",
    "simulate_calogan_showers",
    "write_calogan_file",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class CaloGanLayer:
    """One readout layer: its HDF5 key, cell grid (rows = η-like, columns = φ-like) and depth range in mm."""

    key: str
    rows: int
    columns: int
    depth_mm: tuple[float, float]


CALOGAN_LAYERS: tuple[CaloGanLayer, ...] = (
    CaloGanLayer(key="layer_0", rows=3, columns=96, depth_mm=(0.0, 90.0)),
    CaloGanLayer(key="layer_1", rows=12, columns=12, depth_mm=(90.0, 437.0)),
    CaloGanLayer(key="layer_2", rows=12, columns=6, depth_mm=(437.0, 480.0)),
)

#: Transverse size of the block (mm).
_WIDTH_MM = 480.0
#: One period of 2 mm Pb (X0 5.612 mm) + 4 mm LAr (X0 140 mm) is 0.385 X0: X0_eff = 15.58 mm.
_X0_MM = 6.0 / (2.0 / 5.612 + 4.0 / 140.0)
#: Effective Molière radius of the Pb/LAr mixture (mm).
_MOLIERE_MM = 24.0
CALOGAN_MEDIUM = EmMedium(z_eff=68.0, critical_energy_gev=0.0095, sampling_term=0.11)
#: Depth slices (mm) for the longitudinal profile: 2 periods (12 mm) each, 40 slices over 480 mm.
_SLICE_EDGES_MM = np.linspace(0.0, 480.0, 41)
_SPOT_ENERGY_GEV = 0.05
_MAX_SPOTS_PER_SLICE = 60


def _slice_layer() -> npt.NDArray[np.int64]:
    centres = 0.5 * (_SLICE_EDGES_MM[1:] + _SLICE_EDGES_MM[:-1])
    layer = np.zeros(centres.size, dtype=np.int64)
    for index, spec in enumerate(CALOGAN_LAYERS):
        layer[(centres >= spec.depth_mm[0]) & (centres < spec.depth_mm[1])] = index
    return layer


def simulate_calogan_showers(energy_gev: npt.ArrayLike, seed: int) -> dict[str, npt.NDArray[np.float32]]:
    """Showers of positrons with the given incident energies (GeV): ``{"layer_0", "layer_1", "layer_2", "energy"}``.

    Deterministic for ``seed``. Energies beyond the block's depth leak out (a few % at 100 GeV), as in CaloGAN.
    """
    energy = np.asarray(energy_gev, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    profiles = sample_em_profiles(energy, CALOGAN_MEDIUM, rng)
    bounds_x0 = _SLICE_EDGES_MM / _X0_MM
    fractions = slice_fractions(profiles, bounds_x0)
    tau = 0.5 * (bounds_x0[1:] + bounds_x0[:-1])[None, :] / profiles.t_max[:, None]
    spots = spots_from_slices(
        energy[:, None] * fractions,
        tau,
        energy,
        medium=CALOGAN_MEDIUM,
        spot_energy_gev=_SPOT_ENERGY_GEV,
        max_spots_per_slice=_MAX_SPOTS_PER_SLICE,
        rng=rng,
    )
    radius_mm = spots.radius * _MOLIERE_MM
    x = radius_mm * np.cos(spots.angle)
    y = radius_mm * np.sin(spots.angle)
    spot_layer = _slice_layer()[spots.slice]
    result: dict[str, npt.NDArray[np.float32]] = {}
    for index, spec in enumerate(CALOGAN_LAYERS):
        row = np.floor((y + _WIDTH_MM / 2) / (_WIDTH_MM / spec.rows)).astype(np.int64)
        column = np.floor((x + _WIDTH_MM / 2) / (_WIDTH_MM / spec.columns)).astype(np.int64)
        keep = (
            (spot_layer == index) & (row >= 0) & (row < spec.rows) & (column >= 0) & (column < spec.columns)
        )
        cell = (spots.shower[keep] * spec.rows + row[keep]) * spec.columns + column[keep]
        deposits = np.bincount(
            cell, weights=spots.energy[keep], minlength=energy.size * spec.rows * spec.columns
        )
        result[spec.key] = deposits.reshape(energy.size, spec.rows, spec.columns).astype(np.float32)
    result["energy"] = energy.astype(np.float32).reshape(-1, 1)
    return result


def _simulate_chunk(task: tuple[npt.NDArray[np.float64], int]) -> dict[str, npt.NDArray[np.float32]]:
    energies, seed = task
    return simulate_calogan_showers(energies, seed)


def write_calogan_file(
    path: Path,
    n_showers: int,
    seed: int,
    *,
    energy_range_gev: tuple[float, float] = (1.0, 100.0),
    fixed_energy_gev: float | None = None,
    jobs: int = 1,
    chunk_size: int = 5000,
    desc: str = "CaloGAN showers",
) -> Path:
    """Simulate ``n_showers`` (energy uniform in the range, or fixed) into CaloGAN's HDF5 layout at ``path``.

    Chunks are seeded by (seed, chunk index), so the file is identical whatever ``jobs`` is.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    if fixed_energy_gev is None:
        energies = rng.uniform(*energy_range_gev, size=n_showers)
    else:
        energies = np.full(n_showers, float(fixed_energy_gev))
    starts = range(0, n_showers, chunk_size)
    tasks = [(energies[s : s + chunk_size], seed * 100_003 + 1 + i) for i, s in enumerate(starts)]
    path.parent.mkdir(parents=True, exist_ok=True)
    start_time = time.perf_counter()
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as out:
        datasets = {
            spec.key: out.create_dataset(spec.key, (n_showers, spec.rows, spec.columns), dtype="f4")
            for spec in CALOGAN_LAYERS
        }
        datasets["energy"] = out.create_dataset("energy", (n_showers, 1), dtype="f4")
        out.attrs["seed"] = seed
        out.attrs["units"] = "GeV (energy: incident; layer_*: deposited, calibrated)"
        out.attrs["generator"] = "hepsonic_models.calorimeter GFlash-style CaloGAN geometry"

        def _store(index: int, chunk: dict[str, npt.NDArray[np.float32]]) -> None:
            start = index * chunk_size
            for key, values in chunk.items():
                datasets[key][start : start + len(values)] = values

        with tqdm(total=n_showers, desc=desc, unit="shower") as progress:
            for index, chunk in enumerate(map_ordered(_simulate_chunk, tasks, jobs=jobs)):
                _store(index, chunk)
                progress.update(len(chunk["energy"]))
        out.attrs["generation_seconds"] = time.perf_counter() - start_time
    tmp.replace(path)
    return path
