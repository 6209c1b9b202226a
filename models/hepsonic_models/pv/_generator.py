"""Bunch crossings for the PV finder: Pythia 8 minimum bias, beam spot, VELO-like acceptance and resolution.

Two steps, both deterministic for a seed and cached as HDF5 in the work directory:

1. :func:`generate_collisions`: Pythia 8 ``SoftQCD:inelastic`` collisions at the origin, keeping the charged
   final-state particles in the acceptance (2 < eta < 5, p > 0.1 GeV). Chunks of collisions run in parallel
   processes; every chunk has its own Pythia seed, so the result does not depend on the number of processes.
2. :func:`simulate_crossings`: N_PV ~ Poisson(mean) collisions per crossing, each moved to a vertex drawn from
   the beam spot; a few % of tracks lost; each track, a straight line, measured at its closest approach to
   the beam line (:class:`hepsonic_client.physics.vertices.Tracks`), sigma_IP = a + b / pT across the track in
   the transverse plane (d0) and sigma_IP / sin(theta) along the beam (z); then the KDE of
   :func:`hepsonic_client.physics.vertices.build_kde`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from hepsonic_client.physics.vertices import (
    BEAM_XY_SIGMA_MM,
    KDE_DEFINITION,
    N_BINS,
    Z_MAX_MM,
    Z_MIN_MM,
    Tracks,
    VertexFit,
    build_kde,
    measure_tracks,
)

from .._parallel import map_ordered
from ._metrics import FP_BUDGET

__all__ = [
    "CollisionSample",
    "CrossingSample",
    "GeneratorSettings",
    "VertexCeiling",
    "generate_collisions",
    "ideal_vertex_efficiency",
    "reconstruct_tracks",
    "simulate_crossings",
]

_PYTHIA_MAX_SEED = 900_000_000
_COLLISIONS_PER_CHUNK = 2000


@dataclass(frozen=True, kw_only=True)
class GeneratorSettings:
    """Physics settings of the crossings (MODELS.md section 3)."""

    ecm_gev: float = 13600.0
    mean_pvs: float = 7.6
    #: Beam spot in histogram coordinates (mm).
    beam_z_mean_mm: float = 100.0
    beam_z_sigma_mm: float = 63.0
    beam_xy_sigma_mm: float = BEAM_XY_SIGMA_MM
    eta_min: float = 2.0
    eta_max: float = 5.0
    p_min_gev: float = 0.1
    #: sigma_IP = ip_constant_mm + ip_over_pt_mm_gev / pT[GeV].
    ip_constant_mm: float = 0.012
    ip_over_pt_mm_gev: float = 0.023
    track_efficiency: float = 0.97

    def key(self) -> str:
        """Short stable hash of the settings (part of cache file names)."""
        return _short_hash(asdict(self))

    def collision_key(self) -> str:
        """Short stable hash of the settings Pythia's collisions depend on (cached collisions key on it only)."""
        return _short_hash(
            {name: getattr(self, name) for name in ("ecm_gev", "eta_min", "eta_max", "p_min_gev")}
        )


def _short_hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class CollisionSample:
    """Accepted charged particles of many collisions, concatenated (momenta in GeV)."""

    px: npt.NDArray[np.float32]
    py: npt.NDArray[np.float32]
    pz: npt.NDArray[np.float32]
    #: Particles of collision i are [offsets[i], offsets[i+1]).
    offsets: npt.NDArray[np.int64]
    #: Wall time Pythia took when the sample was made (also when it is read back from the cache; NaN if unknown).
    generation_s: float = 0.0

    @property
    def n_collisions(self) -> int:
        return int(self.offsets.size - 1)


@dataclass(frozen=True)
class CrossingSample:
    """Bunch crossings: model inputs and the truth to score them."""

    kde: npt.NDArray[np.float32]  # [N, 2, 4000]
    pv_z: npt.NDArray[np.float64]  # true vertex z (mm, histogram coordinates), all crossings concatenated
    pv_ntracks: npt.NDArray[np.int64]  # reconstructed tracks of each true vertex
    pv_offsets: npt.NDArray[np.int64]  # vertices of crossing i are [pv_offsets[i], pv_offsets[i+1])
    #: Reconstructed tracks (the fields of :class:`Tracks`), all crossings concatenated.
    track_z: npt.NDArray[np.float32]
    track_d0: npt.NDArray[np.float32]
    track_phi: npt.NDArray[np.float32]
    track_cot_theta: npt.NDArray[np.float32]
    track_sigma_ip: npt.NDArray[np.float32]
    #: Tracks of crossing i are [track_offsets[i], track_offsets[i+1]).
    track_offsets: npt.NDArray[np.int64]
    #: Wall time the generation (Pythia included) took when the sample was made (also when read back from the
    #: cache).
    generation_s: float = 0.0

    @property
    def n_crossings(self) -> int:
        return int(self.kde.shape[0])

    def tracks(self, crossing: int) -> Tracks:
        """The reconstructed tracks of one crossing."""
        lo, hi = self.track_offsets[crossing], self.track_offsets[crossing + 1]
        return Tracks(*(getattr(self, f"track_{name}")[lo:hi] for name in Tracks.FIELDS))

    def vertices(self, crossing: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """True vertex z and track counts of one crossing."""
        lo, hi = self.pv_offsets[crossing], self.pv_offsets[crossing + 1]
        return self.pv_z[lo:hi], self.pv_ntracks[lo:hi]


def _pythia(settings: GeneratorSettings, seed: int, mpi_init_file: Path) -> Any:
    import pythia8mc  # noqa: PLC0415 (heavy; only generator processes need it)

    pythia = pythia8mc.Pythia("", False)
    for line in (
        f"Beams:eCM = {settings.ecm_gev}",
        "SoftQCD:inelastic = on",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        "Next:numberCount = 0",
        "Print:quiet = on",
        # The multiparton-interaction initialisation takes ~8 s; it is computed once and reused from a file.
        "MultipartonInteractions:reuseInit = 3",
        f"MultipartonInteractions:initFile = {mpi_init_file}",
    ):
        pythia.readString(line)
    if not pythia.init():
        msg = f"pv_finder generator: Pythia initialisation failed (seed {seed})"
        raise RuntimeError(msg)
    return pythia


def _generate_chunk(
    args: tuple[GeneratorSettings, int, int, Path],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    settings, seed, n_collisions, mpi_init_file = args
    pythia = _pythia(settings, seed, mpi_init_file)
    momenta: list[npt.NDArray[np.float32]] = []
    counts = np.zeros(n_collisions, dtype=np.int64)
    done = 0
    while done < n_collisions:
        if not pythia.next():
            continue
        p = np.array(
            [(q.px(), q.py(), q.pz()) for q in pythia.event if q.isFinal() and q.isCharged()],
            dtype=np.float64,
        ).reshape(-1, 3)
        pt = np.hypot(p[:, 0], p[:, 1])
        eta = np.arcsinh(np.divide(p[:, 2], pt, out=np.zeros_like(pt), where=pt > 0))
        keep = (pt > 0) & (eta > settings.eta_min) & (eta < settings.eta_max)
        keep &= np.linalg.norm(p, axis=1) > settings.p_min_gev
        momenta.append(p[keep].astype(np.float32))
        counts[done] = int(keep.sum())
        done += 1
    return np.concatenate(momenta) if momenta else np.empty((0, 3), np.float32), counts


def _chunk_seed(seed: int, stream: int, chunk: int) -> int:
    digest = hashlib.sha256(f"pv_finder/{seed}/{stream}/{chunk}".encode()).digest()
    return 1 + int.from_bytes(digest[:8], "little") % (_PYTHIA_MAX_SEED - 1)


def generate_collisions(
    settings: GeneratorSettings,
    n_collisions: int,
    *,
    seed: int,
    stream: int,
    workdir: Path,
    jobs: int,
    desc: str = "pythia",
) -> CollisionSample:
    """``n_collisions`` minimum-bias collisions of random stream ``stream`` (train/val/test use different ones).

    Cached in ``workdir`` as HDF5 (``px``, ``py``, ``pz``, ``offsets``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"collisions_{settings.collision_key()}_s{seed}_r{stream}_n{n_collisions}.h5"
    if path.is_file():
        with h5py.File(path, "r") as f:
            seconds = float(f.attrs.get("seconds", float("nan")))
            return CollisionSample(f["px"][:], f["py"][:], f["pz"][:], f["offsets"][:], seconds)
    start = time.perf_counter()
    mpi_init_file = workdir / f"pythia_mpi_init_{int(settings.ecm_gev)}.cmnd"
    if not mpi_init_file.is_file():
        # Made once, in this process, before the workers start, so they all read the same file.
        _pythia(settings, 1, mpi_init_file)
    sizes = [
        min(_COLLISIONS_PER_CHUNK, n_collisions - start)
        for start in range(0, n_collisions, _COLLISIONS_PER_CHUNK)
    ]
    tasks = [(settings, _chunk_seed(seed, stream, i), size, mpi_init_file) for i, size in enumerate(sizes)]
    results: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]] = []
    with tqdm(total=n_collisions, desc=desc, unit="coll", leave=False) as bar:
        for task, result in zip(tasks, map_ordered(_generate_chunk, tasks, jobs=jobs), strict=True):
            results.append(result)
            bar.update(task[2])
    momenta = np.concatenate([r[0] for r in results])
    counts = np.concatenate([r[1] for r in results])
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    sample = CollisionSample(
        momenta[:, 0].copy(),
        momenta[:, 1].copy(),
        momenta[:, 2].copy(),
        offsets,
        time.perf_counter() - start,
    )
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        for name in ("px", "py", "pz", "offsets"):
            f.create_dataset(name, data=getattr(sample, name))
        f.attrs["seconds"] = sample.generation_s
        f.attrs["settings"] = json.dumps(asdict(settings))
        f.attrs["seed"] = seed
        f.attrs["stream"] = stream
    tmp.replace(path)
    return sample


def _truncated_normal(
    rng: np.random.Generator, mean: float, sigma: float, size: int, lo: float, hi: float
) -> npt.NDArray[np.float64]:
    values = rng.normal(mean, sigma, size)
    bad = (values < lo) | (values > hi)
    while bad.any():
        values[bad] = rng.normal(mean, sigma, int(bad.sum()))
        bad = (values < lo) | (values > hi)
    return values


def reconstruct_tracks(
    settings: GeneratorSettings,
    collisions: CollisionSample,
    pv_x: npt.NDArray[np.float64],
    pv_y: npt.NDArray[np.float64],
    pv_z: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.int64], Tracks]:
    """Detector response: collision i placed at (pv_x[i], pv_y[i], pv_z[i]) -> reconstructed tracks.

    Returns the index of each reconstructed track's collision, and the tracks: straight lines from their
    vertex, measured at their closest approach to the beam line with sigma_IP across the track (d0) and
    sigma_IP / sin(theta) along the beam (z). Directions are exact (angles are measured far better).
    """
    pv_of_track = np.repeat(np.arange(collisions.n_collisions), np.diff(collisions.offsets))
    found = rng.random(pv_of_track.size) < settings.track_efficiency
    px = collisions.px[found].astype(np.float64)
    py = collisions.py[found].astype(np.float64)
    pz = collisions.pz[found].astype(np.float64)
    pv_of_track = pv_of_track[found]
    sigma_ip = settings.ip_constant_mm + settings.ip_over_pt_mm_gev / np.hypot(px, py)
    vertex = (pv_x[pv_of_track], pv_y[pv_of_track], pv_z[pv_of_track])
    return pv_of_track, measure_tracks(vertex, (px, py, pz), sigma_ip, rng)


class VertexCeiling(NamedTuple):
    """What perfectly associated tracks give (see :func:`ideal_vertex_efficiency`)."""

    #: Fraction of vertices with >= min_tracks tracks whose fitted z lands within max_dz of the truth.
    efficiency: float
    #: Their median |dz| (mm).
    median_dz_mm: float
    #: The best efficiency with at most ``fp_budget`` vertices per crossing landing beyond max_dz: keep vertices
    #: in order of their fitted z error (best measured first), a cut any finder can make, and stop at the budget.
    efficiency_at_budget: float


def ideal_vertex_efficiency(
    settings: GeneratorSettings,
    collisions: CollisionSample,
    *,
    seed: int,
    max_dz: float = 0.5,
    min_tracks: int = 5,
    fp_budget: float = FP_BUDGET,
    transverse_known: bool = False,
    fit: VertexFit | None = None,
) -> VertexCeiling:
    """Resolution ceiling of any finder: truth-assisted vertices from perfectly associated tracks.

    Each collision is placed in the beam spot and reconstructed; its vertex is the inverse-variance mean
    (1 / sigma_z^2) of its own tracks' z. Crossings hold ``settings.mean_pvs`` collisions on average, which
    turns the misplaced vertices into false positives per crossing for ``efficiency_at_budget``. With
    ``transverse_known`` each track's z is taken at the vertex's true (x, y) instead of at the beam line, and
    weighed by its own resolution only, as a finder that also fitted the transverse position perfectly would:
    what is left is the tracks' own resolution. With ``fit``, each vertex is instead fitted in 3D from its own
    tracks by that fit (the beam spot constraining x, y), seeded at the mean, and ordered by its fitted sigma_z:
    a real finder's vertex fit, given perfect association.
    """
    rng = np.random.default_rng([seed, 0xCE11])
    n = collisions.n_collisions
    pv_x = rng.normal(0.0, settings.beam_xy_sigma_mm, n)
    pv_y = rng.normal(0.0, settings.beam_xy_sigma_mm, n)
    if transverse_known:  # the same draws (so the same smearing below), with the beam-spot shift removed
        pv_x, pv_y = np.zeros(n), np.zeros(n)
    pv_z = np.zeros(n)
    pv_of_track, tracks = reconstruct_tracks(settings, collisions, pv_x, pv_y, pv_z, rng)
    track_z = tracks.z
    weight = 1.0 / tracks.sigma_z(0.0 if transverse_known else settings.beam_xy_sigma_mm) ** 2
    total = np.bincount(pv_of_track, weights=weight, minlength=n)
    mean = np.bincount(pv_of_track, weights=weight * track_z, minlength=n) / np.where(total > 0, total, 1.0)
    counted = np.bincount(pv_of_track, minlength=n) >= min_tracks
    if not counted.any():
        return VertexCeiling(float("nan"), float("nan"), float("nan"))
    precision = total.copy()  # of each vertex's z (1 / mm^2): the order in which vertices are dropped
    if fit is not None:
        by_vertex = np.argsort(pv_of_track, kind="stable")
        starts = np.concatenate(([0], np.cumsum(np.bincount(pv_of_track, minlength=n))))
        for i in np.flatnonzero(counted):
            fitted = fit(tracks[by_vertex[starts[i] : starts[i + 1]]], [mean[i]])
            mean[i], precision[i] = fitted.z[0], fitted.sigma_z[0] ** -2
    error = np.abs(mean[counted])
    # Best measured first; the largest prefix whose misplaced vertices stay within the budget.
    by_precision = np.argsort(precision[counted])[::-1]
    misplaced = np.cumsum(error[by_precision] >= max_dz)
    allowed = int(np.searchsorted(misplaced, fp_budget * n / settings.mean_pvs, side="right"))
    found = int(np.sum(error[by_precision][:allowed] < max_dz))
    return VertexCeiling(float(np.mean(error < max_dz)), float(np.median(error)), found / error.size)


def _kde_task(tracks: Tracks) -> npt.NDArray[np.float32]:
    return build_kde(tracks)


def simulate_crossings(
    settings: GeneratorSettings,
    n_crossings: int,
    *,
    seed: int,
    stream: int,
    workdir: Path,
    jobs: int,
    desc: str = "crossings",
) -> CrossingSample:
    """``n_crossings`` bunch crossings of random stream ``stream``; cached in ``workdir`` as HDF5."""
    path = workdir / f"crossings_{settings.key()}_{KDE_DEFINITION}_s{seed}_r{stream}_n{n_crossings}.h5"
    if path.is_file():
        with h5py.File(path, "r") as f:
            return CrossingSample(**{name: f[name][:] for name in f}, generation_s=float(f.attrs["seconds"]))
    rng = np.random.default_rng([seed, stream, 7919])
    n_pvs = rng.poisson(settings.mean_pvs, n_crossings)
    collisions = generate_collisions(
        settings,
        int(n_pvs.sum()),
        seed=seed,
        stream=stream,
        workdir=workdir,
        jobs=jobs,
        desc=f"{desc}: pythia",
    )
    # Pythia's own time (recorded with the collisions, which may come from the cache) plus the detector
    # simulation and KDEs timed here.
    start = time.perf_counter() - collisions.generation_s
    pv_offsets = np.concatenate(([0], np.cumsum(n_pvs))).astype(np.int64)
    n_total = int(pv_offsets[-1])
    # Vertices well inside the histogram so that every true vertex can be found.
    pv_z = _truncated_normal(
        rng, settings.beam_z_mean_mm, settings.beam_z_sigma_mm, n_total, Z_MIN_MM + 1, Z_MAX_MM - 1
    )
    pv_x = rng.normal(0.0, settings.beam_xy_sigma_mm, n_total)
    pv_y = rng.normal(0.0, settings.beam_xy_sigma_mm, n_total)

    pv_of_track, tracks = reconstruct_tracks(settings, collisions, pv_x, pv_y, pv_z, rng)
    pv_ntracks = np.bincount(pv_of_track, minlength=n_total).astype(np.int64)

    crossing_of_track = np.searchsorted(pv_offsets, pv_of_track, side="right") - 1
    track_counts = np.bincount(crossing_of_track, minlength=n_crossings)
    track_offsets = np.concatenate(([0], np.cumsum(track_counts))).astype(np.int64)
    sample = CrossingSample(
        kde=np.empty((n_crossings, 2, N_BINS), dtype=np.float32),
        pv_z=pv_z,
        pv_ntracks=pv_ntracks,
        pv_offsets=pv_offsets,
        # Stored, and so given to the KDE, in float32, as a reconstruction job's event files hold them.
        **{f"track_{name}": getattr(tracks, name).astype(np.float32) for name in Tracks.FIELDS},
        track_offsets=track_offsets,
    )
    with tqdm(total=n_crossings, desc=f"{desc}: KDE", unit="xing", leave=False) as bar:
        # Small samples are not worth starting workers for.
        workers = jobs if n_crossings > 64 else 1
        tasks = [sample.tracks(i) for i in range(n_crossings)]
        for i, row in enumerate(map_ordered(_kde_task, tasks, jobs=workers, chunksize=32)):
            sample.kde[i] = row
            bar.update()
    sample = replace(sample, generation_s=time.perf_counter() - start)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        for field in fields(sample):
            if field.name != "generation_s":
                f.create_dataset(field.name, data=getattr(sample, field.name))
        f.attrs["seconds"] = sample.generation_s
        f.attrs["settings"] = json.dumps(asdict(settings))
        f.attrs["seed"] = seed
        f.attrs["stream"] = stream
    tmp.replace(path)
    return sample
