"""From raw sweep results to what people read: target ratios, best configurations, capacity plan, plots, report."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.payloads import RECO_EVENT_MIX

__all__ = [
    "CapacityPlan",
    "TargetRatio",
    "analyse",
    "best_configurations",
    "capacity_plan",
    "target_ratios",
    "write_report",
]

Result = dict[str, Any]

_SERVED_PATHS = ("triton-grpc", "triton-http", "gateway-grpc", "gateway-http")


@dataclass(frozen=True, kw_only=True)
class TargetRatio:
    """One of the issue's targets, measured as a ratio in the same run."""

    name: str
    ratio: float | None
    goal: float
    detail: str

    @property
    def met(self) -> bool | None:
        """Whether the ratio reaches the goal (None when it could not be measured)."""
        return None if self.ratio is None else self.ratio >= self.goal


def _default_phase(result: Result) -> bool:
    return bool(result["labels"].get("phase") in ("dynamic", "nobatch", "naive", "limit", "limit-end"))


def _find(results: list[Result], model: str, path: str, batch: int, concurrency: int) -> Result | None:
    """The point of the default server configuration; the best one where it was measured more than once
    (the limit is measured before and after the served paths)."""
    matches = [
        result
        for result in results
        if result["model"] == model
        and result["path"] == path
        and result["batch_size"] == batch
        and result["concurrency"] == concurrency
        and _default_phase(result)
    ]
    return max(matches, key=lambda r: r["throughput"]) if matches else None


def _ratio(numerator: Result | None, denominator: Result | None) -> float | None:
    if numerator is None or denominator is None or denominator["throughput"] <= 0:
        return None
    return float(numerator["throughput"] / denominator["throughput"])


def target_ratios(raw: dict[str, Any], model: str = "particlenet_lite") -> list[TargetRatio]:
    """The three targets of the load-test issue for ``model``, from one run."""
    results = raw["results"]
    concurrency = max((r["concurrency"] for r in results if r["model"] == model), default=0)
    batched = _find(results, model, "triton-grpc", 1, concurrency)
    unbatched = _find(results, model, "triton-grpc-nobatch", 1, concurrency)
    naive = _find(results, model, "naive-http", 1, concurrency)
    # What batching can give at most on this hardware: the model's own throughput at the largest batch
    # measured vs batch 1, in-process (no server at all).
    limit_batches = sorted({r["batch_size"] for r in results if r["model"] == model and r["path"] == "limit"})
    ceiling = ""
    if len(limit_batches) > 1:
        top = _ratio(
            _find(results, model, "limit", limit_batches[-1], 1), _find(results, model, "limit", 1, 1)
        )
        if top is not None:
            ceiling = (
                f" (ceiling on this hardware: onnxruntime in-process runs {top:.2f}x faster per object at batch "
                f"{limit_batches[-1]} than at batch 1)"
            )
    targets = [
        TargetRatio(
            name="dynamic batching pays",
            ratio=_ratio(batched, unbatched),
            goal=5.0,
            detail=f"Triton gRPC, {concurrency} concurrent single-object clients: dynamic batching on / off"
            + ceiling,
        ),
        TargetRatio(
            name="ahead of the naive peer",
            ratio=_ratio(batched, naive),
            goal=4.0,
            detail=f"Triton gRPC / naive FastAPI peer, {concurrency} concurrent single-object clients",
        ),
    ]
    # Close to the limit: the best served point at the largest client batch (where server-side batching
    # cannot lift it above the limit) against onnxruntime in-process at that batch size.
    batches = sorted({r["batch_size"] for r in results if r["model"] == model and r["path"] == "limit"})
    best_ratio: float | None = None
    detail = "no limit measured"
    if batches:
        batch = batches[-1]
        limit = _find(results, model, "limit", batch, 1)
        served = [
            r
            for r in results
            if r["model"] == model and r["path"] in _SERVED_PATHS and r["batch_size"] == batch
        ]
        if served and limit:
            best = max(served, key=lambda r: r["throughput"])
            best_ratio = _ratio(best, limit)
            detail = (
                f"best served point at batch {batch} ({best['path']}, concurrency {best['concurrency']}, "
                f"queue delay {best['labels'].get('queue_delay_us')} µs, {best['labels'].get('instances')} "
                f"instance(s)): {best['throughput']:.0f}/s vs onnxruntime in-process {limit['throughput']:.0f}/s"
                + (
                    f"; Triton merged requests into batches of {best['server_batch']:.0f} objects on average"
                    if best.get("server_batch")
                    else ""
                )
            )
    targets.insert(1, TargetRatio(name="close to the limit", ratio=best_ratio, goal=0.7, detail=detail))
    return targets


def best_configurations(raw: dict[str, Any]) -> dict[str, Result]:
    """Per model, the served point with the highest throughput (Triton direct or through the gateway)."""
    best: dict[str, Result] = {}
    for result in raw["results"]:
        if result["path"] not in _SERVED_PATHS or result["errors"]:
            continue
        current = best.get(result["model"])
        if current is None or result["throughput"] > current["throughput"]:
            best[result["model"]] = result
    return best


@dataclass(frozen=True, kw_only=True)
class CapacityPlan:
    """Inference servers needed for ``cores`` reconstruction cores at the assumed event rate."""

    event_rate_per_core: float
    #: model -> (inferences per event, capacity per server in inferences/s or None when not measured).
    per_model: dict[str, tuple[float, float | None]]
    #: cores -> servers (all measured models sharing the servers).
    servers: dict[int, int]
    unmeasured: tuple[str, ...]


def capacity_plan(
    raw: dict[str, Any], *, event_rate_per_core: float, cores: tuple[int, ...] = (100, 1000, 10000)
) -> CapacityPlan:
    """Servers needed for N cores, each running ``event_rate_per_core`` events/s with RECO_EVENT_MIX."""
    best = best_configurations(raw)
    per_model: dict[str, tuple[float, float | None]] = {}
    for model, mix in RECO_EVENT_MIX.items():
        capacity = best[model]["throughput"] if model in best else None
        per_model[model] = (mix.objects_per_event, capacity)
    # A server's time is shared by the models: each model's load uses load / capacity of one server.
    busy_per_core = sum(
        event_rate_per_core * per_event / capacity for per_event, capacity in per_model.values() if capacity
    )
    servers = {n: max(1, math.ceil(n * busy_per_core)) if busy_per_core else 0 for n in cores}
    unmeasured = tuple(model for model, (_, capacity) in per_model.items() if not capacity)
    return CapacityPlan(
        event_rate_per_core=event_rate_per_core, per_model=per_model, servers=servers, unmeasured=unmeasured
    )


def analyse(raw: dict[str, Any], *, event_rate_per_core: float) -> dict[str, Any]:
    """Targets, best configurations and capacity plan, JSON-ready."""
    models = sorted({r["model"] for r in raw["results"]})
    plan = capacity_plan(raw, event_rate_per_core=event_rate_per_core)
    return {
        "targets": {
            model: [
                {"name": t.name, "ratio": t.ratio, "goal": t.goal, "met": t.met, "detail": t.detail}
                for t in target_ratios(raw, model)
            ]
            for model in models
        },
        "best": best_configurations(raw),
        "capacity": {
            "event_rate_per_core": plan.event_rate_per_core,
            "per_model": {m: {"per_event": pe, "capacity": c} for m, (pe, c) in plan.per_model.items()},
            "servers": plan.servers,
            "unmeasured": list(plan.unmeasured),
        },
    }


def _plots(raw: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib as mpl  # noqa: PLC0415  (plotting is optional for the harness itself)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    labels = raw["paths"]
    colors = {path: f"C{index}" for index, path in enumerate(p for p in labels if p != "limit")}
    written = []
    for model in sorted({r["model"] for r in raw["results"]}):
        rows = [r for r in raw["results"] if r["model"] == model and _default_phase(r)]
        batches = sorted({r["batch_size"] for r in rows})
        fig, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 4.8), squeeze=False)
        for ax, batch in zip(axes[0], batches, strict=True):
            for path, label in labels.items():
                points = sorted(
                    (r["concurrency"], r["throughput"])
                    for r in rows
                    if r["path"] == path and r["batch_size"] == batch
                )
                if not points:
                    continue
                if path == "limit":
                    best = max(throughput for _, throughput in points)
                    ax.axhline(best, color="black", linestyle="--", label=f"{label}, best of the run")
                    continue
                ax.plot(*zip(*points, strict=True), marker="o", color=colors[path], label=label)
            ax.set(
                xscale="log",
                xlabel="concurrent clients",
                ylabel="inferences / s",
                title=f"{model}: throughput, {batch} object(s) per request",
            )
            ax.set_xticks(sorted({r["concurrency"] for r in rows}))
            ax.set_xticklabels([str(c) for c in sorted({r["concurrency"] for r in rows})])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path_png = out / f"{model}_throughput_vs_concurrency.png"
        fig.savefig(path_png, dpi=110)
        plt.close(fig)
        written.append(path_png)

        fig, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 4.8), squeeze=False)
        for ax, batch in zip(axes[0], batches, strict=True):
            for path, label in labels.items():
                # ordered by concurrency: the curve a path follows as load grows
                latency_points = sorted(
                    (r["concurrency"], r["throughput"], r["p50_ms"], r["p99_ms"])
                    for r in rows
                    if r["path"] == path and r["batch_size"] == batch and path != "limit"
                )
                if not latency_points:
                    continue
                color = colors[path]
                xs = [p[1] for p in latency_points]
                ax.plot(xs, [p[3] for p in latency_points], marker="o", color=color, label=f"{label} p99")
                ax.plot(
                    xs,
                    [p[2] for p in latency_points],
                    marker=".",
                    linestyle=":",
                    color=color,
                    label=f"{label} p50",
                )
            ax.set(
                yscale="log",
                xlabel="inferences / s",
                ylabel="latency (ms)",
                title=f"{model}: latency vs throughput, batch {batch}",
            )
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6)
        fig.tight_layout()
        path_png = out / f"{model}_latency_vs_throughput.png"
        fig.savefig(path_png, dpi=110)
        plt.close(fig)
        written.append(path_png)

        # Server side: where a request's time goes inside Triton (queue vs compute), per concurrency.
        server_rows = sorted(
            (
                r
                for r in raw["results"]
                if r["model"] == model
                and r["queue_us"] is not None
                and r["path"] in ("triton-grpc", "triton-grpc-nobatch")
                and _default_phase(r)
            ),
            key=lambda r: (r["path"], r["batch_size"], r["concurrency"]),
        )
        if server_rows:
            fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(server_rows) + 2), 4.8))
            names = [
                f"{'off' if r['path'].endswith('nobatch') else 'on'} b{r['batch_size']} c{r['concurrency']}"
                for r in server_rows
            ]
            queue = [r["queue_us"] / 1e3 for r in server_rows]
            compute = [r["compute_us"] / 1e3 for r in server_rows]
            ax.bar(names, queue, label="queue")
            ax.bar(names, compute, bottom=queue, label="compute (input + infer + output)")
            for x, r in enumerate(server_rows):
                ax.annotate(
                    f"x{r['server_batch']:.1f}",
                    (x, queue[x] + compute[x]),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
            ax.set(
                ylabel="ms per request (Triton statistics)",
                title=f"{model}: Triton queue vs compute (xN = mean server batch)",
            )
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
            ax.legend()
            fig.tight_layout()
            path_png = out / f"{model}_queue_vs_compute.png"
            fig.savefig(path_png, dpi=110)
            plt.close(fig)
            written.append(path_png)
    return written


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _markdown(raw: dict[str, Any], analysis: dict[str, Any], images: list[Path]) -> str:
    options, machine = raw["options"], raw["machine"]
    lines = [
        "# hepsonic benchmark report",
        "",
        (
            f"Machine: {machine['cpu']}, {machine['cores']} cores, device `{options['device']}`; load average "
            f"{machine['load_average_at_start'][0]:.1f} at start, {machine['load_average_at_end'][0]:.1f} at end "
            "(the machine is shared: absolute numbers move with its load, ratios from one run are what to compare)."
        ),
        (
            f"Sweep: models {', '.join(options['models'])}; concurrency {options['concurrencies']}; "
            f"objects per request {options['batch_sizes']}; warm-up {options['warmup_s']} s, "
            f"{options['repeats']} windows of {options['window_s']} s per point; {options['threads']} onnxruntime "
            f"thread(s) per model instance and for the in-process limit; budget {options['budget_s']:.0f} s, "
            f"took {raw['wall_s']:.0f} s. Load generated by a separate process (asyncio tritonclient). "
            "The limit is measured before and after the served paths; the better of the two is the reference."
        ),
        "",
        "## Targets (ratios measured in this run)",
        "",
    ]
    for model, targets in analysis["targets"].items():
        rows = [
            [
                t["name"],
                _fmt(t["ratio"], 2) + "x" if t["ratio"] is not None else "not measured",
                f"≥ {t['goal']:g}x",
                {True: "met", False: "NOT met", None: "—"}[t["met"]],
                t["detail"],
            ]
            for t in targets
        ]
        lines += [f"**{model}**", "", _table(["target", "measured", "goal", "verdict", "how"], rows), ""]
    lines += ["## Best server configuration found, per model", ""]
    best_rows = [
        [
            model,
            r["path"],
            str(r["batch_size"]),
            str(r["concurrency"]),
            str(r["labels"].get("queue_delay_us")),
            str(r["labels"].get("instances")),
            f"{r['throughput']:.0f}",
            _fmt(r["p99_ms"]),
        ]
        for model, r in sorted(analysis["best"].items())
    ]
    lines += [
        _table(
            [
                "model",
                "path",
                "objects/request",
                "concurrency",
                "queue delay (µs)",
                "instances",
                "inferences/s",
                "p99 ms",
            ],
            best_rows,
        ),
        "",
    ]
    capacity = analysis["capacity"]
    lines += [
        "## Capacity plan",
        "",
        (
            f"Assumed: each reconstruction core processes {capacity['event_rate_per_core']:g} events/s, and each "
            "event makes the requests of the locust reconstruction user (`RECO_EVENT_MIX` in "
            "`loadtests/payloads.py`): one request per model per event with Poisson object counts. One server is "
            "one machine like this one running the best configuration above; the models share its time."
        ),
        "",
    ]
    lines += [
        _table(
            ["model", "inferences per event", "capacity per server (inferences/s)", "server share per core"],
            [
                [
                    m,
                    f"{v['per_event']:.2f}",
                    _fmt(v["capacity"], 0),
                    _fmt(capacity["event_rate_per_core"] * v["per_event"] / v["capacity"], 4)
                    if v["capacity"]
                    else "not measured",
                ]
                for m, v in capacity["per_model"].items()
            ],
        ),
        "",
        _table(
            ["reconstruction cores", "inference servers needed"],
            [[str(n), str(s)] for n, s in capacity["servers"].items()],
        ),
        "",
    ]
    if capacity["unmeasured"]:
        lines += [f"Not included (not measured in this run): {', '.join(capacity['unmeasured'])}.", ""]
    lines += ["## Plots", ""]
    lines += [f"![{image.stem}]({image.name})" for image in images]
    lines += ["", "## All points", ""]
    rows = [
        [
            r["model"],
            r["path"],
            str(r["labels"].get("phase")),
            str(r["labels"].get("queue_delay_us")),
            str(r["labels"].get("instances")),
            str(r["batch_size"]),
            str(r["concurrency"]),
            f"{r['throughput']:.0f}",
            f"{min(r['throughput_windows'], default=0):.0f}-{max(r['throughput_windows'], default=0):.0f}",
            _fmt(r["p50_ms"]),
            _fmt(r["p90_ms"]),
            _fmt(r["p99_ms"]),
            _fmt(r["queue_us"] / 1e3 if r["queue_us"] is not None else None, 2),
            _fmt(r["compute_us"] / 1e3 if r["compute_us"] is not None else None, 2),
            _fmt(r["server_batch"]),
            str(r["errors"]),
        ]
        for r in raw["results"]
    ]
    lines += [
        _table(
            [
                "model",
                "path",
                "server",
                "delay µs",
                "inst.",
                "batch",
                "conc.",
                "inf/s",
                "windows",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "queue ms",
                "compute ms",
                "server batch",
                "errors",
            ],
            rows,
        ),
        "",
        "Paths: " + "; ".join(f"`{k}` = {v}" for k, v in raw["paths"].items()) + ".",
        "The naive peer (`loadtests/naive_peer.py`) is a baseline only: one `session.run` per request.",
    ]
    if raw["skipped"]:
        lines += ["", f"{len(raw['skipped'])} planned point(s) were not measured (budget): see `bench.json`."]
    return "\n".join(lines) + "\n"


def _html(markdown: str, title: str) -> str:
    """A small Markdown subset (headings, tables, images, paragraphs) to standalone HTML."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *rest = table
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>")
            body.extend("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rest)
            body.append("</table>")
            table.clear()

    def inline(text: str) -> str:
        escaped = html.escape(text)
        parts = escaped.split("`")
        escaped = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
        parts = escaped.split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append([inline(c) for c in cells])
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line.lstrip('# '))}</h{level}>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1 : -1]
            body.append(f'<p><img src="{html.escape(src)}" style="max-width:100%"></p>')
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    flush()
    style = (
        "body{font-family:sans-serif;max-width:1300px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(raw: dict[str, Any], out: Path, *, event_rate_per_core: float, plots: bool = True) -> Path:
    """Write bench.json, the PNG plots, report.md and report.html into ``out``; returns report.md."""
    out.mkdir(parents=True, exist_ok=True)
    analysis = analyse(raw, event_rate_per_core=event_rate_per_core)
    (out / "bench.json").write_text(json.dumps({**raw, "analysis": analysis}, indent=1) + "\n")
    images = _plots(raw, out) if plots and raw["results"] else []
    markdown = _markdown(raw, analysis, images)
    report = out / "report.md"
    report.write_text(markdown)
    (out / "report.html").write_text(_html(markdown, "hepsonic benchmark report"))
    return report
