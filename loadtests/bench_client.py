"""Client benchmark: hepsonic_client overhead vs raw tritonclient, and Batcher throughput.

1. Overhead: the same batch sent sequentially N times with raw ``tritonclient.grpc`` (InferInput objects
   created once and reused, as Triton's maintainers advise) and with ``hepsonic_client.Client``; target:
   the client at most 5% slower.
2. Batcher: M objects sent one at a time from T threads through a ``Batcher`` vs the same objects in
   hand-made batches of the Batcher's mean batch size sent with ``infer_many`` at the same concurrency;
   target: >= 80% of the hand-made throughput.

Starts its own ``hepsonic-triton`` on a repository (default: a tiny test model; ``--repository
model_repository --model particlenet_lite`` for a real one) unless ``--server`` is given. Prints the
figures, writes ``--out``/bench_client.json and bench_client.png.

    python loadtests/bench_client.py            # starts hepsonic-triton on model_repository/
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from hepsonic_client import Batcher, BatchingOptions, Client, EmbeddedTriton


def _inputs(
    client: Client, model: str, batch: int, rng: np.random.Generator
) -> dict[str, np.ndarray[Any, Any]]:
    meta = client.metadata(model)
    return {t.name: rng.normal(size=(batch, *list(t.shape[1:]))).astype(np.float32) for t in meta.inputs}


def bench_overhead(
    address: str, model: str, inputs: dict[str, np.ndarray[Any, Any]], repeats: int, rounds: int
) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient  # noqa: PLC0415

    raw = grpcclient.InferenceServerClient(address)
    raw_inputs = []
    for name, array in inputs.items():
        infer_input = grpcclient.InferInput(name, list(array.shape), "FP32")
        infer_input.set_data_from_numpy(array)
        raw_inputs.append(infer_input)
    client = Client(f"grpc://{address}")

    def run_raw() -> None:
        for _ in range(repeats):
            result = raw.infer(model, raw_inputs)
            result.as_numpy(result.get_response().outputs[0].name)

    def run_client() -> None:
        for _ in range(repeats):
            client.infer(model, inputs)

    run_raw()  # warm-up
    run_client()
    raw_times, client_times = [], []
    for _ in range(rounds):  # interleaved rounds: drifts of a shared machine hit both equally
        start = time.perf_counter()
        run_raw()
        raw_times.append((time.perf_counter() - start) / repeats)
        start = time.perf_counter()
        run_client()
        client_times.append((time.perf_counter() - start) / repeats)
    raw_ms, client_ms = statistics.median(raw_times) * 1e3, statistics.median(client_times) * 1e3
    client.close()
    raw.close()
    return {
        "raw_tritonclient_ms": raw_ms,
        "hepsonic_client_ms": client_ms,
        # median of per-round ratios: each pair ran back to back, so machine drift cancels
        "overhead_pct": 100
        * (statistics.median(c / r for c, r in zip(client_times, raw_times, strict=True)) - 1),
        "raw_rounds_ms": [t * 1e3 for t in raw_times],
        "client_rounds_ms": [t * 1e3 for t in client_times],
    }


def bench_batcher(
    address: str, model: str, objects: dict[str, np.ndarray[Any, Any]], threads: int, max_batch: int
) -> dict[str, Any]:
    n = next(iter(objects.values())).shape[0]
    client = Client(f"grpc://{address}")
    options = BatchingOptions(max_batch_size=max_batch, max_latency=0.002, max_inflight=2)
    batcher = Batcher(client, model, options=options)
    batcher.infer({k: v[0] for k, v in objects.items()})  # warm-up

    def caller(k: int) -> None:
        for i in range(k, n, threads):
            batcher.submit({name: array[i] for name, array in objects.items()}).result()

    start = time.perf_counter()
    workers = [threading.Thread(target=caller, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    batcher_s = time.perf_counter() - start
    stats = batcher.stats()
    batcher.close()
    size = max(1, round(stats["mean_batch_size"]))
    batches = [{k: v[i : i + size] for k, v in objects.items()} for i in range(0, n, size)]
    client.infer_many(model, batches[:2], concurrency=options.max_inflight)  # warm-up
    start = time.perf_counter()
    client.infer_many(model, batches, concurrency=options.max_inflight)
    manual_s = time.perf_counter() - start
    client.close()
    return {
        "objects": n,
        "threads": threads,
        "batcher_objects_per_s": n / batcher_s,
        "hand_batched_objects_per_s": n / manual_s,
        "mean_batch_size": stats["mean_batch_size"],
        "hand_batch_size": size,
        "ratio_pct": 100 * manual_s / batcher_s,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    o = result["overhead"]
    left.boxplot(
        [o["raw_rounds_ms"], o["client_rounds_ms"]],
        tick_labels=["raw tritonclient\n(reused InferInput)", "hepsonic_client"],
    )
    left.set_ylabel("ms per request")
    left.set_title(f"Client overhead: {o['overhead_pct']:+.1f}% (target <= +5%)")
    b = result["batcher"]
    right.bar(
        ["Batcher\n(one object/call)", f"hand-made batches\n(size {b['hand_batch_size']})"],
        [b["batcher_objects_per_s"], b["hand_batched_objects_per_s"]],
        color=["tab:blue", "tab:gray"],
    )
    right.set_ylabel("objects / s")
    right.set_title(f"Batcher: {b['ratio_pct']:.0f}% of hand-made (target >= 80%)")
    fig.suptitle(f"{result['model']} on {result['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", help="host:port of a gRPC Triton/gateway (default: start one)")
    parser.add_argument(
        "--repository",
        type=Path,
        default=Path("model_repository"),
        help="repository to serve when no --server",
    )
    parser.add_argument("--model", default="particlenet_lite")
    parser.add_argument("--batch", type=int, default=64, help="batch size of the overhead test")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--objects", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("loadtests/results/client"))
    args = parser.parse_args(argv)
    server = None
    if args.server is None:
        repository = args.repository
        print(f"starting hepsonic-triton on {repository} ...", flush=True)
        server = EmbeddedTriton(repository).start()
        address = server.grpc_address
    else:
        address = args.server
    try:
        rng = np.random.default_rng(0)
        probe = Client(f"grpc://{address}")
        batch_inputs = _inputs(probe, args.model, args.batch, rng)
        objects = _inputs(probe, args.model, args.objects, rng)
        probe.close()
        print("overhead ...", flush=True)
        overhead = bench_overhead(address, args.model, batch_inputs, args.repeats, args.rounds)
        print("batcher ...", flush=True)
        batcher = bench_batcher(address, args.model, objects, args.threads, args.max_batch)
    finally:
        if server is not None:
            server.stop()
    result = {
        "model": args.model,
        "machine": f"{platform.node()} ({platform.machine()}, {__import__('os').cpu_count()} cores)",
        "overhead": overhead,
        "batcher": batcher,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_client.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "bench_client.png")
    print(
        f"overhead: raw tritonclient {overhead['raw_tritonclient_ms']:.3f} ms, hepsonic_client "
        f"{overhead['hepsonic_client_ms']:.3f} ms per request of {args.batch} -> {overhead['overhead_pct']:+.1f}% "
        f"(target <= +5%)"
    )
    print(
        f"batcher: {batcher['batcher_objects_per_s']:.0f} objects/s one-at-a-time from {args.threads} threads "
        f"(mean batch {batcher['mean_batch_size']:.1f}) vs {batcher['hand_batched_objects_per_s']:.0f} objects/s "
        f"hand-batched -> {batcher['ratio_pct']:.0f}% (target >= 80%)"
    )
    print(f"wrote {args.out / 'bench_client.json'} and {args.out / 'bench_client.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
