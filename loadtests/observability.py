"""Debian's Prometheus next to an embedded stack, and headless-Chromium screenshots of what it shows.

    python -m loadtests.observability prometheus --triton-metrics 127.0.0.1:8002 --gateway 127.0.0.1:8080
        (= ``make prometheus``: foreground, Ctrl-C stops it; UI on http://127.0.0.1:9090)
    python -m loadtests.observability screenshots --prometheus http://127.0.0.1:9090 \\
        --host http://127.0.0.1:8080 --grpc-host 127.0.0.1:8081 --out loadtests/results/screenshots

The scrape configuration is ``deploy/prometheus/prometheus.yml`` (what docker compose mounts) with its targets
replaced by the given loopback addresses and its rule files made absolute, so the rules are the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from hepsonic_client import free_port
from hepsonic_triton import stop_process_group

__all__ = [
    "PROMETHEUS_DIR",
    "find_binary",
    "main",
    "render_prometheus_config",
    "run_prometheus",
    "screenshot",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
_JOB_TARGETS = {"triton": "triton_metrics", "hepsonic-gateway": "gateway"}


def find_binary(name: str) -> str | None:
    """Path of ``prometheus``, ``promtool`` or ``chromium`` (Debian packages), or None."""
    return shutil.which(name)


def render_prometheus_config(*, triton_metrics: str, gateway: str, scrape_interval: str = "5s") -> str:
    """``deploy/prometheus/prometheus.yml`` pointed at loopback targets, with absolute rule paths."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {"triton_metrics": triton_metrics, "gateway": gateway}
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config.get("rule_files", [])]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job_name, key in _JOB_TARGETS.items():
        if job_name not in jobs:
            raise ValueError(f"{PROMETHEUS_DIR / 'prometheus.yml'}: scrape job {job_name!r} is missing")
        jobs[job_name]["static_configs"] = [{"targets": [targets[key]]}]
    return str(yaml.safe_dump(config, sort_keys=False))


def _wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with code {process.returncode} before {url} answered"
            )
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_process_group(process, timeout_s=10)


@contextlib.contextmanager
def run_prometheus(
    *, triton_metrics: str, gateway: str, port: int | None = None, scrape_interval: str = "5s"
) -> Iterator[str]:
    """Start Debian's Prometheus on 127.0.0.1 scraping the given targets; yields its base URL."""
    binary = find_binary("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (Debian: apt-get install -y prometheus)")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="hepsonic-prometheus-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            render_prometheus_config(
                triton_metrics=triton_metrics, gateway=gateway, scrape_interval=scrape_interval
            )
        )
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={Path(tmp) / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        process = subprocess.Popen(command, start_new_session=True)
        try:
            _wait_http(f"http://127.0.0.1:{port}/-/ready", 30, process)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)


def screenshot(url: str, png: Path, *, width: int = 1400, height: int = 900, wait_ms: int = 5000) -> Path:
    """A PNG of ``url`` rendered by headless Chromium."""
    binary = find_binary("chromium")
    if binary is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install -y chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hepsonic-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={wait_ms}",
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            url,
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot of {url}")
    return png


def prometheus_graph_url(base: str, expr: str, *, range_input: str = "5m") -> str:
    """The Prometheus UI graph page for one expression."""
    query = urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": range_input})
    return f"{base}/graph?{query}"


@contextlib.contextmanager
def _locust_ui(host: str, grpc_host: str, users: int, run_time_s: int) -> Iterator[str]:
    """locust with its web UI, running a short test by itself (``--autostart``); yields the UI URL."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "locust", "--config", str(REPO_ROOT / "loadtests" / "locust.conf")]
    command += ["--host", host, "--web-host", "127.0.0.1", "--web-port", str(port), "--autostart"]
    command += ["--users", str(users), "--spawn-rate", str(users), "--run-time", f"{run_time_s}s"]
    command += ["--autoquit", "5", "--max-fail-ratio", "1", "--max-p99-ms", "1e9"]
    if grpc_host:
        command += ["--grpc-host", grpc_host]
    process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", 30, process)
        yield f"http://127.0.0.1:{port}/"
    finally:
        _stop(process)


def take_screenshots(
    *, prometheus: str, host: str, grpc_host: str, out: Path, users: int = 8, load_s: int = 20
) -> list[Path]:
    """PNGs of a Prometheus graph (gateway p99 and Triton queue time) and of the locust UI during a run."""
    with _locust_ui(host, grpc_host, users, load_s + 10) as locust_url:
        time.sleep(load_s)  # let traffic flow so both pages have something to show
        locust_png = screenshot(locust_url, out / "locust_ui.png")
        expr = "model:hepsonic_gateway_latency_seconds:p99_1m"
        graph_png = screenshot(prometheus_graph_url(prometheus, expr), out / "prometheus_gateway_p99.png")
        queue = "model:hepsonic_triton_queue_us_per_request:rate1m"
        queue_png = screenshot(prometheus_graph_url(prometheus, queue), out / "prometheus_queue_time.png")
    return [graph_png, queue_png, locust_png]


def main(argv: list[str] | None = None) -> int:
    """``prometheus``: run Prometheus in the foreground; ``screenshots``: write the PNGs."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.observability", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prom = commands.add_parser("prometheus", help="run Prometheus next to `make serve` until Ctrl-C")
    prom.add_argument("--triton-metrics", default="127.0.0.1:8002")
    prom.add_argument("--gateway", default="127.0.0.1:8080")
    prom.add_argument("--port", type=int, default=9090)
    shots = commands.add_parser("screenshots", help="PNGs of a Prometheus graph and of the locust UI")
    shots.add_argument("--prometheus", default="http://127.0.0.1:9090")
    shots.add_argument(
        "--host", default="http://127.0.0.1:8080", help="gateway HTTP URL the locust run targets"
    )
    shots.add_argument("--grpc-host", default="127.0.0.1:8081")
    shots.add_argument("--users", type=int, default=8)
    shots.add_argument("--load-s", type=int, default=20)
    shots.add_argument("--out", type=Path, default=REPO_ROOT / "loadtests" / "results" / "screenshots")
    args = parser.parse_args(argv)
    try:
        if args.command == "prometheus":
            with run_prometheus(
                triton_metrics=args.triton_metrics, gateway=args.gateway, port=args.port
            ) as url:
                print(
                    f"Prometheus on {url} scraping Triton {args.triton_metrics} and the gateway {args.gateway}"
                )
                print("Ctrl-C stops it.", flush=True)
                stop_signals = {signal.SIGINT, signal.SIGTERM}
                signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
                signal.sigwait(stop_signals)
            return 0
        paths = take_screenshots(
            prometheus=args.prometheus,
            host=args.host,
            grpc_host=args.grpc_host,
            out=args.out,
            users=args.users,
            load_s=args.load_s,
        )
    except (RuntimeError, subprocess.CalledProcessError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
