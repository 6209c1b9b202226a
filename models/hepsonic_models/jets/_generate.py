"""Top-quark and QCD jets from Pythia 8 + FastJet, written to HDF5.

Processes (13 TeV pp): hadronic ttbar (``Top:gg2ttbar``, ``Top:qqbar2ttbar``, W -> q q') and ``HardQCD:all``
dijets, both with pT-hat > :attr:`GeneratorSettings.pt_hat_min`. Visible final-state particles with
|η| < 2.5 pass a Delphes-like detector (:mod:`._detector`: tracks plus smeared calorimeter towers), whose
energy-flow objects are clustered with anti-kT R = 0.8; jets with pT in [500, 700] GeV and |η| < 2 are kept.
A jet from a ttbar event is a top jet when the top and its three decay quarks lie within ΔR < 0.8 of the jet
axis (unmatched ttbar jets are dropped); every jet from a QCD event is a QCD jet.

Work is split into fixed chunks, each with its own Pythia seed derived from the master seed, so the data set is
the same for a given seed whatever the number of worker processes. Finished chunks are kept next to the output
file, so an interrupted generation resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from .._parallel import map_ordered
from ._detector import DetectorSettings, ParticleKind, reconstruct

__all__ = ["GeneratorSettings", "JetSample", "generate_jets", "load_jets"]

#: Constituents stored per jet (sorted by pT); the taggers use the leading 64.
_STORED_PARTICLES = 64
_LABEL_TOP = 1
_LABEL_QCD = 0


@dataclass(frozen=True, kw_only=True)
class GeneratorSettings:
    """Everything that defines the generated data set (written into the file and the model card)."""

    n_jets_per_class: int
    seed: int
    jets_per_chunk: int = 2000
    sqrt_s_gev: float = 13000.0
    pt_hat_min: float = 450.0
    #: Multi-parton interactions off: ~5x faster generation (see MODELS.md budget); no pile-up either.
    mpi: bool = False
    particle_eta_max: float = 2.5
    jet_radius: float = 0.8
    jet_pt_min: float = 500.0
    jet_pt_max: float = 700.0
    jet_eta_max: float = 2.0
    match_radius: float = 0.8
    #: None clusters Pythia's particles themselves (no detector).
    detector: DetectorSettings | None = field(default_factory=DetectorSettings)

    def pythia_lines(self, process: str) -> list[str]:
        """The Pythia configuration of one process ("top" or "qcd")."""
        common = [
            f"Beams:eCM = {self.sqrt_s_gev}",
            f"PhaseSpace:pTHatMin = {self.pt_hat_min}",
            f"PartonLevel:MPI = {'on' if self.mpi else 'off'}",
            "Next:numberCount = 0",
            "Print:quiet = on",
        ]
        if process == "top":
            return [
                *common,
                "Top:gg2ttbar = on",
                "Top:qqbar2ttbar = on",
                "24:onMode = off",
                "24:onIfAny = 1 2 3 4 5",
            ]
        return [*common, "HardQCD:all = on"]


@dataclass(frozen=True)
class JetSample:
    """A generated jet sample, in memory."""

    #: (n, 64, 4) px, py, pz, E [GeV] of the leading constituents, sorted by pT, zero-padded.
    constituents: npt.NDArray[np.float32]
    #: (n, 4) px, py, pz, E of the jet (all constituents).
    jet_p4: npt.NDArray[np.float32]
    jet_pt: npt.NDArray[np.float32]
    jet_eta: npt.NDArray[np.float32]
    jet_mass: npt.NDArray[np.float32]
    n_constituents: npt.NDArray[np.int32]
    #: (n, 3) N-subjettiness τ1, τ2, τ3 (β = 1, R0 = 0.8, one-pass kT axes) over all constituents.
    tau: npt.NDArray[np.float32]
    #: 1 = top, 0 = QCD.
    label: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.label.size)

    def take(self, index: npt.NDArray[np.int64]) -> JetSample:
        """The jets at ``index``."""
        return JetSample(**{name: value[index] for name, value in self.__dict__.items()})


def _dphi(a: npt.NDArray[np.float64] | float, b: npt.NDArray[np.float64] | float) -> Any:
    return (np.asarray(a) - b + np.pi) % (2 * np.pi) - np.pi


def _top_partons(event: Any) -> list[list[tuple[float, float]]]:
    """(η, φ) of each top and its b, q, q' (the hard-process decay products)."""
    systems = []
    for index in (5, 6):
        first = event[index]
        if first.idAbs() != 6:
            continue
        top = event[first.iBotCopyId()]
        directions = [(top.eta(), top.phi())]
        for daughter_index in top.daughterList():
            daughter = event[daughter_index]
            if daughter.idAbs() == 24:
                w_boson = event[daughter.iBotCopyId()]
                directions += [(event[q].eta(), event[q].phi()) for q in w_boson.daughterList()]
            elif daughter.idAbs() == 5:
                directions.append((daughter.eta(), daughter.phi()))
        if len(directions) == 4:
            systems.append(directions)
    return systems


def _particle_kind(particle: Any) -> int:
    pid = abs(particle.id())
    if pid == 22:
        return ParticleKind.PHOTON
    if pid == 11:
        return ParticleKind.ELECTRON
    if pid == 13:
        return ParticleKind.MUON
    return ParticleKind.CHARGED_HADRON if particle.isCharged() else ParticleKind.NEUTRAL_HADRON


def _generate_chunk(task: tuple[GeneratorSettings, str, int, int]) -> dict[str, npt.NDArray[Any]]:
    """Generate ``n_jets`` jets of one process with one Pythia seed (runs in a worker process)."""
    import awkward as ak  # noqa: PLC0415 -- heavy imports stay in the workers
    import fastjet  # noqa: PLC0415
    import pythia8mc  # noqa: PLC0415

    settings, process, seed, n_jets = task
    pythia = pythia8mc.Pythia("", False)
    for line in [*settings.pythia_lines(process), "Random:setSeed = on", f"Random:seed = {seed}"]:
        if not pythia.readString(line):
            raise RuntimeError(f"jet generator: Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"jet generator: Pythia failed to initialise for process {process!r}")
    event = pythia.event
    detector_rng = np.random.default_rng(seed)
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, settings.jet_radius)
    kept: list[dict[str, npt.NDArray[Any]]] = []
    n_kept = 0
    while n_kept < n_jets:
        particles: list[npt.NDArray[np.float64]] = []
        tops: list[list[list[tuple[float, float]]]] = []
        for _ in range(50):
            if not pythia.next():
                continue
            visible = [
                (p.px(), p.py(), p.pz(), p.e(), _particle_kind(p))
                for p in event
                if p.isFinal() and p.isVisible() and abs(p.eta()) < settings.particle_eta_max
            ]
            table = np.asarray(visible, dtype=np.float64).reshape(-1, 5)
            if settings.detector is None:
                particles.append(table[:, :4])
            else:
                kinds = table[:, 4].astype(np.int8)
                particles.append(reconstruct(table[:, :4], kinds, settings.detector, detector_rng))
            tops.append(_top_partons(event) if process == "top" else [])
        flat = np.concatenate(particles)
        counts = [len(p) for p in particles]
        events = ak.unflatten(
            ak.zip({"px": flat[:, 0], "py": flat[:, 1], "pz": flat[:, 2], "E": flat[:, 3]}), counts
        )
        sequence = fastjet.ClusterSequence(events, jet_def)
        jets = sequence.inclusive_jets(settings.jet_pt_min)
        constituents = sequence.constituents(settings.jet_pt_min)
        for event_index in range(len(particles)):
            for jet, members in zip(jets[event_index], constituents[event_index], strict=True):
                px, py, pz, energy = float(jet.px), float(jet.py), float(jet.pz), float(jet.E)
                pt = math.hypot(px, py)
                eta = math.asinh(pz / pt)
                if not (settings.jet_pt_min <= pt < settings.jet_pt_max and abs(eta) < settings.jet_eta_max):
                    continue
                phi = math.atan2(py, px)
                if process == "top":
                    matched = any(
                        all(
                            math.hypot(eta - p_eta, float(_dphi(phi, p_phi))) < settings.match_radius
                            for p_eta, p_phi in system
                        )
                        for system in tops[event_index]
                    )
                    if not matched:
                        continue
                member_p4 = np.stack(
                    [ak.to_numpy(members[c]) for c in ("px", "py", "pz", "E")], axis=1
                ).astype(np.float64)
                if len(member_p4) < 3:
                    continue
                kept.append({"jet_p4": np.array([px, py, pz, energy]), "members": member_p4})
                n_kept += 1
    kept = kept[:n_jets]

    # N-subjettiness over all constituents, each jet treated as one "event".
    member_counts = [len(k["members"]) for k in kept]
    all_members = np.concatenate([k["members"] for k in kept])
    per_jet = ak.unflatten(
        ak.zip(
            {
                "px": all_members[:, 0],
                "py": all_members[:, 1],
                "pz": all_members[:, 2],
                "E": all_members[:, 3],
            }
        ),
        member_counts,
    )
    kt_sequence = fastjet.ClusterSequence(
        per_jet, fastjet.JetDefinition(fastjet.kt_algorithm, settings.jet_radius)
    )
    tau = np.asarray(
        kt_sequence.njettiness(njets=[1, 2, 3], R0=settings.jet_radius), dtype=np.float64
    ).reshape(len(kept), 3)

    stored = np.zeros((len(kept), _STORED_PARTICLES, 4), dtype=np.float32)
    for i, k in enumerate(kept):
        members = k["members"]
        order = np.argsort(-np.hypot(members[:, 0], members[:, 1]), kind="stable")[:_STORED_PARTICLES]
        stored[i, : order.size] = members[order]
    jet_p4 = np.stack([k["jet_p4"] for k in kept])
    jet_pt = np.hypot(jet_p4[:, 0], jet_p4[:, 1])
    mass2 = jet_p4[:, 3] ** 2 - (jet_p4[:, :3] ** 2).sum(axis=1)
    return {
        "constituents": stored,
        "jet_p4": jet_p4.astype(np.float32),
        "jet_pt": jet_pt.astype(np.float32),
        "jet_eta": np.arcsinh(jet_p4[:, 2] / jet_pt).astype(np.float32),
        "jet_mass": np.sqrt(np.maximum(mass2, 0.0)).astype(np.float32),
        "n_constituents": np.asarray(member_counts, dtype=np.int32),
        "tau": tau.astype(np.float32),
        "label": np.full(len(kept), _LABEL_TOP if process == "top" else _LABEL_QCD, dtype=np.int8),
    }


def _tasks(settings: GeneratorSettings) -> list[tuple[GeneratorSettings, str, int, int]]:
    tasks = []
    for process_index, process in enumerate(("top", "qcd")):
        remaining = settings.n_jets_per_class
        chunk = 0
        while remaining > 0:
            size = min(settings.jets_per_chunk, remaining)
            # Distinct Pythia seeds per (process, chunk); Pythia accepts seeds up to 900 000 000.
            seed = (settings.seed * 7919 + process_index * 100_003 + chunk * 17) % 900_000_000 + 1
            tasks.append((settings, process, seed, size))
            remaining -= size
            chunk += 1
    return tasks


def _chunk_cache(settings: GeneratorSettings, path: Path) -> Path:
    """Folder of finished chunks: a restarted or enlarged generation reuses them (same seed, same settings)."""
    physics = {key: value for key, value in asdict(settings).items() if key != "n_jets_per_class"}
    digest = hashlib.sha256(repr(physics).encode()).hexdigest()[:12]
    return path.parent / f"chunks-{digest}"


def generate_jets(settings: GeneratorSettings, path: Path, *, jobs: int = 1) -> Path:
    """Generate the sample of ``settings`` into ``path`` (HDF5) unless an identical one is cached there."""
    if path.is_file():
        with h5py.File(path, "r") as stored:
            if stored.attrs.get("settings") == repr(asdict(settings)):
                return path
    cache = _chunk_cache(settings, path)
    cache.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(settings)
    files = [cache / f"{process}-seed{seed}-n{size}.npz" for _, process, seed, size in tasks]
    missing = [task for task, file in zip(tasks, files, strict=True) if not file.is_file()]
    done = sum(task[3] for task, file in zip(tasks, files, strict=True) if file.is_file())
    progress = tqdm(
        total=2 * settings.n_jets_per_class, initial=done, desc="jets: Pythia + FastJet", unit="jet"
    )

    def store(task: tuple[GeneratorSettings, str, int, int], result: dict[str, npt.NDArray[Any]]) -> None:
        target = cache / f"{task[1]}-seed{task[2]}-n{task[3]}.npz"
        with target.with_suffix(".tmp").open("wb") as stream:
            np.savez(stream, **result)
        target.with_suffix(".tmp").replace(target)
        progress.update(task[3])

    for task, result in zip(missing, map_ordered(_generate_chunk, missing, jobs=jobs), strict=True):
        store(task, result)
    progress.close()
    chunks = []
    for file in files:
        with np.load(file) as stored:
            chunks.append({name: stored[name] for name in stored.files})
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as out:
        out.attrs["settings"] = repr(asdict(settings))
        for name in chunks[0]:
            out.create_dataset(name, data=np.concatenate([c[name] for c in chunks]), compression="gzip")
    tmp.replace(path)
    return path


def load_jets(path: Path) -> JetSample:
    """Read a sample written by :func:`generate_jets`."""
    with h5py.File(path, "r") as stored:
        return JetSample(**{name: stored[name][...] for name in JetSample.__dataclass_fields__})
