"""Command line of the benchmark harness.

python -m loadtests.bench --budget-s 600 --out loadtests/results/cpu-2core          # the full sweep
python -m loadtests.bench --quick --budget-s 40 --out /tmp/bench                     # seconds, for CI
python -m loadtests.bench --device gpu --models particlenet_lite ringer --out loadtests/results/gpu
python -m loadtests.bench --report-only loadtests/results/cpu-2core/bench.json       # redo plots/report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ._harness import PATHS, BenchOptions, plan_sweep, run_sweep
from ._report import target_ratios, write_report

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--repository", type=Path, default=REPO_ROOT / "model_repository")
    parser.add_argument(
        "--models", nargs="+", default=["all"], help="models to sweep (default: all, particlenet_lite first)"
    )
    parser.add_argument("--concurrency", type=_ints, default=(1, 8, 32), help="e.g. 1,8,32")
    parser.add_argument("--batch-sizes", type=_ints, default=(1, 32), help="objects per request, e.g. 1,32")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--window-s", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=600.0, help="the sweep fits in this wall time")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="onnxruntime intra-op threads per model instance and for the limit",
    )
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument(
        "--queue-delays-us",
        type=_ints,
        default=(0, 2000),
        help="queue delays tried in the configuration search",
    )
    parser.add_argument("--instances", type=_ints, default=(1, 2), help="instance counts tried")
    parser.add_argument("--no-config-search", action="store_true")
    parser.add_argument(
        "--event-rate-per-core",
        type=float,
        default=0.5,
        help="reconstruction events per second per core assumed by the capacity plan",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long smoke sweep: 2 concurrencies, batch 1, short windows, no search",
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--report-only", type=Path, help="rebuild the report from a bench.json")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtests" / "results" / "latest")
    return parser


def _models(args: argparse.Namespace) -> tuple[str, ...]:
    names = sorted(p.parent.name for p in args.repository.glob("*/config.pbtxt"))
    if args.models == ["all"]:
        return tuple(sorted(names, key=lambda name: name != "particlenet_lite"))
    unknown = [model for model in args.models if model not in names]
    if unknown:
        raise ValueError(f"bench: model(s) {unknown} not in {args.repository} (it holds {names})")
    return tuple(args.models)


def _options(args: argparse.Namespace) -> BenchOptions:
    if args.quick:
        return BenchOptions(
            repository=args.repository,
            models=_models(args),
            concurrencies=(1, 8),
            batch_sizes=(1,),
            paths=tuple(args.paths),
            warmup_s=0.3,
            window_s=0.7,
            repeats=2,
            budget_s=args.budget_s,
            threads=args.threads,
            device=args.device,
            config_search=False,
        )
    return BenchOptions(
        repository=args.repository,
        models=_models(args),
        concurrencies=args.concurrency,
        batch_sizes=args.batch_sizes,
        paths=tuple(args.paths),
        warmup_s=args.warmup_s,
        window_s=args.window_s,
        repeats=args.repeats,
        budget_s=args.budget_s,
        threads=args.threads,
        device=args.device,
        queue_delays_us=args.queue_delays_us,
        instances=args.instances,
        config_search=not args.no_config_search,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the sweep (or rebuild a report) and print where the report is and the target ratios."""
    args = _parser().parse_args(argv)
    if args.report_only:
        raw = json.loads(args.report_only.read_text())
        raw.pop("analysis", None)
    else:
        try:
            options = _options(args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.dry_run:
            kept, dropped = plan_sweep(options)
            for point in kept:
                print(
                    f"{point.model:<18} {point.phase:<8} {point.path:<20} b={point.batch_size:<4} "
                    f"c={point.concurrency:<4} prio {point.priority}"
                )
            print(f"{len(kept)} points planned, {len(dropped)} left out to fit {options.budget_s:.0f} s")
            return 0
        try:
            raw = run_sweep(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    report = write_report(
        raw, args.out, event_rate_per_core=args.event_rate_per_core, plots=not args.no_plots
    )
    for model in sorted({r["model"] for r in raw["results"]}):
        for target in target_ratios(raw, model):
            ratio = "not measured" if target.ratio is None else f"{target.ratio:.2f}x"
            print(f"{model}: {target.name}: {ratio} (goal >= {target.goal:g}x)")
    print(f"report: {report} (+ report.html, bench.json, plots)")
    return 0
