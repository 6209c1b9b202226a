"""Inputs of the ``calo_gan`` shower generator: reproducible latent vectors and the conditioning energy.

The server never draws random numbers: the caller samples the latent vector, so a fast-simulation job gives
the same showers for the same seed whichever server (or the offline model) answers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "ENERGY_RANGE_GEV",
    "LATENT_DIM",
    "LAYER_SHAPES",
    "calo_gan_inputs",
    "sample_latent",
]

#: Length of the latent vector ``z``.
LATENT_DIM = 64
#: Incident energies the generator was trained for (GeV).
ENERGY_RANGE_GEV = (1.0, 100.0)
#: Cell grids of the CaloGAN geometry's three layers (η-like, φ-like), as served.
LAYER_SHAPES: dict[str, tuple[int, int]] = {"layer_0": (3, 96), "layer_1": (12, 12), "layer_2": (12, 6)}


def sample_latent(n: int, seed: int, *, stream: int = 0) -> npt.NDArray[np.float32]:
    """``n`` latent vectors N(0, 1), shape ``(n, 64)``, identical for the same ``(seed, stream)``.

    ``stream`` separates independent sequences under one seed (e.g. one per job or per event chunk).
    """
    if n < 0:
        raise ValueError(f"sample_latent: n must be >= 0, got {n}")
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))
    return generator.standard_normal((n, LATENT_DIM), dtype=np.float32)


def calo_gan_inputs(
    energy_gev: npt.ArrayLike, seed: int, *, stream: int = 0
) -> dict[str, npt.NDArray[np.float32]]:
    """The ``calo_gan`` request for showers of the given incident energies (GeV): ``{"z", "energy"}``.

    Raises ``ValueError`` naming the offending values when an energy is outside :data:`ENERGY_RANGE_GEV`.
    """
    energy = np.asarray(energy_gev, dtype=np.float32).reshape(-1)
    low, high = ENERGY_RANGE_GEV
    outside = (energy < low) | (energy > high) | ~np.isfinite(energy)
    if outside.any():
        raise ValueError(
            f"calo_gan: input 'energy' must be in [{low:g}, {high:g}] GeV, got {energy[outside][:5].tolist()}"
            f"{' ...' if outside.sum() > 5 else ''} ({int(outside.sum())} of {energy.size} outside)"
        )
    return {"z": sample_latent(energy.size, seed, stream=stream), "energy": energy.reshape(-1, 1)}
