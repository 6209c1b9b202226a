"""The gateway's tax: the same load against Triton directly and through the gateway, in one run.

    python loadtests/bench_gateway.py [--model ringer] [--duration 2] [--concurrency 1,2,4,8,16,32]
                                      [--placements isolated,shared]

Starts a real Triton on a one-model repository derived from ``model_repository/`` and the gateway in front of it
(its own process, as deployed), then for HTTP and gRPC, batch 1 and batch 64, and every concurrency, drives
``--duration`` seconds of closed-loop load (stock ``tritonclient`` aio clients in a separate process) against
Triton and against the gateway, interleaved so that drift hits both alike. Prints a table, writes
``loadtests/results/bench_gateway.json`` and ``bench_gateway.png``. Targets (issue 4): through the gateway
>= 85 % of direct throughput and <= 0.5 ms added p50 latency for ringer batch 64 at 8 clients.

Two placements, both measured in the same run:

* ``isolated`` (as deployed: the Helm chart runs gateway pods apart from the Triton pods): Triton and the load
  generator share the same cores in the direct and the gateway measurement, and the gateway has cores of its own
  (a quarter of the machine, at least one). The ratio is then the gateway's tax on what Triton can serve.
* ``shared``: everything on every core. On a small machine this measures CPU contention as well: each request
  proxied by the Python gRPC stack costs ~0.8 ms of CPU even with no logic at all, which the machine's other
  processes then lack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from hepsonic_client import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_THROUGHPUT_RATIO = 0.85
TARGET_ADDED_P50_MS = 0.5


def _inputs(config: Any, batch: int) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    return {
        item.name: rng.normal(0.5, 0.5, (batch, *item.dims)).astype(np.float32)
        for item in config.input  # every served input is FP32 (models/hepsonic_models/specs.py)
    }


async def _drive(
    protocol: str, url: str, model: str, arrays: dict[str, Any], clients: int, seconds: float
) -> list[float]:
    """Closed-loop load: ``clients`` concurrent requesters; returns per-request latencies (s)."""
    if protocol == "grpc":
        import tritonclient.grpc.aio as aioclient  # noqa: PLC0415
    else:
        import tritonclient.http.aio as aioclient  # noqa: PLC0415
    client = aioclient.InferenceServerClient(url)
    tensors = []
    for name, array in arrays.items():
        tensor = aioclient.InferInput(name, list(array.shape), "FP32")
        if protocol == "grpc":
            tensor.set_data_from_numpy(array)
        else:
            tensor.set_data_from_numpy(array, binary_data=True)
        tensors.append(tensor)
    latencies: list[float] = []
    warmup_end = time.perf_counter() + min(0.5, seconds / 4)
    end = warmup_end + seconds

    async def requester() -> None:
        while True:
            started = time.perf_counter()
            if started >= end:
                return
            await client.infer(model, tensors)
            if started >= warmup_end:
                latencies.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*(requester() for _ in range(clients)))
    finally:
        await client.close()
    return latencies


def _point(args: tuple[str, str, str, dict[str, Any], int, float]) -> list[float]:
    try:
        return asyncio.run(_drive(*args))
    except Exception as exc:  # noqa: BLE001  (re-raised, see below)
        # Re-raised as a plain RuntimeError: tritonclient's exceptions do not unpickle, and a worker error that
        # cannot cross back to the parent would leave ``pool.apply`` waiting forever.
        protocol, url, model = args[:3]
        raise RuntimeError(
            f"{protocol} load on {model} at {url} failed: {type(exc).__name__}: {exc}"
        ) from None


def _summary(latencies: list[float], seconds: float, batch: int) -> dict[str, float]:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return 1e3 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    return {
        "requests": len(ordered),
        "requests_per_s": len(ordered) / seconds,
        "inferences_per_s": len(ordered) * batch / seconds,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "mean_ms": 1e3 * statistics.fmean(ordered) if ordered else float("nan"),
    }


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (Linux /proc), to report the gateway's CPU cost per request:
    unlike latency it does not depend on how busy the shared machine is."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _threads_and_children(pid: int) -> tuple[list[int], list[int]]:
    tasks = Path(f"/proc/{pid}/task")
    try:
        tids = [int(t.name) for t in tasks.iterdir()]
    except OSError:
        return [], []
    children: list[int] = []
    for tid in tids:
        try:
            children += [int(c) for c in (tasks / str(tid) / "children").read_text().split()]
        except OSError:
            continue
    return tids, children


def pin_tree(pid: int, cores: set[int], *, skip: Collection[int] = ()) -> None:
    """Pin every thread of ``pid`` and of its descendants (except the trees of ``skip``) to ``cores``.

    Threads the processes create later inherit it. Linux only; elsewhere (or without permission) a no-op.
    """
    if pid in skip or not hasattr(os, "sched_setaffinity"):
        return
    tids, children = _threads_and_children(pid)
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:
            continue
    for child in children:
        pin_tree(child, cores, skip=skip)


def placement_cores(placement: str, cpus: list[int]) -> tuple[set[int], set[int]]:
    """(cores of Triton and the load generator, cores of the gateway) for a placement."""
    if placement == "shared" or len(cpus) < 2:
        return set(cpus), set(cpus)
    n_gateway = max(1, len(cpus) // 4)
    return set(cpus[:-n_gateway]), set(cpus[-n_gateway:])


def _gateway_sums(url: str, model: str) -> tuple[float, float, float, float]:
    """(request sum, request count, upstream sum, upstream count) of the gateway's own histograms for
    ``model``: their mean difference is the time a request spends *inside* the gateway."""
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(f"http://{url}/metrics", timeout=10) as response:
        text = response.read().decode()

    def total(metric: str) -> float:
        pattern = rf'^{metric}{{[^}}]*model="{model}"[^}}]*}} ([0-9.e+-]+)$'
        return sum(float(v) for v in re.findall(pattern, text, flags=re.MULTILINE))

    return (
        total("hepsonic_gateway_request_duration_seconds_sum"),
        total("hepsonic_gateway_request_duration_seconds_count"),
        total("hepsonic_gateway_upstream_duration_seconds_sum"),
        total("hepsonic_gateway_upstream_duration_seconds_count"),
    )


def _start_passthrough(upstream: str, *, timeout_s: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``loadtests/passthrough_proxy.py`` in front of ``upstream``; (process, its address)."""
    from hepsonic_triton import terminate_with_parent  # noqa: PLC0415

    address = f"127.0.0.1:{free_port()}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtests.passthrough_proxy", "--listen", address, "--upstream", upstream],
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
        preexec_fn=terminate_with_parent,  # noqa: PLW1509  (only prctl: safe between fork and exec)
    )
    assert process.stdout is not None
    ready = threading.Timer(
        timeout_s, process.kill
    )  # a proxy that never says "ready" must not hang the bench
    ready.start()
    try:
        line = process.stdout.readline()
    finally:
        ready.cancel()
    process.stdout.close()
    if line.strip() != b"ready":
        process.kill()
        process.wait()
        raise RuntimeError(f"the pass-through proxy did not start (exit code {process.poll()})")
    return process, address


def _one_model_repository(model: str, workdir: Path) -> Path:
    repository = workdir / "repository"
    repository.mkdir()
    (repository / model).symlink_to((REPO_ROOT / "model_repository" / model).resolve())
    return repository


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    from tqdm import tqdm  # noqa: PLC0415

    from hepsonic_triton import (  # noqa: PLC0415
        TritonConfig,
        TritonServer,
        load_repository,
        stop_process_group,
    )
    from hepsonic_triton.stack import GatewayProcess  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="default: ringer when model_repository/ has it, else particlenet_lite"
    )
    parser.add_argument("--duration", type=float, default=2.0, help="seconds measured per point (default 2)")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--protocols", default="http,grpc")
    parser.add_argument(
        "--placements", default="isolated,shared", help="isolated (gateway on its own cores) and/or shared"
    )
    parser.add_argument("--repeats", type=int, default=3, help="measurements per point (median reported)")
    parser.add_argument(
        "--no-passthrough",
        dest="passthrough",
        action="store_false",
        help="skip the reference gRPC pass-through proxy (loadtests/passthrough_proxy.py)",
    )
    parser.add_argument(
        "--no-coalesce",
        dest="coalesce",
        action="store_false",
        help="the gateway forwards every gRPC request alone (default: it merges concurrent ones, as shipped)",
    )
    parser.add_argument(
        "--coalesce-calls",
        type=int,
        help="merged calls in flight per replica (default: the model's instances)",
    )
    parser.add_argument(
        "--queue-delay-us",
        type=int,
        help="Triton's max_queue_delay_microseconds for the model (default: the repository's)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="suffix of the result files (e.g. before/after a change)")
    args = parser.parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: through the finally blocks that stop every server started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    model = args.model or (
        "ringer" if (REPO_ROOT / "model_repository" / "ringer").is_dir() else "particlenet_lite"
    )
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    protocols = args.protocols.split(",")
    placements = args.placements.split(",")
    if unknown := set(placements) - {"isolated", "shared"}:
        parser.error(f"unknown placement(s): {', '.join(sorted(unknown))} (isolated, shared)")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if model != "ringer":
        print(f"note: ringer is not in model_repository/ yet; measuring {model} instead", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="hepsonic-bench-"))
    try:
        repository = _one_model_repository(model, workdir)
        entry = load_repository(repository)[0]
        config = TritonConfig(
            repository=repository,
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
            threads=1,
            queue_delay_us=args.queue_delay_us,
            workdir=workdir / "triton",
        )
        results: list[dict[str, Any]] = []
        with TritonServer(config) as triton:
            routing = workdir / "routing.yaml"
            routing.write_text(
                json.dumps(  # JSON is YAML
                    {
                        "pools": {
                            "default": {"endpoints": [{"http": triton.http_url, "grpc": triton.grpc_url}]}
                        },
                        "models": {"*": {"coalesce": args.coalesce, "coalesce_calls": args.coalesce_calls}},
                    }
                )
            )
            gateway = GatewayProcess(
                host="127.0.0.1",
                http_port=free_port(),
                grpc_port=free_port(),
                triton_http=triton.http_url,
                triton_grpc=triton.grpc_url,
                routing_file=routing,
            )
            gateway.env["HEPSONIC_LOG_LEVEL"] = "WARNING"
            gateway.start()
            passthrough = (
                _start_passthrough(triton.grpc_url) if "grpc" in protocols and args.passthrough else None
            )
            hops = {"gateway": gateway.process.pid if gateway.process else None}
            if passthrough is not None:
                hops["passthrough"] = passthrough[0].pid
            urls = {
                ("direct", "http"): triton.http_url,
                ("direct", "grpc"): triton.grpc_url,
                ("gateway", "http"): f"127.0.0.1:{gateway.http_port}",
                ("gateway", "grpc"): f"127.0.0.1:{gateway.grpc_port}",
            }
            if passthrough is not None:
                urls[("passthrough", "grpc")] = passthrough[1]
            # Repeats are interleaved (a whole sweep, then the next) so that drift on a shared machine hits
            # every point alike; the report takes the median over repeats.
            points = [
                (repeat, placement, p, b, c, path)
                for repeat in range(args.repeats)
                for placement in placements
                for p in protocols
                for b in batches
                for c in concurrencies
                for path in ("direct", "gateway", "passthrough")
                if (path, p) in urls
            ]
            context = multiprocessing.get_context("spawn")
            try:
                with context.Pool(1) as pool, tqdm(points, desc="bench", unit="point") as progress:
                    for repeat, placement, protocol, batch, clients, path in progress:
                        progress.set_postfix_str(f"{placement} {protocol} b{batch} c{clients} {path}")
                        arrays = _inputs(entry.config, batch)
                        if cpus:  # the gateway and the pass-through proxy get the gateway's cores
                            server_cores, gateway_cores = placement_cores(placement, cpus)
                            hop_pids = [pid for pid in hops.values() if pid is not None]
                            pin_tree(os.getpid(), server_cores, skip=hop_pids)
                            for pid in hop_pids:
                                pin_tree(pid, gateway_cores)
                        hop_pid = hops.get(path)  # the process whose CPU this point charges (none: direct)
                        cpu_before = _cpu_seconds(hop_pid)
                        sums_before = _gateway_sums(urls[("gateway", "http")], model)
                        latencies = pool.apply(
                            _point,
                            ((protocol, urls[(path, protocol)], model, arrays, clients, args.duration),),
                        )
                        cpu_after = _cpu_seconds(hop_pid)
                        sums_after = _gateway_sums(urls[("gateway", "http")], model)
                        summary = _summary(latencies, args.duration, batch)
                        if cpu_before is not None and cpu_after is not None:
                            # Includes the warm-up requests, which are not in `requests`: an upper bound.
                            warm = summary["requests"] * (1 + min(0.5, args.duration / 4) / args.duration)
                            summary["hop_cpu_ms_per_request"] = 1e3 * (cpu_after - cpu_before) / max(warm, 1)
                        if path == "gateway":
                            request_sum, request_n, upstream_sum, upstream_n = (
                                after - before for after, before in zip(sums_after, sums_before, strict=True)
                            )
                            if request_n and upstream_n:
                                summary["gateway_internal_ms"] = 1e3 * (
                                    request_sum / request_n - upstream_sum / upstream_n
                                )
                                summary["requests_per_upstream_call"] = request_n / upstream_n
                        results.append(
                            {
                                "repeat": repeat,
                                "placement": placement,
                                "path": path,
                                "protocol": protocol,
                                "batch": batch,
                                "clients": clients,
                                **summary,
                            }
                        )
            finally:
                gateway.stop()
                if passthrough is not None:
                    stop_process_group(passthrough[0], timeout_s=5.0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report = _report(results, model, args, cpus)
    args.output.mkdir(parents=True, exist_ok=True)
    stem = f"bench_gateway{('_' + args.tag) if args.tag else ''}"
    (args.output / f"{stem}.json").write_text(json.dumps(report, indent=2))
    _plot(_median_rows(results), model, args.output / f"{stem}.png")
    (args.output / f"{stem}.md").write_text(markdown(report, f"{stem}.png"))
    print(f"wrote {args.output / stem}.json, .png and .md")
    return 0


def _median_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (placement, path, protocol, batch, clients): the median of each figure over repeats."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in results:
        key = (row["placement"], row["path"], row["protocol"], row["batch"], row["clients"])
        groups.setdefault(key, []).append(row)
    merged = []
    for (placement, path, protocol, batch, clients), rows in sorted(groups.items()):
        figures = {k for row in rows for k, v in row.items() if isinstance(v, float)}
        merged.append(
            {
                "placement": placement,
                "path": path,
                "protocol": protocol,
                "batch": batch,
                "clients": clients,
                "repeats": len(rows),
                **{k: statistics.median(row[k] for row in rows if k in row) for k in sorted(figures)},
            }
        )
    return merged


def _report(
    results: list[dict[str, Any]], model: str, args: argparse.Namespace, cpus: list[int]
) -> dict[str, Any]:
    by_key = {
        (r["repeat"], r["placement"], r["path"], r["protocol"], r["batch"], r["clients"]): r for r in results
    }
    # Per interleaved repeat: (direct, gateway, pass-through proxy or None).
    sets: dict[
        tuple[str, str, int, int], list[tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]]
    ] = {}
    for (repeat, placement, path, protocol, batch, clients), direct in sorted(by_key.items()):
        gateway = by_key.get((repeat, placement, "gateway", protocol, batch, clients))
        if path == "direct" and gateway is not None:
            passthrough = by_key.get((repeat, placement, "passthrough", protocol, batch, clients))
            sets.setdefault((placement, protocol, batch, clients), []).append((direct, gateway, passthrough))
    comparisons: list[dict[str, Any]] = []
    print(f"\n{model}: gateway vs direct Triton ({args.duration:g} s per point, median of {args.repeats}); "
          "pt = the no-logic gRPC pass-through proxy, for reference")  # fmt: skip
    print(f"{'placement':<9} {'proto':<5} {'batch':>5} {'clients':>7} {'direct req/s':>12} {'gw req/s':>9} {'ratio':>6} "
          f"{'added p50':>9} {'gw CPU/req':>10} {'in gw':>8} {'req/call':>8} {'pt ratio':>8} {'pt CPU/req':>10}")  # fmt: skip
    nan = float("nan")

    def median(values: list[float]) -> float:
        finite = [v for v in values if v == v]  # noqa: PLR0124  (NaN test)
        return statistics.median(finite) if finite else nan

    def ratio_of(hop: dict[str, Any] | None, direct: dict[str, Any]) -> float:
        return hop["requests_per_s"] / direct["requests_per_s"] if hop and direct["requests_per_s"] else nan

    for (placement, protocol, batch, clients), measured in sorted(sets.items()):
        # Ratios and differences per interleaved repeat first: drift between repeats cancels.
        comparison: dict[str, Any] = {
            "placement": placement,
            "protocol": protocol,
            "batch": batch,
            "clients": clients,
            "repeats": len(measured),
            "throughput_ratio": median([ratio_of(g, d) for d, g, _ in measured]),
            "added_p50_ms": median([g["p50_ms"] - d["p50_ms"] for d, g, _ in measured]),
            "gateway_cpu_ms_per_request": median(
                [g.get("hop_cpu_ms_per_request", nan) for _, g, _ in measured]
            ),
            "gateway_internal_ms": median([g.get("gateway_internal_ms", nan) for _, g, _ in measured]),
            "requests_per_upstream_call": median(
                [g.get("requests_per_upstream_call", nan) for _, g, _ in measured]
            ),
        }
        if all(pt is not None for _, _, pt in measured):
            comparison |= {
                "passthrough_ratio": median([ratio_of(pt, d) for d, _, pt in measured]),
                "passthrough_added_p50_ms": median(
                    [pt["p50_ms"] - d["p50_ms"] for d, _, pt in measured if pt]
                ),
                "passthrough_cpu_ms_per_request": median(
                    [pt.get("hop_cpu_ms_per_request", nan) for _, _, pt in measured if pt]
                ),
            }
        comparisons.append(comparison)
        c = comparison
        direct_rps = median([d["requests_per_s"] for d, _, _ in measured])
        gateway_rps = median([g["requests_per_s"] for _, g, _ in measured])
        print(f"{placement:<9} {protocol:<5} {batch:>5} {clients:>7} {direct_rps:>12.0f} {gateway_rps:>9.0f} "
              f"{c['throughput_ratio']:>6.2f} {c['added_p50_ms']:>7.2f}ms {c['gateway_cpu_ms_per_request']:>8.3f}ms "
              f"{c['gateway_internal_ms']:>6.3f}ms {c['requests_per_upstream_call']:>8.2f} {c.get('passthrough_ratio', nan):>8.2f} "
              f"{c.get('passthrough_cpu_ms_per_request', nan):>8.3f}ms")  # fmt: skip
    targets = [c for c in comparisons if c["batch"] == 64 and c["clients"] == 8]
    for c in targets:
        ok = c["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO and c["added_p50_ms"] <= TARGET_ADDED_P50_MS
        print(f"target {model} b64 c8 {c['protocol']} ({c['placement']}): throughput {100 * c['throughput_ratio']:.0f} % of direct "
              f"(>= 85 %), added p50 {c['added_p50_ms']:.2f} ms (<= 0.5 ms): {'MET' if ok else 'MISSED'}")  # fmt: skip
    return {
        "model": model,
        "duration_s": args.duration,
        "machine": {
            "cpus": os.cpu_count(),
            # How many of the cores this run could use the isolated placement gave the gateway.
            "isolated_gateway_cores": len(placement_cores("isolated", cpus)[1]) if cpus else None,
            "usable_cores": len(cpus) or None,
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "load_average_at_end": os.getloadavg(),
        "repeats": args.repeats,
        "coalesce": {"enabled": args.coalesce, "calls_per_replica": args.coalesce_calls},
        "results": results,
        "comparisons": comparisons,
        "targets": {"throughput_ratio": TARGET_THROUGHPUT_RATIO, "added_p50_ms": TARGET_ADDED_P50_MS},
    }


def _optional(row: dict[str, Any], key: str, spec: str) -> str:
    return format(row[key], spec) if key in row else "-"


def _isolated_split(report: dict[str, Any]) -> str:
    machine = report["machine"]
    if not machine.get("isolated_gateway_cores"):  # reports written before the split was recorded
        return "a quarter of the cores, at least one"
    return f"{machine['isolated_gateway_cores']} of {machine['usable_cores']}"


def _coalescing(report: dict[str, Any]) -> str:
    setting = report.get("coalesce") or {}
    if not setting.get("enabled", True):
        return "off"
    calls = setting.get("calls_per_replica")
    return f"on, {calls} merged calls per replica" if calls else "on, as shipped"


def markdown(report: dict[str, Any], png: str) -> str:
    """The report as Markdown: the comparison table, the targets and the plot."""
    lines = [
        f"# Gateway tax: {report['model']}, direct Triton vs through the gateway",
        "",
        (
            f"{report['duration_s']:g} s per point, median of {report.get('repeats', 1)} interleaved repeats; machine: {report['machine']['cpus']} CPUs "
            f"({report['machine']['platform']}), load average at the end "
            f"{', '.join(f'{x:.1f}' for x in report['load_average_at_end'])}. "
            "`in gw` = mean time inside the gateway process (its request histogram minus its upstream histogram; "
            "with coalescing it includes the wait to be merged); `req/call` = client requests per upstream call "
            f"(gRPC coalescing {_coalescing(report)}); "
            "`gw CPU/req` = gateway process CPU time per request (upper bound: includes warm-up and health checks). "
            "`pass-through` = `loadtests/passthrough_proxy.py`, a gRPC hop with no logic at all (raw bytes to Triton), "
            "measured in the same run for reference: what any Python gRPC hop costs. "
            "Placements: `isolated` = the gateway on cores of its own "
            f"({_isolated_split(report)}), Triton and the load generator on the others "
            "in both measurements (as deployed); `shared` = everything on every core (CPU contention included)."
        ),
        "",
        (
            "| placement | protocol | batch | clients | throughput ratio | added p50 (ms) | in gw (ms) "
            "| gw CPU/req (ms) | req/call | pass-through ratio | pass-through CPU/req (ms) |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c['placement']} | {c['protocol']} | {c['batch']} | {c['clients']} | {c['throughput_ratio']:.2f} | "
        f"{c['added_p50_ms']:.2f} | {c['gateway_internal_ms']:.3f} | {c['gateway_cpu_ms_per_request']:.3f} | "
        f"{_optional(c, 'requests_per_upstream_call', '.2f')} | "
        f"{_optional(c, 'passthrough_ratio', '.2f')} | {_optional(c, 'passthrough_cpu_ms_per_request', '.3f')} |"
        for c in report["comparisons"]
    ]
    targets = report["targets"]
    lines += [
        "",
        (
            f"Targets (batch 64, 8 clients): throughput ratio >= {targets['throughput_ratio']}, "
            f"added p50 <= {targets['added_p50_ms']} ms."
        ),
        "",
        f"![gateway tax]({png})",
        "",
    ]
    return "\n".join(lines)


def _plot(results: list[dict[str, Any]], model: str, path: Path) -> None:
    """One column per (protocol, batch); per placement a row of throughput and a row of latency."""
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    columns = sorted({(r["protocol"], r["batch"]) for r in results})
    placements = sorted({r["placement"] for r in results})
    fig, axes = plt.subplots(
        2 * len(placements),
        len(columns),
        figsize=(4 * len(columns), 3.4 * 2 * len(placements)),
        squeeze=False,
    )
    for row0, placement in enumerate(placements):
        for column, (protocol, batch) in enumerate(columns):
            top, bottom = axes[2 * row0][column], axes[2 * row0 + 1][column]
            for path_name, style, color in (
                ("direct", "o-", "tab:blue"),
                ("gateway", "s--", "tab:orange"),
                ("passthrough", "^:", "tab:gray"),
            ):
                rows = sorted(
                    (
                        r
                        for r in results
                        if (r["placement"], r["protocol"], r["batch"], r["path"])
                        == (placement, protocol, batch, path_name)
                    ),
                    key=lambda r: r["clients"],
                )
                if not rows:  # the pass-through proxy speaks gRPC only
                    continue
                clients = [r["clients"] for r in rows]
                top.plot(clients, [r["inferences_per_s"] for r in rows], style, color=color, label=path_name)
                bottom.plot(
                    clients, [r["p50_ms"] for r in rows], style, color=color, label=f"{path_name} p50"
                )
                bottom.plot(
                    clients,
                    [r["p99_ms"] for r in rows],
                    style,
                    color=color,
                    alpha=0.35,
                    label=f"{path_name} p99",
                )
            top.set_title(f"{placement}: {protocol}, batch {batch}")
            top.set_ylabel("inferences / s")
            bottom.set_ylabel("latency (ms)")
            bottom.set_yscale("log")
            for axis in (top, bottom):
                axis.set_xscale("log", base=2)
                axis.set_xlabel("concurrent clients")
                axis.legend(fontsize=7)
    fig.suptitle(f"hepsonic gateway tax: {model}, direct Triton vs through the gateway")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
