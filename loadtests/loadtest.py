"""One bounded, headless locust run against a running stack, with JSON + HTML reports and thresholds.

    python -m loadtests.loadtest --host http://127.0.0.1:8080 --grpc-host 127.0.0.1:8081 \\
        --users 16 --run-time 30s --out loadtests/results/loadtest
    python -m loadtests.loadtest --profile ramp --stage-scale 0.2        # staged shape instead of -u/-t

Writes ``OUT/locust.json`` (final stats), ``OUT/locust.html`` (locust's report) and prints a per-request
summary. Exits with locust's code: 0 = thresholds met, 3 = thresholds exceeded (``--max-fail-ratio``,
``--max-p99-ms``), anything else = locust could not run. Locust runs in its own process (it gevent-patches the
interpreter that imports it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["locust_command", "main", "summarise"]

LOADTESTS = Path(__file__).resolve().parent
REPO_ROOT = LOADTESTS.parent


def locust_command(args: argparse.Namespace, out: Path) -> list[str]:
    """The locust command line for ``args``, writing its reports into ``out``."""
    locustfiles = str(LOADTESTS / "locustfile.py")
    command = [sys.executable, "-m", "locust", "--config", str(LOADTESTS / "locust.conf"), "--headless"]
    command += ["--host", args.host, "--json-file", str(out / "locust"), "--html", str(out / "locust.html")]
    command += ["--max-fail-ratio", str(args.max_fail_ratio), "--max-p99-ms", str(args.max_p99_ms)]
    command += ["--only-summary", "--stop-timeout", "5"]
    if args.grpc_host:
        command += ["--grpc-host", args.grpc_host]
    if args.profile:
        locustfiles += f",{LOADTESTS / 'shapes.py'}"
        command += ["--load-profile", args.profile, "--stage-scale", str(args.stage_scale)]
    else:
        command += ["--users", str(args.users), "--spawn-rate", str(args.spawn_rate)]
        command += ["--run-time", args.run_time]
    command += ["--locustfile", locustfiles, *args.user_classes]
    return command


def summarise(report: list[dict[str, Any]]) -> str:
    """A table of requests, failures and latency per ``model:version`` from locust's JSON report."""
    lines = [
        f"{'type':<6} {'name':<24} {'requests':>9} {'failures':>9} {'req/s':>8} {'avg ms':>8} {'max ms':>8}"
    ]
    for entry in sorted(report, key=lambda e: (e["method"], e["name"])):
        duration = max(entry["last_request_timestamp"] - entry["start_time"], 1e-9)
        average = entry["total_response_time"] / max(entry["num_requests"], 1)
        lines.append(
            f"{entry['method']:<6} {entry['name']:<24} {entry['num_requests']:>9} {entry['num_failures']:>9} "
            f"{entry['num_requests'] / duration:>8.1f} {average:>8.1f} {entry['max_response_time']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run locust headless and print a summary; returns locust's exit code."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.loadtest", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8080", help="gateway (or Triton) HTTP URL")
    parser.add_argument("--grpc-host", default="", help="gRPC host:port (default: --host's name, port 8081)")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--spawn-rate", type=float, default=8.0)
    parser.add_argument("--run-time", default="30s", help="e.g. 30s, 2m")
    parser.add_argument("--profile", choices=["ramp", "spike", "soak"], help="staged shape instead of -u/-t")
    parser.add_argument("--stage-scale", type=float, default=1.0)
    parser.add_argument("--max-fail-ratio", type=float, default=0.01)
    parser.add_argument("--max-p99-ms", type=float, default=2000.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtests" / "results" / "loadtest")
    parser.add_argument("user_classes", nargs="*", help="user classes to run (default: all, by weight)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    code = subprocess.run(locust_command(args, args.out), cwd=REPO_ROOT, env=env, check=False).returncode
    report_path = args.out / "locust.json"
    if report_path.exists():
        print(summarise(json.loads(report_path.read_text())))
    print(f"reports: {report_path} and {args.out / 'locust.html'}")
    print("thresholds met" if code == 0 else f"FAILED (locust exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
