"""The ringer's data: single electrons (particle gun) and jets (Pythia 8 ``HardQCD:all``, p̂_T > 15 GeV) in the
toy ATLAS-like calorimeter, with noise and pile-up μ ~ U[15, 60].

Jet candidates are what a Level-1 electromagnetic trigger would hand to the ringer: the hottest 0.1 x 0.1
electromagnetic tower of the event (E_T ≥ 3 GeV) and the next one at ΔR > 0.4, with everything the jet
deposits around them. Work is split into chunks seeded by (seed, chunk), so the sample is the same for any
number of worker processes.
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
from ._atlas import KIND_EM, KIND_HADRON, KIND_MUON, CalorimeterParticles, rings_and_observables

__all__ = ["RINGER_SAMPLE_KEYS", "RingerSampleSettings", "write_ringer_sample"]

FloatArray = npt.NDArray[np.float64]

#: Datasets of the sample file (one row per candidate).
RINGER_SAMPLE_KEYS = ("rings", "et", "eta", "label", "r_eta", "e_ratio", "r_had", "mu")

_ETA_MAX = 2.47
_ET_MIN_GEV = 4.0
#: The solenoid bends a charged track by ≈ 0.3·B·R/(2 p_T) = 0.45/p_T[GeV] rad by the calorimeter (2 T, 1.5 m).
_BEND = 0.45
_CHARGED_PT_MIN = 0.6
_TOWER = 0.1
_WINDOW_ETA, _WINDOW_PHI = 0.95, 0.6


@dataclass(frozen=True, kw_only=True)
class RingerSampleSettings:
    """How many candidates to make, and how the work is cut."""

    n_electrons: int
    #: Jet events per p̂_T slice: {p̂_T,min [GeV]: events}. Harder slices populate the high-E_T bins, as ATLAS's
    #: JF17/JF35/JF50 filtered samples do; every slice is ``HardQCD:all`` with p̂_T > 15 GeV.
    jet_events: tuple[tuple[float, int], ...]
    electrons_per_chunk: int = 4000
    events_per_chunk: int = 300


def _wrap(phi: FloatArray) -> FloatArray:
    return np.asarray((phi + np.pi) % (2 * np.pi) - np.pi)


def _electron_chunk(n: int, seed: int) -> dict[str, FloatArray]:
    rng = np.random.default_rng(seed)
    et = np.exp(rng.uniform(np.log(_ET_MIN_GEV), np.log(100.0), n))
    eta = rng.uniform(-_ETA_MAX, _ETA_MAX, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mu = rng.uniform(15.0, 60.0, n)
    particles = CalorimeterParticles(
        candidate=np.arange(n), eta=eta, phi=phi, energy_gev=et * np.cosh(eta), kind=np.full(n, KIND_EM)
    )
    observables = rings_and_observables(eta, phi, particles, mu, rng)
    return {**observables, "eta": eta, "label": np.ones(n), "mu": mu}


def _pythia(seed: int, pt_hat_min: float) -> object:
    import pythia8mc  # noqa: PLC0415 -- heavy, only in the generation workers

    pythia = pythia8mc.Pythia("", False)
    for line in (
        "Beams:eCM = 13000.",
        "HardQCD:all = on",
        f"PhaseSpace:pTHatMin = {pt_hat_min}",
        "Random:setSeed = on",
        f"Random:seed = {seed % 900_000_000 + 1}",
        "Next:numberCount = 0",
        "Print:quiet = on",
    ):
        pythia.readString(line)
    pythia.init()
    return pythia


def _event_particles(pythia: object) -> FloatArray | None:
    if not pythia.next():  # type: ignore[attr-defined]
        return None
    rows = [
        (p.id(), p.eta(), p.phi(), p.pT(), p.e(), p.charge())
        for p in pythia.event  # type: ignore[attr-defined]
        if p.isFinal() and p.idAbs() not in (12, 14, 16) and abs(p.eta()) < 3.2
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def _jet_candidates(particles: FloatArray) -> list[tuple[float, float]]:
    """Level-1-like EM seeds: hottest 0.1 x 0.1 tower of e/gamma E_T, and the next at ΔR > 0.4 (E_T ≥ 3 GeV)."""
    pid, eta, phi, pt = particles[:, 0], particles[:, 1], particles[:, 2], particles[:, 3]
    em = (np.abs(pid) == 11) | (pid == 22)
    em &= np.abs(eta) < _ETA_MAX
    if not em.any():
        return []
    i_eta = np.floor(eta[em] / _TOWER).astype(np.int64)
    i_phi = np.floor(phi[em] / _TOWER).astype(np.int64)
    keys, inverse = np.unique(np.stack([i_eta, i_phi], axis=1), axis=0, return_inverse=True)
    tower_et = np.bincount(inverse.ravel(), weights=pt[em])
    seeds: list[tuple[float, float]] = []
    for tower in np.argsort(tower_et)[::-1]:
        if tower_et[tower] < 3.0 or len(seeds) == 2:
            break
        members = np.flatnonzero(inverse.ravel() == tower)
        lead = members[np.argmax(pt[em][members])]
        seed = (float(eta[em][lead]), float(phi[em][lead]))
        if all(np.hypot(seed[0] - s[0], _wrap(np.array(seed[1] - s[1]))) > 0.4 for s in seeds):
            seeds.append(seed)
    del keys
    return seeds


def _jet_chunk(n_events: int, seed: int, pt_hat_min: float) -> dict[str, FloatArray]:
    rng = np.random.default_rng(seed)
    pythia = _pythia(seed, pt_hat_min)
    centres: list[tuple[float, float]] = []
    pieces: list[FloatArray] = []
    owners: list[npt.NDArray[np.int64]] = []
    for _ in range(n_events):
        particles = _event_particles(pythia)
        if particles is None or len(particles) == 0:
            continue
        charged = particles[:, 5] != 0
        reaches = ~charged | (particles[:, 3] > _CHARGED_PT_MIN)
        particles = particles[reaches]
        bent = particles.copy()
        bent[:, 2] = _wrap(particles[:, 2] - particles[:, 5] * _BEND / particles[:, 3])
        for eta0, phi0 in _jet_candidates(particles):
            near = (np.abs(bent[:, 1] - eta0) < _WINDOW_ETA) & (
                np.abs(_wrap(bent[:, 2] - phi0)) < _WINDOW_PHI
            )
            owners.append(np.full(int(near.sum()), len(centres)))
            pieces.append(bent[near])
            centres.append((eta0, phi0))
    if not centres:
        return {key: np.zeros((0, 100) if key == "rings" else 0) for key in RINGER_SAMPLE_KEYS}
    table = np.concatenate(pieces)
    pid = np.abs(table[:, 0])
    kind = np.where((pid == 11) | (pid == 22), KIND_EM, np.where(pid == 13, KIND_MUON, KIND_HADRON))
    calo_particles = CalorimeterParticles(
        candidate=np.concatenate(owners),
        eta=table[:, 1],
        phi=table[:, 2],
        energy_gev=table[:, 4],
        kind=kind.astype(np.int64),
    )
    centre_eta = np.array([c[0] for c in centres])
    centre_phi = np.array([c[1] for c in centres])
    mu = rng.uniform(15.0, 60.0, len(centres))
    observables = rings_and_observables(centre_eta, centre_phi, calo_particles, mu, rng)
    return {**observables, "eta": centre_eta, "label": np.zeros(len(centres)), "mu": mu}


def _run_task(task: tuple[str, int, int, float]) -> dict[str, FloatArray]:
    kind, n, seed, pt_hat_min = task
    chunk = _electron_chunk(n, seed) if kind == "electron" else _jet_chunk(n, seed, pt_hat_min)
    keep = (chunk["et"] >= _ET_MIN_GEV) & (np.abs(chunk["eta"]) < _ETA_MAX)
    return {key: chunk[key][keep] for key in RINGER_SAMPLE_KEYS}


def write_ringer_sample(path: Path, settings: RingerSampleSettings, seed: int, *, jobs: int = 1) -> Path:
    """Simulate electrons and jet candidates into an HDF5 file (``RINGER_SAMPLE_KEYS``; label 1 = electron).

    Candidates with cluster E_T < 4 GeV or |η| ≥ 2.47 are dropped.
    """
    tasks: list[tuple[str, int, int, float]] = []
    for index, start in enumerate(range(0, settings.n_electrons, settings.electrons_per_chunk)):
        n = min(settings.electrons_per_chunk, settings.n_electrons - start)
        tasks.append(("electron", n, seed * 10_007 + index, 0.0))
    for slice_index, (pt_hat_min, n_events) in enumerate(settings.jet_events):
        for index, start in enumerate(range(0, n_events, settings.events_per_chunk)):
            n = min(settings.events_per_chunk, n_events - start)
            tasks.append(("jet", n, seed * 10_007 + 1000 * (slice_index + 1) + index, pt_hat_min))
    # Slow (Pythia) tasks first, so the pool's last tasks are short.
    tasks.sort(key=lambda task: task[0] == "electron")
    start_time = time.perf_counter()
    chunks: list[dict[str, FloatArray]] = []
    total = settings.n_electrons + sum(n for _, n in settings.jet_events)
    with tqdm(total=total, desc="ringer sample (electrons + jet events)", unit="ev") as progress:
        for task, chunk in zip(tasks, map_ordered(_run_task, tasks, jobs=jobs), strict=True):
            chunks.append(chunk)
            progress.update(task[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as out:
        for key in RINGER_SAMPLE_KEYS:
            values = np.concatenate([chunk[key] for chunk in chunks])
            out.create_dataset(key, data=values.astype(np.int8 if key == "label" else np.float32))
        out.attrs["seed"] = seed
        out.attrs["generation_seconds"] = time.perf_counter() - start_time
        out.attrs["n_electrons"] = settings.n_electrons
        out.attrs["jet_events"] = str(dict(settings.jet_events))
        out.attrs["units"] = "rings: MeV (E_T); et: GeV (calibrated EM cluster E_T)"
    tmp.replace(path)
    return path
