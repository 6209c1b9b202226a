"""GFlash-style shower parametrisation shared by both calorimeters (Grindhammer & Peters, hep-ex/0001020).

Longitudinal: a Gamma profile in radiation lengths with per-shower fluctuated, correlated (T, alpha).
Lateral: the core + tail radial profile in Molière radii, whose parameters depend on the relative depth τ = t/T.
The shower is cut into thin depth slices; each slice's energy gets sampling fluctuations and is deposited as
"spots" (equal shares) drawn from the radial profile at that slice's τ, so cell occupancy and lateral shapes
fluctuate like a real shower's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import gammainc

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

__all__ = [
    "EmMedium",
    "EmProfiles",
    "Spots",
    "radial_profile_parameters",
    "sample_em_profiles",
    "sample_radii",
    "slice_fractions",
    "spots_from_slices",
]


@dataclass(frozen=True, kw_only=True)
class EmMedium:
    """An (effective) sampling medium for electromagnetic showers."""

    #: Effective atomic number (enters the lateral and alpha parametrisations).
    z_eff: float
    #: Critical energy in GeV.
    critical_energy_gev: float
    #: Stochastic term of the sampling resolution, sigma/E = a/sqrt(E[GeV]).
    sampling_term: float


@dataclass(frozen=True)
class EmProfiles:
    """Per-shower longitudinal Gamma profiles: dE/dt ∝ t^(alpha-1) exp(-βt), t in radiation lengths."""

    alpha: FloatArray
    beta: FloatArray

    @property
    def t_max(self) -> FloatArray:
        """Depth of the shower maximum (radiation lengths)."""
        return np.asarray((self.alpha - 1.0) / self.beta)


@dataclass(frozen=True)
class Spots:
    """Energy spots: which shower and slice they belong to, their radius (Molière radii), azimuth, energy."""

    shower: IntArray
    slice: IntArray
    radius: FloatArray
    angle: FloatArray
    energy: FloatArray


def sample_em_profiles(energy_gev: FloatArray, medium: EmMedium, rng: np.random.Generator) -> EmProfiles:
    """Draw one longitudinal profile per shower with GFlash's correlated fluctuations of ln T and ln alpha."""
    energy = np.asarray(energy_gev, dtype=np.float64)
    log_y = np.log(np.maximum(energy / medium.critical_energy_gev, 3.0))
    mean_ln_t = np.log(np.maximum(log_y - 0.812, 0.3))
    mean_ln_alpha = np.log(0.81 + (0.458 + 2.26 / medium.z_eff) * log_y)
    sigma_ln_t = 1.0 / np.maximum(-1.4 + 1.26 * log_y, 0.8)
    sigma_ln_alpha = 1.0 / np.maximum(-0.58 + 0.86 * log_y, 0.8)
    rho = np.clip(0.705 - 0.023 * log_y, 0.0, 0.95)
    g1 = rng.standard_normal(energy.shape)
    g2 = rng.standard_normal(energy.shape)
    t_max = np.exp(mean_ln_t + sigma_ln_t * g1)
    alpha = np.maximum(np.exp(mean_ln_alpha + sigma_ln_alpha * (rho * g1 + np.sqrt(1 - rho**2) * g2)), 1.05)
    return EmProfiles(alpha=alpha, beta=(alpha - 1.0) / t_max)


def slice_fractions(profiles: EmProfiles, boundaries_x0: npt.ArrayLike) -> FloatArray:
    """Fraction of each shower's energy between consecutive depth boundaries: ``(batch, n_boundaries - 1)``.

    ``boundaries_x0`` is ``(n_boundaries,)`` or ``(batch, n_boundaries)`` (depth-dependent material).
    """
    bounds = np.asarray(boundaries_x0, dtype=np.float64)
    bounds = np.broadcast_to(bounds, (profiles.alpha.size, bounds.shape[-1]))
    cumulative = gammainc(profiles.alpha[:, None], profiles.beta[:, None] * bounds)
    return np.asarray(np.diff(cumulative, axis=1))


def radial_profile_parameters(
    energy_gev: FloatArray, tau: FloatArray, z_eff: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """GFlash lateral parameters at relative depth τ = t/T, elementwise: (R_core, R_tail [R_M], p_core)."""
    log_e = np.log(np.maximum(np.asarray(energy_gev, dtype=np.float64), 0.1))
    tau = np.clip(np.asarray(tau, dtype=np.float64), 0.0, 4.0)
    r_core = 0.0251 + 0.00319 * log_e + (0.1162 - 0.000381 * z_eff) * tau
    k4 = 0.3585 + 0.0421 * log_e
    r_tail = (0.659 - 0.00309 * z_eff) * (np.exp(-2.59 * (tau - 0.645)) + np.exp(k4 * (tau - 0.645)))
    p2, p3 = 0.401 + 0.00187 * z_eff, 1.313 - 0.0686 * log_e
    p_core = np.clip((2.632 - 0.00094 * z_eff) * np.exp((p2 - tau) / p3 - np.exp((p2 - tau) / p3)), 0.0, 1.0)
    return r_core, r_tail, p_core


def sample_radii(
    r_core: FloatArray, r_tail: FloatArray, p_core: FloatArray, rng: np.random.Generator
) -> FloatArray:
    """One radius per element from f(r) = p·2rRc²/(r²+Rc²)² + (1-p)·2rRt²/(r²+Rt²)² (inverse CDF)."""
    u = rng.uniform(0.0, 0.995, size=np.shape(r_core))
    radius = np.where(rng.uniform(size=np.shape(r_core)) < p_core, r_core, r_tail)
    return np.asarray(radius * np.sqrt(u / (1.0 - u)))


def spots_from_slices(
    slice_energy_gev: FloatArray,
    slice_tau: FloatArray,
    shower_energy_gev: FloatArray,
    *,
    medium: EmMedium,
    spot_energy_gev: float,
    max_spots_per_slice: int,
    rng: np.random.Generator,
) -> Spots:
    """Sampling fluctuations per slice, then spots drawn from the lateral profile at each slice's τ.

    ``slice_energy_gev`` and ``slice_tau`` are ``(batch, n_slices)``. A slice's visible energy is Gamma
    distributed with mean E and variance a²·E (a = the medium's sampling term), i.e. sigma/E = a/sqrt(E) overall.
    """
    batch, n_slices = slice_energy_gev.shape
    mean = np.maximum(slice_energy_gev, 0.0).ravel()
    variance_scale = medium.sampling_term**2
    visible = np.zeros_like(mean)
    positive = mean > 1e-9
    visible[positive] = rng.gamma(mean[positive] / variance_scale, variance_scale)
    counts = np.clip(np.ceil(visible / spot_energy_gev), 0, max_spots_per_slice).astype(np.int64)
    flat = np.repeat(np.arange(batch * n_slices), counts)
    shower = flat // n_slices
    tau = slice_tau.ravel()[flat]
    r_core, r_tail, p_core = radial_profile_parameters(
        np.asarray(shower_energy_gev)[shower], tau, medium.z_eff
    )
    return Spots(
        shower=shower,
        slice=flat % n_slices,
        radius=sample_radii(r_core, r_tail, p_core, rng),
        angle=rng.uniform(0.0, 2 * np.pi, size=flat.size),
        energy=visible[flat] / counts[flat],
    )
