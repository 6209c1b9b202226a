"""``hepsonic-reco``: a reconstruction job whose four ML steps run on the inference service.

For each event of a ROOT file it tags the jets (``particlenet_lite`` or ``part_small``), scores the
electron candidates (``ringer``), finds the primary vertices (``pv_finder``) and fast-simulates showers for
the requested particles (``calo_gan``, latents from ``--seed`` and the event number, so reruns are
identical). Objects from many events are merged into large requests by one :class:`Batcher` per model.
Results and their provenance go to Parquet (``.parquet``) or ROOT (``.root``). ``--local`` runs the
same inferences in-process with onnxruntime on ``model_repository/``.

Per event: ``jet_p_top``, ``jet_mass`` (GeV) and ``jet_md_cut`` (the P(top) threshold of the tagger's 1%
mass-decorrelated working point at that mass: ``jet_p_top >= jet_md_cut`` selects top-like jets without
sculpting the QCD mass), ``el_discriminant``, ``pv_x``, ``pv_y``, ``pv_z`` (mm; the vertices fitted to the tracks
at the peaks of ``pv_prob``), ``pv_prob_sum`` and the showers' layer energies and cells.

    hepsonic-reco sample events.root --events 200          # a sample input file
    hepsonic-reco run events.root -o out.parquet --server grpc://127.0.0.1:8081
    hepsonic-reco run events.root -o out_local.parquet --local --repository model_repository
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._batcher import Batcher
from ._client import Client
from ._exceptions import HepsonicError
from ._helpers import served_mass_decorrelated_cut, served_peak_finder, served_vertex_fit
from ._local import OnnxRuntimeTransport
from ._options import BatchingOptions, FallbackOptions
from ._result import InferResult, Provenance, write_provenance
from .physics import jets as jet_physics
from .physics import showers as shower_physics
from .physics import vertices as vertex_physics

__all__ = ["TASKS", "main", "run", "write_sample"]

log = logging.getLogger("hepsonic_client.reco")

#: Input branches of the tracks -> the fields of :class:`~.physics.vertices.Tracks`.
_TRACK_BRANCHES = {
    "trk_z": "z",
    "trk_d0": "d0",
    "trk_phi": "phi",
    "trk_cot_theta": "cot_theta",
    "trk_sigma_ip": "sigma_ip",
}
#: QCD efficiency of the mass-decorrelated working point whose cut goes into the output (``jet_md_cut``).
MD_QCD_EFFICIENCY = 0.01
#: task -> the model it needs (the jet model may be switched with ``--jet-model``).
TASKS = {"jets": "particlenet_lite", "electrons": "ringer", "vertices": "pv_finder", "showers": "calo_gan"}


def write_sample(path: Path, *, events: int = 100, seed: int = 1) -> Path:
    """Write a small synthetic input file (the branches ``hepsonic-reco run`` reads) with numpy only."""
    import awkward as ak  # noqa: PLC0415
    import uproot  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "pf_px", "pf_py", "pf_pz", "pf_e", "pf_jet", "el_rings", "el_et", "el_eta", *_TRACK_BRANCHES,
            "sim_energy",
        )
    }  # fmt: skip
    for _ in range(events):
        px, py, pz, energy, jet_index = [], [], [], [], []
        for jet in range(int(rng.integers(1, 4))):
            pt_jet, eta_jet, phi_jet = rng.uniform(500, 700), rng.uniform(-2, 2), rng.uniform(-np.pi, np.pi)
            n = int(rng.integers(10, 80))
            fractions = rng.dirichlet(np.full(n, 0.6))
            pt = pt_jet * fractions
            eta = eta_jet + rng.normal(0, 0.15, n)
            phi = phi_jet + rng.normal(0, 0.15, n)
            px += list(pt * np.cos(phi))
            py += list(pt * np.sin(phi))
            pz += list(pt * np.sinh(eta))
            energy += list(pt * np.cosh(eta))
            jet_index += [jet] * n
        for name, values in zip(("pf_px", "pf_py", "pf_pz", "pf_e"), (px, py, pz, energy), strict=True):
            columns[name].append(np.asarray(values, np.float32))
        columns["pf_jet"].append(np.asarray(jet_index, np.int32))
        n_el = int(rng.integers(0, 4))
        et = rng.uniform(5, 100, n_el)
        profile = np.exp(-np.arange(100) / rng.uniform(2, 20, (n_el, 1)))
        rings = et[:, None] * 1000 * profile * rng.uniform(0.5, 1.5, (n_el, 100)) / 10
        columns["el_rings"].append(rings.astype(np.float32).reshape(-1))
        columns["el_et"].append(et.astype(np.float32))
        columns["el_eta"].append(rng.uniform(-2.47, 2.47, n_el).astype(np.float32))
        vertices_z = rng.normal(100, 63, int(rng.poisson(7.6)) + 1)
        tracks = vertex_physics.toy_tracks(vertices_z, rng.integers(5, 40, vertices_z.size), rng)
        for branch, name in _TRACK_BRANCHES.items():
            columns[branch].append(getattr(tracks, name).astype(np.float32))
        columns["sim_energy"].append(rng.uniform(1, 100, int(rng.integers(0, 3))).astype(np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    with uproot.recreate(path) as output:
        output["events"] = {name: ak.Array(values) for name, values in columns.items()}
    return path


@dataclass(frozen=True)
class _Pending:
    """One event's inferences in flight, and what its results need from the input."""

    futures: dict[str, list[Future[InferResult]]]
    #: GeV, one per jet (the sum of its constituents).
    jet_mass: npt.NDArray[np.float64]
    #: The event's tracks, which the vertex fit needs (None without the vertices task).
    tracks: vertex_physics.Tracks | None = None


class _Job:
    """One run: a batcher per model, futures per event, results gathered in event order."""

    def __init__(
        self, client: Client, tasks: Sequence[str], *, jet_model: str, seed: int, options: BatchingOptions
    ):
        self.client = client
        self.tasks = tasks
        self.seed = seed
        models = {task: (jet_model if task == "jets" else TASKS[task]) for task in tasks}
        self.batchers = {task: Batcher(client, model, options=options) for task, model in models.items()}
        self.jet_model = jet_model
        self.provenance: dict[str, Provenance] = {}
        self._md_cuts: dict[tuple[str, str], jet_physics.MassDecorrelatedCut | None] = {}

    def submit(self, event: Any, number: int) -> _Pending:
        futures: dict[str, list[Future[InferResult]]] = {}
        jet_mass = np.zeros(0)
        tracks = None
        if "jets" in self.batchers:
            jet_of = np.asarray(event["pf_jet"])
            order = np.argsort(jet_of, kind="stable")  # constituents grouped by jet for padding
            p4 = np.stack(
                [np.asarray(event[n], np.float64) for n in ("pf_px", "pf_py", "pf_pz", "pf_e")], axis=1
            )[order]
            jet_of = jet_of[order]
            n_jets = int(jet_of.max()) + 1 if jet_of.size else 0
            futures["jets"] = []
            if n_jets:
                padded = jet_physics.pad_constituents(p4, np.bincount(jet_of, minlength=n_jets))
                jet_mass = jet_physics.jet_mass(jet_physics.sum_constituents(padded))
                tensors = jet_physics.build_tagger_inputs(padded)
                if self.jet_model != "part_small":
                    del tensors["pf_vectors"]
                futures["jets"] = [
                    self.batchers["jets"].submit({k: v[i] for k, v in tensors.items()}) for i in range(n_jets)
                ]
        if "electrons" in self.batchers:
            rings = np.asarray(event["el_rings"], np.float32).reshape(-1, 100)
            et = np.asarray(event["el_et"], np.float32)
            eta = np.asarray(event["el_eta"], np.float32)
            futures["electrons"] = [
                self.batchers["electrons"].submit(
                    {"rings": rings[i], "et": et[i : i + 1], "eta": eta[i : i + 1]}
                )
                for i in range(len(et))
            ]
        if "vertices" in self.batchers:
            tracks = vertex_physics.Tracks(
                **{name: np.asarray(event[b]) for b, name in _TRACK_BRANCHES.items()}
            )
            kde = vertex_physics.build_kde(tracks)
            futures["vertices"] = [self.batchers["vertices"].submit({"kde": kde})]
        if "showers" in self.batchers:
            energies = np.asarray(event["sim_energy"], np.float32)
            futures["showers"] = []
            if energies.size:
                inputs = shower_physics.calo_gan_inputs(energies, self.seed, stream=number)
                futures["showers"] = [
                    self.batchers["showers"].submit({"z": inputs["z"][i], "energy": inputs["energy"][i]})
                    for i in range(energies.size)
                ]
        return _Pending(futures, jet_mass, tracks)

    def _md_cut(self, provenance: Provenance) -> jet_physics.MassDecorrelatedCut | None:
        """The answering tagger version's mass-decorrelated cut; None (warned once) when it publishes none."""
        key = (provenance.model, provenance.version)
        if key not in self._md_cuts:
            try:
                self._md_cuts[key] = served_mass_decorrelated_cut(self.client, provenance, MD_QCD_EFFICIENCY)
            except LookupError as exc:
                log.warning("hepsonic-reco: jet_md_cut is NaN for these jets: %s", exc)
                self._md_cuts[key] = None
        return self._md_cuts[key]

    def collect(self, pending: _Pending, peak_finder: vertex_physics.PeakFinder | None) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for task, task_futures in pending.futures.items():
            results = [f.result() for f in task_futures]
            for result in results:
                self.provenance[f"{task}:{result.provenance.model}"] = result.provenance
            if task == "jets":
                row["jet_p_top"] = np.array([r["softmax"][0] for r in results], np.float32)
                row["jet_mass"] = pending.jet_mass.astype(np.float32)
                # The P(top) threshold of the mass-decorrelated working point at each jet's mass: a version
                # may answer mid-run (a rollout), so each jet gets its own answering version's cut.
                cuts = [self._md_cut(r.provenance) for r in results]
                row["jet_md_cut"] = np.array(
                    [
                        np.nan if cut is None else cut.threshold([mass])[0]
                        for cut, mass in zip(cuts, pending.jet_mass, strict=True)
                    ],
                    np.float32,
                )
            elif task == "electrons":
                row["el_discriminant"] = np.array([r["discriminant"][0] for r in results], np.float32)
            elif task == "vertices":
                prob = results[0]["pv_prob"]
                finder = peak_finder or served_peak_finder(self.client, results[0].provenance)
                z = finder(prob)
                # Without a published fit (an older version) the transverse position is unknown: NaN.
                x = y = np.full(z.size, np.nan)
                fit = served_vertex_fit(self.client, results[0].provenance)
                if fit is not None and pending.tracks is not None:
                    fitted = fit(pending.tracks, z)
                    x, y, z = fitted.x, fitted.y, fitted.z
                row["pv_x"], row["pv_y"], row["pv_z"] = (v.astype(np.float32) for v in (x, y, z))
                row["pv_prob_sum"] = np.float32(prob.sum())
            elif task == "showers":
                for layer in ("layer_0", "layer_1", "layer_2"):
                    row[f"shower_{layer}_energy"] = np.array([r[layer].sum() for r in results], np.float32)
                row["shower_cells"] = (
                    np.concatenate(
                        [
                            np.concatenate([r[k].reshape(-1) for k in ("layer_0", "layer_1", "layer_2")])
                            for r in results
                        ]
                    ).astype(np.float32)
                    if results
                    else np.zeros(0, np.float32)
                )
        return row

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()


def _write(rows: list[dict[str, Any]], output: Path, metadata: dict[str, str]) -> None:
    import awkward as ak  # noqa: PLC0415

    columns = {name: ak.Array([row[name] for row in rows]) for name in rows[0]} if rows else {}
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".root":
        import uproot  # noqa: PLC0415

        with uproot.recreate(output) as handle:
            handle["results"] = {k: v for k, v in columns.items() if k != "shower_cells"}
            for key, value in metadata.items():
                handle[key] = value
        return
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pa.table({name: ak.to_arrow(array, extensionarray=False) for name, array in columns.items()})
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    pq.write_table(table, output)


def run(
    input_path: Path,
    output: Path,
    *,
    client: Client,
    tasks: Sequence[str] = tuple(TASKS),
    jet_model: str = "particlenet_lite",
    seed: int = 12345,
    batching: BatchingOptions | None = None,
    chunk_events: int = 64,
    peak_finder: vertex_physics.PeakFinder | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the job; returns a summary (events, wall and CPU time, events/s, CPU s/event, provenance)."""
    import uproot  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    options = batching or BatchingOptions(max_batch_size=256, max_latency=0.01, max_inflight=2)
    job = _Job(client, tasks, jet_model=jet_model, seed=seed, options=options)
    rows: list[dict[str, Any]] = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    number = 0
    try:
        with uproot.open(input_path) as handle:
            tree = handle["events"]
            bar = tqdm(total=tree.num_entries, unit="ev", desc="hepsonic-reco", disable=not progress)
            for chunk in tree.iterate(step_size=chunk_events, library="ak"):
                # Submit a whole chunk first: the batchers merge objects across its events.
                pending = []
                for event in chunk:
                    pending.append(job.submit(event, number))
                    number += 1
                rows.extend(job.collect(submitted, peak_finder) for submitted in pending)
                bar.update(len(pending))
            bar.close()
    finally:
        job.close()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    metadata: dict[str, str] = {}
    write_provenance(metadata, list(job.provenance.values()))
    summary = {
        "events": number,
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": number / wall if wall else 0.0,
        "cpu_s_per_event": cpu / number if number else 0.0,
        "requests": client.stats().get("requests", 0),
        "fallbacks": {k: v for k, v in client.stats().items() if k.startswith("fallback")},
    }
    metadata["hepsonic_job"] = json.dumps({"tasks": list(tasks), "jet_model": jet_model, "seed": seed})
    _write(rows, output, metadata)
    return {**summary, "provenance": json.loads(metadata["hepsonic_provenance"])}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``hepsonic-reco``)."""
    parser = argparse.ArgumentParser(
        prog="hepsonic-reco", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="write a synthetic input ROOT file")
    sample.add_argument("output", type=Path)
    sample.add_argument("--events", type=int, default=100)
    sample.add_argument("--seed", type=int, default=1)
    go = sub.add_parser("run", help="run the reconstruction job")
    go.add_argument("input", type=Path)
    go.add_argument("-o", "--output", type=Path, required=True, help="results: .parquet or .root")
    go.add_argument(
        "--server",
        action="append",
        default=None,
        help="server URL (repeat for failover), e.g. grpc://127.0.0.1:8081 (default)",
    )
    go.add_argument("--api-key", default=None)
    go.add_argument("--local", action="store_true", help="run in-process with onnxruntime")
    go.add_argument(
        "--repository",
        type=Path,
        default=Path("model_repository"),
        help="model repository for --local and --fallback",
    )
    go.add_argument("--fallback", action="store_true", help="start an embedded Triton if no server answers")
    go.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    go.add_argument("--jet-model", default="particlenet_lite", choices=("particlenet_lite", "part_small"))
    go.add_argument("--seed", type=int, default=12345, help="seed of the shower latents")
    go.add_argument("--max-batch", type=int, default=256)
    go.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "sample":
        print(f"wrote {write_sample(args.output, events=args.events, seed=args.seed)}")  # noqa: T201
        return 0
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    if not args.input.is_file():
        parser.error(
            f"input file {args.input} does not exist (write one with: hepsonic-reco sample {args.input})"
        )
    try:
        if args.local:
            client = Client(transport=OnnxRuntimeTransport(args.repository, threads=1))
        else:
            client = Client(
                args.server or ["grpc://127.0.0.1:8081"],
                api_key=args.api_key,
                fallback=FallbackOptions(repository=args.repository) if args.fallback else None,
            )
        with client:
            summary = run(
                args.input,
                args.output,
                client=client,
                tasks=tasks,
                jet_model=args.jet_model,
                seed=args.seed,
                batching=BatchingOptions(max_batch_size=args.max_batch, max_latency=0.01),
                progress=not args.no_progress,
            )
    except HepsonicError as exc:
        print(f"hepsonic-reco: error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(  # noqa: T201
        f"hepsonic-reco: {summary['events']} events in {summary['wall_s']:.2f} s = "
        f"{summary['events_per_s']:.1f} events/s, {summary['cpu_s_per_event'] * 1e3:.2f} ms CPU/event, "
        f"{summary['requests']} requests; wrote {args.output}"
    )
    for entry in summary["provenance"]:
        print(  # noqa: T201
            f"  {entry['model']} v{entry['version']} sha256={str(entry['sha256'])[:12]} via {entry['via']} @ {entry['server']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
