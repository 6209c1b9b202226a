"""Inputs of the jet taggers (``particlenet_lite``, ``part_small``) from jet constituents, with numpy only.

The generator/trainer in ``hepsonic_models.jets`` and reconstruction jobs call the same function,
:func:`build_tagger_inputs`, so the served and the offline inputs cannot drift apart.

Per jet, the constituents are sorted by decreasing pT, the first :data:`MAX_PARTICLES` kept, and zero-padded:

* ``pf_points``   [2, P]: Δη, Δφ to the jet axis (the kNN / attention coordinates);
* ``pf_features`` [7, P]: Δη, Δφ, log pT, log E, log pT/pT_jet, log E/E_jet, ΔR, the last five standardised
  as ``(x - a) * b`` (:data:`FEATURE_STANDARDISATION`) and clipped to ±5;
* ``pf_vectors``  [4, P]: px, py, pz, E in GeV (``part_small`` only);
* ``pf_mask``     [1, P]: 1 for a real constituent, 0 for padding.

Padded slots are exactly zero in every tensor.

A top tagger learns the jet mass, so a fixed cut on P(top) sculpts the QCD mass spectrum into a top-like
peak. :class:`MassDecorrelatedCut` is the working point to use where that matters (a background estimate from
the mass sidebands): its threshold varies with the jet mass (:func:`jet_mass`) so that the same fraction of
QCD jets passes at every mass, as ATLAS's DDT and CMS's varying-threshold taggers do. Each tagger version
publishes its cuts (fitted on validation jets) as the model parameter :data:`MASS_DECORRELATED_PARAMETER`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_STANDARDISATION",
    "MASS_DECORRELATED_PARAMETER",
    "MASS_GRID_GEV",
    "MAX_PARTICLES",
    "MassDecorrelatedCut",
    "build_tagger_inputs",
    "jet_mass",
    "mass_decorrelated_cuts_from_json",
    "mass_decorrelated_cuts_to_json",
    "pad_constituents",
    "sum_constituents",
]

#: Constituents per jet seen by the taggers (weaver/CMS convention).
MAX_PARTICLES = 64

#: Row order of ``pf_features``.
FEATURE_NAMES: tuple[str, ...] = (
    "deta",
    "dphi",
    "log_pt",
    "log_e",
    "log_pt_rel",
    "log_e_rel",
    "delta_r",
)

#: ``(a, b)`` of the standardisation ``(x - a) * b`` per feature; Δη and Δφ are left as they are.
FEATURE_STANDARDISATION: dict[str, tuple[float, float]] = {
    "log_pt": (1.7, 0.7),
    "log_e": (2.0, 0.7),
    "log_pt_rel": (-4.7, 0.7),
    "log_e_rel": (-4.7, 0.7),
    "delta_r": (0.2, 4.0),
}

_CLIP = 5.0

FloatArray = npt.NDArray[np.float32]


def pad_constituents(
    flat_p4: npt.ArrayLike, counts: npt.ArrayLike, max_particles: int | None = None
) -> FloatArray:
    """Turn ragged constituents into a zero-padded ``(n_jets, n_max, 4)`` float32 array.

    ``flat_p4`` is ``(sum(counts), 4)`` (px, py, pz, E in GeV) with jet ``i`` owning the next ``counts[i]``
    rows. ``n_max`` is ``max(counts)`` unless ``max_particles`` is given (then longer jets keep their first
    ``max_particles`` rows: sort first if that matters, or pass everything to :func:`build_tagger_inputs`).
    """
    p4 = np.asarray(flat_p4, dtype=np.float64)
    n_per_jet = np.asarray(counts, dtype=np.int64)
    if p4.ndim != 2 or p4.shape[1] != 4:
        raise ValueError(f"jet constituents: expected flat (n, 4) px, py, pz, E, got shape {p4.shape}")
    if n_per_jet.ndim != 1 or (n_per_jet < 0).any() or int(n_per_jet.sum()) != p4.shape[0]:
        raise ValueError(
            f"jet constituents: counts must be non-negative and sum to {p4.shape[0]} rows, "
            f"got {int(n_per_jet.sum())}"
        )
    width = int(n_per_jet.max(initial=0)) if max_particles is None else max_particles
    out = np.zeros((n_per_jet.size, width, 4), dtype=np.float32)
    starts = np.concatenate(([0], np.cumsum(n_per_jet)[:-1]))
    slot = np.arange(p4.shape[0]) - np.repeat(starts, n_per_jet)
    jet = np.repeat(np.arange(n_per_jet.size), n_per_jet)
    keep = slot < width
    out[jet[keep], slot[keep]] = p4[keep]
    return out


def _pt_eta_phi(
    px: npt.NDArray[np.float64], py: npt.NDArray[np.float64], pz: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    return pt, eta, np.arctan2(py, px)


def build_tagger_inputs(
    constituents: npt.ArrayLike,
    *,
    jet_p4: npt.ArrayLike | None = None,
    max_particles: int = MAX_PARTICLES,
) -> dict[str, FloatArray]:
    """The tagger input tensors of a batch of jets.

    ``constituents`` is ``(n_jets, n, 4)``: px, py, pz, E in GeV, any order, rows with E <= 0 are padding
    (use :func:`pad_constituents` for ragged input). ``jet_p4`` ``(n_jets, 4)`` is the jet four-momentum
    (the axis and the pT/E reference); by default the sum of all given constituents.

    Returns ``pf_points``, ``pf_features``, ``pf_vectors``, ``pf_mask`` (float32, batch first, particles
    last). ``particlenet_lite`` takes all but ``pf_vectors``.
    """
    p4 = np.asarray(constituents, dtype=np.float64)
    if p4.ndim != 3 or p4.shape[2] != 4:
        raise ValueError(
            f"jet taggers: input 'constituents' must be (n_jets, n_particles, 4) px, py, pz, E; "
            f"got shape {p4.shape}"
        )
    if not np.isfinite(p4).all():
        raise ValueError("jet taggers: input 'constituents' contains NaN or infinite values")
    n_jets = p4.shape[0]
    real = p4[..., 3] > 0
    p4 = np.where(real[..., None], p4, 0.0)

    if jet_p4 is None:
        jet = sum_constituents(p4)
    else:
        jet = np.asarray(jet_p4, dtype=np.float64)
        if jet.shape != (n_jets, 4):
            raise ValueError(f"jet taggers: input 'jet_p4' must be ({n_jets}, 4), got shape {jet.shape}")

    # Sort by decreasing pT (padding last), keep the leading max_particles.
    pt_all = np.where(real, np.hypot(p4[..., 0], p4[..., 1]), -1.0)
    order = np.argsort(-pt_all, axis=1, kind="stable")[:, :max_particles]
    p4 = np.take_along_axis(p4, order[..., None], axis=1)
    real = np.take_along_axis(real, order, axis=1)
    if p4.shape[1] < max_particles:
        pad = max_particles - p4.shape[1]
        p4 = np.pad(p4, ((0, 0), (0, pad), (0, 0)))
        real = np.pad(real, ((0, 0), (0, pad)))

    px, py, pz, energy = (p4[..., i] for i in range(4))
    pt, eta, phi = _pt_eta_phi(px, py, pz)
    jet_pt, jet_eta, jet_phi = _pt_eta_phi(jet[:, 0], jet[:, 1], jet[:, 2])
    jet_energy = jet[:, 3]
    if ((jet_pt <= 0) | (jet_energy <= 0)).any():
        raise ValueError("jet taggers: a jet has no constituent with E > 0 (or a jet_p4 with pT or E <= 0)")

    deta = eta - jet_eta[:, None]
    dphi = (phi - jet_phi[:, None] + np.pi) % (2 * np.pi) - np.pi
    tiny = np.finfo(np.float64).tiny
    raw = {
        "deta": deta,
        "dphi": dphi,
        "log_pt": np.log(np.maximum(pt, tiny)),
        "log_e": np.log(np.maximum(energy, tiny)),
        "log_pt_rel": np.log(np.maximum(pt, tiny) / jet_pt[:, None]),
        "log_e_rel": np.log(np.maximum(energy, tiny) / jet_energy[:, None]),
        "delta_r": np.hypot(deta, dphi),
    }
    for name, (shift, scale) in FEATURE_STANDARDISATION.items():
        raw[name] = np.clip((raw[name] - shift) * scale, -_CLIP, _CLIP)

    mask = real.astype(np.float32)
    features = np.stack([raw[name] for name in FEATURE_NAMES], axis=1) * mask[:, None, :]
    points = np.stack([deta, dphi], axis=1) * mask[:, None, :]
    vectors = np.transpose(p4, (0, 2, 1)) * mask[:, None, :]
    return {
        "pf_points": points.astype(np.float32),
        "pf_features": features.astype(np.float32),
        "pf_vectors": vectors.astype(np.float32),
        "pf_mask": mask[:, None, :],
    }


#: Model parameter under which a tagger version publishes its :class:`MassDecorrelatedCut` list
#: (:func:`mass_decorrelated_cuts_to_json`).
MASS_DECORRELATED_PARAMETER = "mass_decorrelated_cuts"

#: Jet masses (GeV) at which a :class:`MassDecorrelatedCut` stores its threshold; beyond the ends it is constant.
MASS_GRID_GEV: tuple[float, ...] = tuple(float(m) for m in np.arange(0.0, 301.0, 5.0))

# P(top) comes as float32, so it can be exactly 0 or 1: the logit is taken of a clipped copy.
_LOGIT_CLIP = 1e-9


def sum_constituents(constituents: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Jet four-momenta ``(n_jets, 4)`` from constituents ``(n_jets, n, 4)`` px, py, pz, E (GeV): the sum of the
    rows with E > 0 (the others are padding). The taggers' default jet axis."""
    p4 = np.asarray(constituents, dtype=np.float64)
    if p4.ndim != 3 or p4.shape[2] != 4:
        raise ValueError(
            f"jet constituents: expected (n_jets, n_particles, 4) px, py, pz, E; got shape {p4.shape}"
        )
    summed: npt.NDArray[np.float64] = np.where(p4[..., 3:] > 0, p4, 0.0).sum(axis=1)
    return summed


def jet_mass(jet_p4: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Invariant mass (GeV) of jets ``(n_jets, 4)`` px, py, pz, E (GeV); 0 where E^2 < p^2 by rounding."""
    p4 = np.asarray(jet_p4, dtype=np.float64)
    if p4.ndim != 2 or p4.shape[1] != 4:
        raise ValueError(f"jet mass: expected jet_p4 of shape (n_jets, 4) px, py, pz, E; got {p4.shape}")
    mass2 = p4[:, 3] ** 2 - (p4[:, :3] ** 2).sum(axis=1)
    mass: npt.NDArray[np.float64] = np.sqrt(np.maximum(mass2, 0.0))
    return mass


def _logit(p_top: npt.ArrayLike) -> npt.NDArray[np.float64]:
    p = np.clip(np.asarray(p_top, dtype=np.float64), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    logit: npt.NDArray[np.float64] = np.log(p) - np.log1p(-p)
    return logit


@dataclass(frozen=True, kw_only=True)
class MassDecorrelatedCut:
    """A cut on P(top) whose threshold follows the jet mass so that QCD jets pass at the same rate everywhere.

    The threshold at each mass of :attr:`mass_gev` is the ``1 - qcd_efficiency`` quantile of the tagger's
    logit over the QCD jets nearest in mass (:meth:`fit`); in between it is interpolated linearly. The QCD
    jets that pass therefore keep the mass spectrum of all QCD jets, while top jets still pass far more often.
    """

    #: Fraction of QCD jets meant to pass, at every mass.
    qcd_efficiency: float
    #: Jet masses (GeV, increasing) at which the threshold is stored.
    mass_gev: tuple[float, ...]
    #: Threshold on logit(P(top)) = log(P(top) / P(QCD)) at each of :attr:`mass_gev`.
    logit_threshold: tuple[float, ...]

    def __post_init__(self) -> None:
        if not 0.0 < self.qcd_efficiency < 1.0:
            raise ValueError(
                f"mass-decorrelated cut: qcd_efficiency must be in (0, 1), got {self.qcd_efficiency}"
            )
        if len(self.mass_gev) == 0 or len(self.mass_gev) != len(self.logit_threshold):
            raise ValueError(
                f"mass-decorrelated cut: mass_gev and logit_threshold need the same non-zero length, "
                f"got {len(self.mass_gev)} and {len(self.logit_threshold)}"
            )
        if np.any(np.diff(self.mass_gev) <= 0):
            raise ValueError("mass-decorrelated cut: mass_gev must increase")

    @classmethod
    def fit(
        cls,
        p_top: npt.ArrayLike,
        mass: npt.ArrayLike,
        qcd_efficiency: float,
        *,
        neighbours: int | None = None,
        mass_gev: Sequence[float] = MASS_GRID_GEV,
    ) -> MassDecorrelatedCut:
        """Fit on QCD jets only (not the test jets): their P(top) and jet mass (GeV).

        At each grid mass the threshold comes from the ``neighbours`` jets nearest in mass (default 5% of the
        jets: a window narrow enough to follow the mass, wide enough that the quantile rests on several jets).
        """
        logit = _logit(p_top).reshape(-1)
        masses = np.asarray(mass, dtype=np.float64).reshape(-1)
        if logit.size != masses.size or logit.size == 0:
            raise ValueError(
                f"mass-decorrelated cut: need as many P(top) as masses (and some), got {logit.size} and {masses.size}"
            )
        k = neighbours if neighbours is not None else max(1, round(0.05 * masses.size))
        k = min(max(1, k), masses.size)
        thresholds = []
        for centre in mass_gev:
            nearest = np.argpartition(np.abs(masses - centre), k - 1)[:k]
            thresholds.append(float(np.quantile(logit[nearest], 1.0 - qcd_efficiency)))
        return cls(
            qcd_efficiency=float(qcd_efficiency),
            mass_gev=tuple(float(m) for m in mass_gev),
            logit_threshold=tuple(thresholds),
        )

    def threshold(self, mass: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The cut on P(top) at each jet mass (GeV)."""
        logit = np.interp(np.asarray(mass, dtype=np.float64), self.mass_gev, self.logit_threshold)
        threshold: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-logit))
        return threshold

    def passes(self, p_top: npt.ArrayLike, mass: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each jet (its P(top) and its mass in GeV) passes."""
        logit = _logit(p_top)
        masses = np.asarray(mass, dtype=np.float64)
        if logit.shape != masses.shape:
            raise ValueError(
                f"mass-decorrelated cut: P(top) and jet mass must have the same shape, got {logit.shape} "
                f"and {masses.shape}"
            )
        passed: npt.NDArray[np.bool_] = logit >= np.interp(masses, self.mass_gev, self.logit_threshold)
        return passed


def mass_decorrelated_cuts_to_json(cuts: Sequence[MassDecorrelatedCut]) -> str:
    """The cuts as JSON (what a tagger version publishes as :data:`MASS_DECORRELATED_PARAMETER`)."""
    return json.dumps(
        [
            {
                "qcd_efficiency": cut.qcd_efficiency,
                "mass_gev": list(cut.mass_gev),
                "logit_threshold": [round(t, 5) for t in cut.logit_threshold],
            }
            for cut in cuts
        ],
        separators=(",", ":"),
    )


def mass_decorrelated_cuts_from_json(text: str) -> tuple[MassDecorrelatedCut, ...]:
    """Cuts from :func:`mass_decorrelated_cuts_to_json`'s text; ``ValueError`` says what is wrong."""
    try:
        stored = json.loads(text)
        return tuple(
            MassDecorrelatedCut(
                qcd_efficiency=float(item["qcd_efficiency"]),
                mass_gev=tuple(float(m) for m in item["mass_gev"]),
                logit_threshold=tuple(float(t) for t in item["logit_threshold"]),
            )
            for item in stored
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        msg = (
            "jet tagger mass-decorrelated cuts: expected a JSON list of objects with 'qcd_efficiency', "
            f"'mass_gev' and 'logit_threshold', got {text[:200]!r}"
        )
        raise ValueError(msg) from exc
